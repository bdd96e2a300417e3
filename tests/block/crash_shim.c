/* LD_PRELOAD shim for the qcow2 crash test: KVZ_CRASH_AT=N ends the
 * process (as SIGKILL would) just before its N-th pwrite, so a test can
 * stop a writer at every write boundary in turn instead of at random.
 * The build uses 64-bit file offsets: pwrite is pwrite64 underneath. */
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* Per process by nature: the count of writes so far. */
static long writes;

static void maybe_crash(void)
{
	const char *at = getenv("KVZ_CRASH_AT");
	if (at && ++writes >= atol(at))
		_exit(137);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	static ssize_t (*real)(int, const void *, size_t, off64_t);
	if (!real)
		real = (ssize_t (*)(int, const void *, size_t, off64_t))dlsym(RTLD_NEXT, "pwrite64");
	maybe_crash();
	return real(fd, buf, n, off);
}
