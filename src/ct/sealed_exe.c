#include "sealed_exe.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

/* Every seal that forbids changing the contents, and the seal on seals. */
#define KVZ_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)

extern char **environ;

static int is_sealed(int fd)
{
	int seals = fcntl(fd, F_GET_SEALS);
	return seals >= 0 && (seals & KVZ_SEALS) == KVZ_SEALS;
}

/* MFD_EXEC keeps the copy executable where vm.memfd_noexec would make new
 * memfds non-executable; kernels before 6.3 do not know the flag. */
static int make_memfd(void)
{
	int fd = memfd_create("kvz-ct", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
	if (fd < 0 && errno == EINVAL)
		fd = memfd_create("kvz-ct", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	return fd;
}

static int copy_all(int to, int from, off_t size)
{
	off_t off = 0;
	while (off < size) {
		ssize_t n = sendfile(to, from, &off, (size_t)(size - off));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
	}
	return 0;
}

int sealed_exe_ensure(char **argv, char *err, size_t len)
{
	int self = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (self < 0) {
		snprintf(err, len, "cannot open /proc/self/exe: %s", strerror(errno));
		return -1;
	}
	if (is_sealed(self)) {
		close(self);
		/* exec through a descriptor names the process after its number */
		prctl(PR_SET_NAME, "kvz-ct", 0, 0, 0);
		return 0;
	}
	struct stat st;
	int copy = make_memfd();
	if (copy < 0 || fstat(self, &st) < 0 || copy_all(copy, self, st.st_size) < 0 ||
	    fcntl(copy, F_ADD_SEALS, KVZ_SEALS) < 0) {
		snprintf(err, len, "cannot make a sealed copy of kvz-ct: %s", strerror(errno));
		close(self);
		if (copy >= 0)
			close(copy);
		return -1;
	}
	close(self);
	fexecve(copy, argv, environ);
	snprintf(err, len, "cannot run the sealed copy of kvz-ct: %s", strerror(errno));
	close(copy);
	return -1;
}
