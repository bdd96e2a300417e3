/* A static helper copied into test containers, so that the tests measure
 * the kernel's limits rather than a shell's behaviour:
 *   ctprobe alloc MB        allocate and touch MB MiB, print "allocated MB"
 *   ctprobe hold MB SEC     allocate MB MiB and keep it for SEC seconds
 *   ctprobe forks N         fork up to N sleeping children, print how many
 *                           forks succeeded before the first failure
 *   ctprobe spin SEC        busy-loop for SEC seconds of wall time, print
 *                           "cpu-share X" = CPU time / wall time
 * User-namespace probes (test_attack_userns.py), below main's helpers:
 *   ctprobe userns-kill NSPID PID SIG    as root of NSPID's user namespace
 *                           (run on the host), send SIG to host pid PID;
 *                           print "kill=ok" or "kill=ERRNO-NAME"
 *   ctprobe userns-ptrace NSPID PID      the same with PTRACE_ATTACH:
 *                           "ptrace=ok" (detached again) or "ptrace=..."
 *   ctprobe userns-as UID GID CMD...     run CMD as UID:GID (no groups) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/ptrace.h>
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

/* ---- user-namespace probes ---- */

static const char *errno_name(int e)
{
	return e == EPERM ? "EPERM" : e == ESRCH ? "ESRCH" : e == EACCES ? "EACCES" : strerror(e);
}

/* Joins the user namespace of nspid as its root (uid and gid 0 there):
 * what a process of that container running as its root is. */
static int join_userns_root(const char *nspid)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%s/ns/user", nspid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || setns(fd, CLONE_NEWUSER) < 0 || setgroups(0, NULL) < 0 ||
	    setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
		fprintf(stderr, "ctprobe: cannot become root of %s: %s\n", path, strerror(errno));
		return -1;
	}
	close(fd);
	return 0;
}

static int userns_probe(int argc, char **argv)
{
	if (argc >= 5 && !strcmp(argv[1], "userns-kill")) {
		if (join_userns_root(argv[2]) < 0)
			return 1;
		int rc = kill((pid_t)atoi(argv[3]), atoi(argv[4]));
		printf("kill=%s\n", rc == 0 ? "ok" : errno_name(errno));
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "userns-ptrace")) {
		if (join_userns_root(argv[2]) < 0)
			return 1;
		pid_t pid = (pid_t)atoi(argv[3]);
		long rc = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
		printf("ptrace=%s\n", rc == 0 ? "ok" : errno_name(errno));
		if (rc == 0) {
			waitpid(pid, NULL, __WALL);
			ptrace(PTRACE_DETACH, pid, NULL, NULL);
		}
		return 0;
	}
	if (argc >= 5 && !strcmp(argv[1], "userns-as")) {
		gid_t gid = (gid_t)atoi(argv[3]);
		if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 ||
		    setresuid((uid_t)atoi(argv[2]), (uid_t)atoi(argv[2]), (uid_t)atoi(argv[2])) < 0) {
			fprintf(stderr, "ctprobe: cannot become %s:%s: %s\n", argv[2], argv[3], strerror(errno));
			return 1;
		}
		execvp(argv[4], argv + 4);
		fprintf(stderr, "ctprobe: cannot run %s: %s\n", argv[4], strerror(errno));
		return 127;
	}
	fprintf(stderr, "usage: ctprobe userns-kill NSPID PID SIG | userns-ptrace NSPID PID | userns-as UID GID CMD...\n");
	return 2;
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
	if (argc >= 2 && !strncmp(argv[1], "userns-", 7))
		return userns_probe(argc, argv);
	fprintf(stderr, "usage: ctprobe alloc MB | hold MB SEC | forks N | spin SEC\n");
	return 2;
}
