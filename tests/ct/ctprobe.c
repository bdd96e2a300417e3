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
#include <sys/sysmacros.h>
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

/* ---- kvz-ct exec attacks (tests/ct/test_attack_exec.py) ----
 *   ctprobe tiocsti TEXT    push TEXT into the input of stdin's terminal and
 *                           of /dev/tty with TIOCSTI; print what each gave
 *   ctprobe procwatch SEC SECRET
 *                           for SEC seconds, look at every process that
 *                           appears: read its environ (count SECRET seen),
 *                           hold its exe (if not a file of ours) and try
 *                           to append a byte to it,
 *                           open its descriptors and count terminals that
 *                           are not from this container's devpts */
#include <dirent.h>
#include <stdbool.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

static void tiocsti_on(const char *what, int fd, const char *text)
{
	int ok = 0, err = 0;
	for (const char *p = text; *p; p++) {
		if (ioctl(fd, TIOCSTI, p) == 0)
			ok++;
		else
			err = errno;
	}
	printf("tiocsti %s: pushed %d errno %d\n", what, ok, err);
}

static int tiocsti(const char *text)
{
	tiocsti_on("stdin", 0, text);
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
	if (fd < 0)
		printf("tiocsti /dev/tty: open errno %d\n", errno);
	else
		tiocsti_on("/dev/tty", fd, text);
	return 0;
}

struct watch_counts {
	long procs, environ_read, secret, exe_opened, exe_written, fds_opened, foreign_tty;
};

static void watch_environ(int pid, const char *secret, struct watch_counts *c)
{
	char path[64], buf[65536];
	snprintf(path, sizeof(path), "/proc/%d/environ", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	c->environ_read++;
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = '\n';
	buf[n] = 0;
	if (strstr(buf, secret))
		c->secret++;
}

/* Files of the container itself (busybox...) are not what we are after:
 * only an exe that is not reachable by its own path in here is foreign. */
static bool own_file(int pid, const struct stat *st)
{
	char path[64], target[4096];
	struct stat there;
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	ssize_t n = readlink(path, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = 0;
	return stat(target, &there) == 0 && there.st_dev == st->st_dev && there.st_ino == st->st_ino;
}

/* As in CVE-2019-5736: hold the exe with O_PATH (no ETXTBSY while it
 * runs), and reopen it for writing through /proc/self/fd later. */
static int held[64];
static int nheld;

static void watch_exe(int pid, struct watch_counts *c)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	int fd = open(path, O_PATH);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) < 0 || own_file(pid, &st) || nheld == 64) {
		close(fd);
		return;
	}
	c->exe_opened++;
	if (c->exe_opened <= 4)
		printf("exe-foreign %lu:%lu\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
	held[nheld++] = fd;
}

static void write_held(struct watch_counts *c)
{
	for (int i = 0; i < nheld; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", held[i]);
		int fd = open(path, O_WRONLY);
		if (fd < 0)
			continue;
		struct stat st;
		if (fstat(fd, &st) == 0 && pwrite(fd, "X", 1, st.st_size) == 1)
			c->exe_written++;
		close(fd);
	}
}

static void watch_fds(int pid, dev_t our_pts, struct watch_counts *c)
{
	for (int i = 0; i < 16; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, i);
		int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK);
		if (fd < 0)
			continue;
		c->fds_opened++;
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 &&
		    major(st.st_rdev) <= 143 && st.st_dev != our_pts)
			c->foreign_tty++;
		close(fd);
	}
}

static int procwatch(double sec, const char *secret)
{
	static char seen[1 << 22]; /* pid_max is at most 4M */
	struct watch_counts c = {0};
	struct stat pts;
	dev_t our_pts = stat("/dev/pts/ptmx", &pts) == 0 ? pts.st_dev : 0;
	double t0 = now(CLOCK_MONOTONIC);
	int self = getpid();
	printf("watching\n");
	while (now(CLOCK_MONOTONIC) - t0 < sec) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			int pid = atoi(e->d_name);
			if (pid <= 1 || pid == self || pid >= (int)sizeof(seen))
				continue;
			if (!seen[pid])
				c.procs++;
			seen[pid] = 1;
			watch_environ(pid, secret, &c);
			watch_exe(pid, &c);
			watch_fds(pid, our_pts, &c);
		}
		if (d)
			closedir(d);
		write_held(&c);
	}
	printf("procs %ld environ-read %ld secret %ld exe-opened %ld exe-written %ld fds-opened %ld "
	       "foreign-tty %ld\n", c.procs, c.environ_read, c.secret, c.exe_opened, c.exe_written,
	       c.fds_opened, c.foreign_tty);
	return 0;
}
/* ---- end of kvz-ct exec attacks ---- */

/* ---- kvz-ct network attacks (tests/ct/test_attack_net.py) ----
 *   ctprobe udpsend SRC DST PORT TEXT
 *                           send one UDP datagram TEXT from address SRC
 *                           (IP_FREEBIND: it need not be ours) to DST:PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int udpsend(const char *src, const char *dst, int port, const char *text)
{
	struct sockaddr_in a = {.sin_family = AF_INET}, b = {.sin_family = AF_INET};
	int one = 1, fd = socket(AF_INET, SOCK_DGRAM, 0);
	b.sin_port = htons((unsigned short)port);
	if (fd < 0 || inet_pton(AF_INET, src, &a.sin_addr) != 1 || inet_pton(AF_INET, dst, &b.sin_addr) != 1 ||
	    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    sendto(fd, text, strlen(text), 0, (struct sockaddr *)&b, sizeof(b)) < 0) {
		printf("udpsend failed errno %d\n", errno);
		return 1;
	}
	printf("udpsend sent\n");
	return 0;
}
/* ---- end of kvz-ct network attacks ---- */

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
	if (argc >= 3 && !strcmp(argv[1], "tiocsti"))
		return tiocsti(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "procwatch"))
		return procwatch(atof(argv[2]), argv[3]);
	if (argc >= 6 && !strcmp(argv[1], "udpsend"))
		return udpsend(argv[2], argv[3], atoi(argv[4]), argv[5]);
	fprintf(stderr, "usage: ctprobe alloc MB | hold MB SEC | forks N | spin SEC\n");
	return 2;
}
