/* A static helper copied into test containers, so that the tests measure
 * the kernel's limits rather than a shell's behaviour:
 *   ctprobe alloc MB        allocate and touch MB MiB, print "allocated MB"
 *   ctprobe hold MB SEC     allocate MB MiB and keep it for SEC seconds
 *   ctprobe forks N         fork up to N sleeping children, print how many
 *                           forks succeeded before the first failure
 *   ctprobe spin SEC        busy-loop for SEC seconds of wall time, print
 *                           "cpu-share X" = CPU time / wall time */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Volatile so that the compiler keeps allocations nobody reads. */
static char *volatile kept;

static char *touch(long mb)
{
	size_t size = (size_t)mb << 20;
	volatile char *p = malloc(size);
	if (!p) {
		printf("malloc failed\n");
		exit(2);
	}
	for (size_t i = 0; i < size; i += 4096)
		p[i] = 1;
	kept = (char *)p;
	return (char *)p;
}

static int forks(long n)
{
	long ok = 0;
	pid_t *kids = calloc((size_t)n, sizeof(pid_t));
	int err = 0;
	for (; ok < n; ok++) {
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid < 0) {
			err = errno;
			break;
		}
		kids[ok] = pid;
	}
	printf("forked %ld errno %d\n", ok, err);
	fflush(stdout);
	for (long i = 0; i < ok; i++)
		kill(kids[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	return 0;
}

static double now(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int spin(double sec)
{
	double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
	volatile unsigned long x = 0;
	while (now(CLOCK_MONOTONIC) - w0 < sec)
		for (int i = 0; i < 100000; i++)
			x++;
	double w = now(CLOCK_MONOTONIC) - w0, c = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
	printf("cpu-share %.3f\n", c / w);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "alloc")) {
		touch(atol(argv[2]));
		printf("allocated %s\n", argv[2]);
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "hold")) {
		touch(atol(argv[2]));
		printf("holding %s\n", argv[2]);
		sleep((unsigned)atoi(argv[3]));
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "forks"))
		return forks(atol(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "spin"))
		return spin(atof(argv[2]));
	fprintf(stderr, "usage: ctprobe alloc MB | hold MB SEC | forks N | spin SEC\n");
	return 2;
}
