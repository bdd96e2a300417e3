#include "phase_trace.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Process-wide by nature (one timeline per process): `on` and `start_ns`
 * are set in main() before any thread exists and only read afterwards;
 * `last_ns` and `console_seen` are touched atomically from any thread. */
static bool on;
static int64_t start_ns;     /* CLOCK_BOOTTIME at exec */
static int64_t last_ns;
static bool console_seen;

static int64_t boottime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Field 22 of /proc/self/stat: the process's start in clock ticks since
 * boot; -1 when unreadable. */
static int64_t exec_ns(void)
{
	char buf[1024];
	FILE *f = fopen("/proc/self/stat", "re");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	const char *p = strrchr(buf, ')');   /* the command name may hold spaces */
	unsigned long long ticks;
	long hz = sysconf(_SC_CLK_TCK);
	if (!p || hz <= 0 ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &ticks) != 1)
		return -1;
	return (int64_t)(ticks * (1000000000ull / (unsigned long long)hz));
}

static long faults(void)
{
	struct rusage ru;
	return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt + ru.ru_majflt : -1;
}

void kvz_phase_init(bool enable)
{
	on = enable;
	if (!on)
		return;
	int64_t now = boottime_ns(), ex = exec_ns();
	start_ns = ex > 0 && ex <= now ? ex : now;
	last_ns = start_ns;
	kvz_phase("main (boottime %.3f s)", (double)now / 1e9);
}

bool kvz_phase_on(void)
{
	return on;
}

void kvz_phase(const char *fmt, ...)
{
	if (!on)
		return;
	char what[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	int64_t now = boottime_ns();
	int64_t prev = __atomic_exchange_n(&last_ns, now, __ATOMIC_RELAXED);
	fprintf(stderr, "phase: %-40s at %9.3f ms  +%8.3f ms  faults %ld\n", what,
		(double)(now - start_ns) / 1e6, (double)(now - prev) / 1e6, faults());
}

void kvz_phase_console(const void *buf, size_t len)
{
	if (!on || __atomic_load_n(&console_seen, __ATOMIC_RELAXED) || !memchr(buf, '\n', len))
		return;
	if (!__atomic_exchange_n(&console_seen, true, __ATOMIC_RELAXED))
		kvz_phase("first console line");
}
