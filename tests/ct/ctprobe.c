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
 *   ctprobe userns-as UID GID CMD...     run CMD as UID:GID (no groups)
 * Confinement probes (the block at the end of this file; used by
 * test_attack_confine.py):
 *   ctprobe sys NAME...     make each system call NAME with arguments that
 *                           are harmless if it is allowed, print
 *                           "NAME errno E" (0: it was allowed) or
 *                           "NAME signal S" when the call killed it
 *                           (i386 and x32: getpid through those ABIs)
 *   ctprobe open PATH r|w|rw  open(2) PATH, print "open errno E"
 *   ctprobe write PATH TEXT open PATH write-only, write TEXT, print
 *                           "write errno E"
 *   ctprobe mknod PATH c|b MAJ MIN  print "mknod errno E"
 * Checkpoint probes (test_ct_checkpoint_lab.py), after main:
 *   ctprobe mempattern MB FILE   fill MB MiB with a pattern, then every
 *                           200 ms rewrite FILE with "ticks N sum0 X sum Y"
 *                           (X: the checksum when filled, Y: now)
 *   ctprobe echo-server PORT accept one TCP connection, echo what it sends
 *   ctprobe hold-client IP PORT FIFO  connect, then send each line read
 *                           from FIFO and print "echo LINE port P" for
 *                           each reply (P: the local port, which shows
 *                           it is still the same connection)
 *   ctprobe dirty MB PCT     touch MB MiB, then rewrite the next PCT% of its
 *                           pages (one run) every 100 ms, for ever (0: idle)
 *   ctprobe gapwatch FILE    every 1 ms note the longest stall seen so far
 *                           (the container frozen) as "max_gap_us N" in
 *                           FILE; FILE.reset, when present, restarts it;
 *                           each stall of 20 ms or more is appended to
 *                           FILE.log as "stall FROM_US TO_US"; timed by
 *                           CLOCK_REALTIME (see wall_us) */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/ptrace.h>
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
static int confine_probe(int argc, char **argv);
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

static int ckpt_probe(int argc, char **argv);

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int rc = argc >= 3 ? ckpt_probe(argc, argv) : -1;
	if (rc >= 0)
		return rc;
	if (argc >= 2 && confine_probe(argc, argv) >= 0)
		return 0;
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
	if (argc >= 3 && !strcmp(argv[1], "tiocsti"))
		return tiocsti(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "procwatch"))
		return procwatch(atof(argv[2]), argv[3]);
	if (argc >= 6 && !strcmp(argv[1], "udpsend"))
		return udpsend(argv[2], argv[3], atoi(argv[4]), argv[5]);
	fprintf(stderr, "usage: ctprobe alloc MB | hold MB SEC | forks N | spin SEC | sys NAME... | "
		"open PATH MODE | write PATH TEXT | mknod PATH TYPE MAJ MIN | userns-... | "
		"tiocsti TEXT | procwatch SEC SECRET | udpsend ...\n");
	return 2;
}

/* ==== Confinement probes (test_attack_confine.py) ====================
 * Each call is made with arguments that do nothing to the host even when
 * the kernel lets it through (invalid flags, a NULL buffer, a name that does
 * not exist, a read-only query), so that a probe that gets through shows up
 * as an errno other than EPERM and never as damage. */
#include <fcntl.h>
#include <linux/personality.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

static long probe_handle(void)
{
	/* Shocker: a file handle of / turned back into an open file. */
	struct { struct file_handle fh; unsigned char buf[128]; } h;
	int mount_id;
	h.fh.handle_bytes = sizeof(h.buf);
	if (syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &h.fh, &mount_id, 0) < 0)
		return -1;
	int mfd = open("/", O_RDONLY | O_DIRECTORY);
	long r = syscall(SYS_open_by_handle_at, mfd, &h.fh, O_RDONLY);
	int e = errno;
	close(mfd);
	errno = e;
	return r;
}

static long probe_clone_userns(void)
{
	long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	return pid;
}

static long probe_call(const char *n)
{
	struct timespec ts = {0, 0};
	if (!strcmp(n, "init_module")) return syscall(SYS_init_module, NULL, 0, "");
	if (!strcmp(n, "finit_module")) return syscall(SYS_finit_module, -1, "", 0);
	if (!strcmp(n, "delete_module")) return syscall(SYS_delete_module, "kvz_no_such_module", O_NONBLOCK);
	if (!strcmp(n, "kexec_load")) return syscall(SYS_kexec_load, 0, 0, NULL, 0x8000UL);
	if (!strcmp(n, "kexec_file_load")) return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0x8000UL);
	if (!strcmp(n, "bpf")) return syscall(SYS_bpf, 5 /* PROG_LOAD */, NULL, 0);
	if (!strcmp(n, "perf_event_open")) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
	if (!strcmp(n, "keyctl")) return syscall(SYS_keyctl, 0 /* GET_KEYRING_ID */, -2 /* process */, 0);
	if (!strcmp(n, "add_key")) return syscall(SYS_add_key, "user", "kvzprobe", NULL, 0, 0);
	if (!strcmp(n, "request_key")) return syscall(SYS_request_key, "user", "kvzprobe-none", NULL, 0);
	if (!strcmp(n, "open_by_handle_at")) return probe_handle();
	if (!strcmp(n, "userfaultfd")) return syscall(SYS_userfaultfd, O_CLOEXEC);
	if (!strcmp(n, "iopl")) return syscall(SYS_iopl, 3);
	if (!strcmp(n, "ioperm")) return syscall(SYS_ioperm, 0x80, 1, 1);
	if (!strcmp(n, "syslog")) return syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0);
	if (!strcmp(n, "acct")) return syscall(SYS_acct, "/kvz-no-such-dir/acct");
	if (!strcmp(n, "swapon")) return syscall(SYS_swapon, "/kvz-no-such-file", 0);
	if (!strcmp(n, "swapoff")) return syscall(SYS_swapoff, "/kvz-no-such-file");
	if (!strcmp(n, "settimeofday")) return syscall(SYS_settimeofday, NULL, NULL);
	if (!strcmp(n, "clock_settime")) return syscall(SYS_clock_settime, CLOCK_MONOTONIC, &ts);
	if (!strcmp(n, "quotactl")) return syscall(SYS_quotactl, 0, NULL, 0, NULL);
	if (!strcmp(n, "clone3")) return syscall(SYS_clone3, NULL, 0);
	if (!strcmp(n, "io_uring_setup")) return syscall(SYS_io_uring_setup, 0, NULL);
	if (!strcmp(n, "fsopen")) return syscall(SYS_fsopen, "kvz-no-such-fs", 0);
	if (!strcmp(n, "unshare_user")) return syscall(SYS_unshare, CLONE_NEWUSER);
	if (!strcmp(n, "clone_user")) return probe_clone_userns();
	if (!strcmp(n, "personality_zero")) return syscall(SYS_personality, PER_LINUX | MMAP_PAGE_ZERO);
	if (!strcmp(n, "personality_query")) return syscall(SYS_personality, 0xffffffffUL);
	if (!strcmp(n, "unshare_mnt")) return syscall(SYS_unshare, CLONE_NEWNS);
	errno = EINVAL;
	fprintf(stderr, "ctprobe: unknown probe %s\n", n);
	exit(2);
}

/* Each probe runs in a child of its own, so that one that changes the
 * process (a new user namespace, a personality) cannot change the next, and
 * a filter that kills a foreign-ABI call shows as "signal S". */
static void probe(const char *n)
{
	pid_t pid = fork();
	if (pid == 0) {
		long r;
		errno = 0;
		if (!strcmp(n, "i386")) { /* getpid through the 32-bit entry */
			__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
			_exit(r > 0 ? 0 : (int)-r);
		}
		if (!strcmp(n, "x32")) /* getpid with the x32 bit */
			r = syscall(0x40000000L | SYS_getpid);
		else
			r = probe_call(n);
		_exit(r < 0 ? errno : 0);
	}
	int st;
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st))
		printf("%s signal %d\n", n, WTERMSIG(st));
	else
		printf("%s errno %d\n", n, WEXITSTATUS(st));
}

static void print_errno(const char *what, long r)
{
	printf("%s errno %d\n", what, r < 0 ? errno : 0);
}

static int open_mode(const char *m)
{
	return !strcmp(m, "r") ? O_RDONLY : !strcmp(m, "w") ? O_WRONLY : O_RDWR;
}

/* Returns -1 when argv is not a confinement probe. */
static int confine_probe(int argc, char **argv)
{
	if (!strcmp(argv[1], "sys")) {
		for (int i = 2; i < argc; i++)
			probe(argv[i]);
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "open")) {
		int fd = open(argv[2], open_mode(argv[3]) | O_NONBLOCK);
		print_errno("open", fd);
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "write")) {
		int fd = open(argv[2], O_WRONLY | O_NONBLOCK);
		long r = fd < 0 ? -1 : write(fd, argv[3], strlen(argv[3]));
		print_errno("write", r);
		return 0;
	}
	if (argc >= 6 && !strcmp(argv[1], "mknod")) {
		mode_t type = argv[3][0] == 'b' ? S_IFBLK : S_IFCHR;
		dev_t dev = makedev(atoi(argv[4]), atoi(argv[5]));
		print_errno("mknod", mknod(argv[2], type | 0666, dev));
		return 0;
	}
	return -1;
}

/* ==== Checkpoint probes (test_ct_checkpoint_lab.py) ==================== */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>

static uint64_t pattern_sum(const uint64_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static int mempattern(long mb, const char *file)
{
	size_t n = ((size_t)mb << 20) / sizeof(uint64_t);
	uint64_t *p = malloc(n * sizeof(*p)), x = 88172645463325252ull;
	if (!p)
		return 2;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		p[i] = x;
	}
	uint64_t sum0 = pattern_sum(p, n);
	char tmp[256];
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	for (unsigned long ticks = 0;; ticks++) {
		FILE *f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "ticks %lu sum0 %016llx sum %016llx\n", ticks,
				(unsigned long long)sum0, (unsigned long long)pattern_sum(p, n));
			fclose(f);
			rename(tmp, file);
		}
		usleep(200000);
	}
}

static int echo_server(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0)
		return 1;
	int c = accept(l, NULL, NULL);
	char buf[512];
	ssize_t n;
	while (c >= 0 && (n = read(c, buf, sizeof(buf))) > 0)
		if (write(c, buf, (size_t)n) != n)
			break;
	return 0;
}

static int hold_client(const char *ip, int port, const char *fifo)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)}, me;
	socklen_t ml = sizeof(me);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || inet_pton(AF_INET, ip, &a.sin_addr) != 1 ||
	    connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(s, (struct sockaddr *)&me, &ml) < 0) {
		printf("connect failed errno %d\n", errno);
		return 1;
	}
	printf("connected port %d\n", ntohs(me.sin_port));
	FILE *in = fopen(fifo, "r+"); /* r+: no EOF between writers */
	char line[256], reply[256];
	while (in && fgets(line, sizeof(line), in)) {
		size_t n = strlen(line);
		ssize_t got = 0, r;
		if (write(s, line, n) != (ssize_t)n)
			break;
		while ((size_t)got < n && (r = read(s, reply + got, n - (size_t)got)) > 0)
			got += r;
		if ((size_t)got != n) {
			printf("connection lost errno %d\n", errno);
			return 1;
		}
		reply[n - 1] = 0;
		printf("echo %s port %d\n", reply, ntohs(me.sin_port));
	}
	return 0;
}

/* A moving working set: each round rewrites the next PCT% of the pages as
 * one contiguous run (spread-out writes would dirty every transparent huge
 * page, and with it all memory, in one round). */
static int dirty(long mb, long pct)
{
	size_t pages = ((size_t)mb << 20) / 4096, run = pages * (size_t)pct / 100, at = 0;
	volatile char *p = (volatile char *)touch(mb);
	for (;;) {
		for (size_t i = 0; i < run; i++)
			p[((at + i) % pages) * 4096]++;
		at = (at + run) % pages;
		usleep(100000);
	}
	return 0;
}

/* Not CLOCK_MONOTONIC: CRIU restores the tasks into a time namespace
 * whose monotonic clock goes on from the dump, so that clock skips most
 * of a move's frozen window. The realtime clock is not namespaced (and
 * nothing steps it in the lab): it shows the whole stall. */
static long long wall_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Stalls this long or longer are listed with their times. */
#define GAP_LOGGED_US 20000

static void log_stall(const char *log, long long from, long long to)
{
	FILE *f = fopen(log, "a");
	if (!f)
		return;
	fprintf(f, "stall %lld %lld\n", from, to);
	fclose(f);
}

static int gapwatch(const char *file)
{
	char reset[256], tmp[256], log[256];
	snprintf(reset, sizeof(reset), "%s.reset", file);
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	snprintf(log, sizeof(log), "%s.log", file);
	long long last = wall_us(), max = -1;
	for (;;) {
		usleep(1000);
		long long now = wall_us(), gap = now - last;
		if (unlink(reset) == 0) {
			max = -1, gap = 0;
			unlink(log);
		}
		if (gap >= GAP_LOGGED_US)
			log_stall(log, last, now);
		last = now;
		if (gap <= max)
			continue;
		max = gap;
		FILE *f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "max_gap_us %lld\n", max);
			fclose(f);
			rename(tmp, file);
		}
	}
	return 0;
}

/* pair CMD_A CMD_B: a TCP connection on 127.0.0.1 (as kvzd's migration
 * port), one end to each of two shell commands as $PS_FD; prints their
 * exit codes; 0 when both succeed. */
static pid_t pair_run(const char *cmd, int fd, int other)
{
	pid_t pid = fork();
	if (pid == 0) {
		char num[16];
		snprintf(num, sizeof(num), "%d", fd);
		close(other);
		setenv("PS_FD", num, 1);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int pair(const char *a, const char *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&sa, &sl) < 0 ||
	    connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("pair");
		return 1;
	}
	int s = accept(l, NULL, NULL);
	close(l);
	if (s < 0) {
		perror("pair: accept");
		return 1;
	}
	pid_t pa = pair_run(a, c, s), pb = pair_run(b, s, c);
	close(c);
	close(s);
	int sa_st = 0, sb_st = 0;
	waitpid(pa, &sa_st, 0);
	waitpid(pb, &sb_st, 0);
	int ra = WIFEXITED(sa_st) ? WEXITSTATUS(sa_st) : 128, rb = WIFEXITED(sb_st) ? WEXITSTATUS(sb_st) : 128;
	printf("PAIR a=%d b=%d\n", ra, rb);
	return ra || rb;
}

static int ckpt_probe(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "pair"))
		return pair(argv[2], argv[3]);
	if (argc >= 4 && !strcmp(argv[1], "dirty"))
		return dirty(atol(argv[2]), atol(argv[3]));
	if (!strcmp(argv[1], "gapwatch"))
		return gapwatch(argv[2]);
	if (argc >= 4 && !strcmp(argv[1], "mempattern"))
		return mempattern(atol(argv[2]), argv[3]);
	if (!strcmp(argv[1], "echo-server"))
		return echo_server(atoi(argv[2]));
	if (argc >= 5 && !strcmp(argv[1], "hold-client"))
		return hold_client(argv[2], atoi(argv[3]), argv[4]);
	return -1;
}
