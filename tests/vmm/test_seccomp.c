/* kvz-vmm's seccomp filter, on any host (no KVM needed): each case forks a
 * child that installs the very filter kvz-vmm installs, then makes one
 * call. Allowed calls work; a forbidden one ends the child with exit
 * status 1 and the one report line on stderr. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <linux/vhost.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "block.h"
#include "qcow2.h"
#include "seccomp_filter.h"
#include "unix_socket.h"

struct outcome {
	int status;          /* waitpid status */
	char err[1024];      /* the child's stderr */
};

/* The child's body: returns its exit code; reaching the end with the
 * filter on means the call was allowed. */
typedef int (*child_fn)(void);

/* Runs in the child before the filter, as kvz-vmm's setup does. */
static child_fn pre_filter;

static void run_child(enum seccomp_mode mode, child_fn fn, struct outcome *o)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		if (dup2(p[1], STDERR_FILENO) < 0)
			_exit(90);
		if (pre_filter && pre_filter() != 0)
			_exit(92);
		char err[256] = "";
		if (seccomp_filter_install(mode, err, sizeof(err)) < 0) {
			dprintf(STDERR_FILENO, "install failed: %s\n", err);
			_exit(91);
		}
		_exit(fn());
	}
	close(p[1]);
	size_t n = 0;
	ssize_t r;
	while (n < sizeof(o->err) - 1 && (r = read(p[0], o->err + n, sizeof(o->err) - 1 - n)) > 0)
		n += (size_t)r;
	o->err[n] = 0;
	close(p[0]);
	assert_int_equal(waitpid(pid, &o->status, 0), pid);
}

static void assert_allowed(enum seccomp_mode mode, child_fn fn)
{
	struct outcome o;
	run_child(mode, fn, &o);
	if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0)
		fail_msg("child status 0x%x, stderr: %s", o.status, o.err);
	assert_string_equal(o.err, "");
}

static void assert_forbidden(child_fn fn, const char *name)
{
	struct outcome o;
	run_child(SECCOMP_FILTER_ON, fn, &o);
	if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 1)
		fail_msg("child status 0x%x, stderr: %s", o.status, o.err);
	char want[200];
	snprintf(want, sizeof(want), " (%s) \xe2\x80\x94 this is a bug or an attack; stopping\n", name);
	const char *prefix = "kvz-vmm: seccomp: forbidden system call ";
	if (strncmp(o.err, prefix, strlen(prefix)) || !strstr(o.err, want) ||
	    strchr(o.err, '\n') != o.err + strlen(o.err) - 1)
		fail_msg("expected one line '%s<N>%s', got: %s", prefix, want, o.err);
}

/* ---- allowed ---- */

static void *thread_body(void *arg)
{
	char name[] = "vcpu0";
	pthread_setname_np(pthread_self(), name);
	*(int *)arg = 42;
	return NULL;
}

/* What the running VMM does: threads, memory, pipes, time, kicks. */
static int child_allowed(void)
{
	int v = 0;
	pthread_t t;
	if (pthread_create(&t, NULL, thread_body, &v) || pthread_join(t, NULL) || v != 42)
		return 10;
	void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || madvise(m, 1 << 20, MADV_DONTNEED) || munmap(m, 1 << 20))
		return 11;
	free(malloc(64 << 20));   /* mmap'd by malloc */
	uint8_t r[16];
	if (getrandom(r, sizeof(r), 0) != sizeof(r))
		return 12;
	struct timespec ts = {0, 1000};
	if (clock_gettime(CLOCK_MONOTONIC, &ts) || nanosleep(&(struct timespec){0, 1000}, NULL))
		return 13;
	signal(SIGUSR1, SIG_IGN);
	if (pthread_kill(pthread_self(), SIGUSR1))
		return 14;
	return 0;
}

static void test_allowed_calls_work(void **state)
{
	(void)state;
	assert_allowed(SECCOMP_FILTER_ON, child_allowed);
}

/* The stdio console puts the terminal back at exit (TCSETS on stdin, and
 * glibc reads the modes back with TCGETS); other terminal calls are
 * setup only. */
static struct termios saved_tty;

static int stdin_on_pty(void)
{
	int master = posix_openpt(O_RDWR | O_NOCTTY);
	if (master < 0 || grantpt(master) || unlockpt(master))
		return -1;
	int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
	if (slave < 0 || dup2(slave, STDIN_FILENO) != STDIN_FILENO)
		return -1;
	return tcgetattr(STDIN_FILENO, &saved_tty);
}

static int child_restore_tty(void)
{
	return tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty) == 0 ? 0 : 40;
}

static int child_flush_tty(void)
{
	return tcflush(STDIN_FILENO, TCIFLUSH) == 0 ? 30 : 31;
}

static void test_terminal_restore_allowed(void **state)
{
	(void)state;
	int probe = posix_openpt(O_RDWR | O_NOCTTY);
	if (probe < 0) {
		printf("SKIP: no pseudo-terminals here (/dev/ptmx: %s)\n", strerror(errno));
		skip();
	}
	close(probe);
	pre_filter = stdin_on_pty;
	assert_allowed(SECCOMP_FILTER_ON, child_restore_tty);
	assert_forbidden(child_flush_tty, "ioctl");
	pre_filter = NULL;
}

/* The sockets' removal at exit is refused quietly, not fatally. */
static char unlink_path[64];

static int child_unlink(void)
{
	return unlink(unlink_path) == -1 && errno == EPERM ? 0 : 20;
}

static void test_unlink_refused_quietly(void **state)
{
	(void)state;
	snprintf(unlink_path, sizeof(unlink_path), "/tmp/kvz-seccomp-test-XXXXXX");
	int fd = mkstemp(unlink_path);
	assert_true(fd >= 0);
	close(fd);
	assert_allowed(SECCOMP_FILTER_ON, child_unlink);
	struct stat st;
	assert_int_equal(stat(unlink_path, &st), 0);
	unlink(unlink_path);
}

/* ---- forbidden ---- */

static int child_socket(void)
{
	return socket(AF_UNIX, SOCK_STREAM, 0) >= 0 ? 30 : 31;
}

static int child_open_write(void)
{
	return open("/tmp/kvz-seccomp-must-not-exist", O_WRONLY | O_CREAT, 0600) >= 0 ? 30 : 31;
}

static int child_open_read(void)
{
	return open("/etc/hostname", O_RDONLY) >= 0 ? 30 : 31;
}

static int child_execve(void)
{
	char *argv[] = {"/bin/true", NULL};
	execv("/bin/true", argv);
	return 31;
}

static int child_fork(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	return 30;
}

static int child_exec_mmap(void)
{
	void *m = mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return m != MAP_FAILED ? 30 : 31;
}

static int child_exec_mprotect(void)
{
	void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 32;
	return mprotect(m, 4096, PROT_READ | PROT_EXEC) == 0 ? 30 : 31;
}

static int child_other_ioctl(void)
{
	struct winsize ws;
	return ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 ? 30 : 31;
}

static int child_kill_other(void)
{
	/* tgkill only within this process: pid 1 is someone else. */
	return kill(1, 0) == 0 ? 30 : 31;
}

static pid_t parent_pid;   /* read before the filter: getppid is not allowed */

static int child_signal_other_tgkill(void)
{
	return syscall(SYS_tgkill, parent_pid, parent_pid, 0) == 0 ? 30 : 31;
}

static int child_sigaction_other(void)
{
	signal(SIGTERM, SIG_IGN);
	return 30;
}

/* What a snapshot needs (QMP getfd + migrate fd:NAME): a descriptor
 * received with SCM_RIGHTS, then the file laid out and written. */
static int snapshot_pre_fds[2] = {-1, -1};
static int snapshot_pre(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	char tmpl[] = "/tmp/kvz-seccomp-snapXXXXXX";
	int fd = mkstemp(tmpl);
	if (fd < 0)
		return 1;
	unlink(tmpl);
	if (kvz_send_fd(sv[0], "x", 1, fd) != 1)
		return 1;
	close(fd);
	snapshot_pre_fds[0] = sv[1];
	return 0;
}

static int child_snapshot_calls(void)
{
	char b;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = &b, .iov_len = 1};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			   .msg_controllen = sizeof(ctl.buf)};
	if (recvmsg(snapshot_pre_fds[0], &m, MSG_CMSG_CLOEXEC) != 1 || !CMSG_FIRSTHDR(&m))
		return 40;
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
	struct stat st;
	if (fstat(fd, &st) < 0 || ftruncate(fd, 1 << 20) < 0 || pwrite(fd, "s", 1, 4096) != 1 ||
	    fdatasync(fd) < 0)
		return 41;
	if (lseek(fd, 0, SEEK_DATA) < 0 || lseek(fd, 0, SEEK_HOLE) < 0)
		return 42;
	return 0;
}

static void test_snapshot_calls_allowed(void **state)
{
	(void)state;
	pre_filter = snapshot_pre;
	assert_allowed(SECCOMP_FILTER_ON, child_snapshot_calls);
	pre_filter = NULL;
}

/* Live migration: the stream's socket (made before the filter, as kvzd
 * passes it), the source's dirty log ioctls (on no descriptor: allowed
 * means EBADF, not death), cancel's shutdown. */
static int live_pre_fds[2];

static int live_pre(void)
{
	return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, live_pre_fds) < 0;
}

static int child_live_calls(void)
{
	if (send(live_pre_fds[0], "x", 1, MSG_NOSIGNAL) != 1)
		return 50;
	if (ioctl(-1, KVM_GET_DIRTY_LOG, NULL) != -1 || errno != EBADF)
		return 51;
	if (ioctl(-1, KVM_SET_USER_MEMORY_REGION, NULL) != -1 || errno != EBADF)
		return 52;
	if (ioctl(-1, KVM_CLEAR_DIRTY_LOG, NULL) != -1 || errno != EBADF)
		return 58;
	if (ioctl(-1, KVM_SET_CPUID2, NULL) != -1 || errno != EBADF)
		return 53;
	if (shutdown(live_pre_fds[0], SHUT_RDWR) < 0)
		return 54;
	/* vhost-net's log: its address, VHOST_F_LOG_ALL, the rings' log flag */
	if (ioctl(-1, VHOST_SET_LOG_BASE, NULL) != -1 || errno != EBADF)
		return 55;
	if (ioctl(-1, VHOST_SET_FEATURES, NULL) != -1 || errno != EBADF)
		return 56;
	if (ioctl(-1, VHOST_SET_VRING_ADDR, NULL) != -1 || errno != EBADF)
		return 57;
	return 0;
}

/* The log's eventfd is not used: that vhost request stays forbidden. */
static int child_vhost_log_fd(void)
{
	return ioctl(-1, VHOST_SET_LOG_FD, NULL) == -1 ? 60 : 61;
}

/* Manual dirty-log protect is enabled at VM creation, before the filter:
 * KVM_ENABLE_CAP stays forbidden. */
static int child_enable_cap(void)
{
	return ioctl(-1, KVM_ENABLE_CAP, NULL) == -1 ? 62 : 63;
}

static void test_live_migration_calls_allowed(void **state)
{
	(void)state;
	pre_filter = live_pre;
	assert_allowed(SECCOMP_FILTER_ON, child_live_calls);
	pre_filter = NULL;
}

/* Disk I/O through an io_uring engine made before the filter, as
 * virtio-blk's queues are. */
static struct blk_aio *uring_pre_aio;
static int uring_pre_fd = -1;

static int uring_pre(void)
{
	char err[256], path[] = "/tmp/kvz-seccomp-uring-XXXXXX";
	uring_pre_aio = blk_aio_create(8, false, err, sizeof(err));
	uring_pre_fd = mkstemp(path);
	if (!uring_pre_aio || uring_pre_fd < 0)
		return 1;
	unlink(path);
	return 0;
}

static int uring_result;
static bool uring_done;

static void uring_op_done(struct blk_aio_op *op, int result)
{
	(void)op;
	uring_result = result;
	uring_done = true;
}

static int uring_op(enum blk_op kind, void *buf, size_t len)
{
	struct iovec iov = {buf, len};
	struct blk_aio_op op = {.op = kind, .fd = uring_pre_fd, .offset = 0, .len = len,
				.iov = &iov, .niov = buf ? 1 : 0, .done = uring_op_done};
	uring_done = false;
	blk_aio_submit(uring_pre_aio, &op);
	blk_aio_flush_submissions(uring_pre_aio);
	while (!uring_done)
		blk_aio_poll(uring_pre_aio, true);
	return uring_result;
}

static int child_uring_io(void)
{
	char w[512], r[512];
	memset(w, 0x5a, sizeof(w));
	if (uring_op(BLK_OP_WRITE, w, sizeof(w)) || uring_op(BLK_OP_FLUSH, NULL, 0) ||
	    uring_op(BLK_OP_READ, r, sizeof(r)))
		return 60;
	return memcmp(w, r, sizeof(r)) ? 61 : 0;
}

static bool have_uring(void)
{
	char err[256];
	struct blk_aio *a = blk_aio_create(1, false, err, sizeof(err));
	bool yes = a && blk_aio_kind(a) == BLK_AIO_IO_URING;
	blk_aio_destroy(a);
	return yes;
}

static void test_disk_io_through_io_uring_allowed(void **state)
{
	(void)state;
	if (!have_uring()) {
		print_message("io_uring unavailable on this kernel: skipped\n");
		skip();
	}
	pre_filter = uring_pre;
	assert_allowed(SECCOMP_FILTER_ON, child_uring_io);
	pre_filter = NULL;
}

/* QMP block_resize at run time: a raw image grows with ftruncate and
 * fdatasync, a qcow2 one with pwrite (a new L1 table, the header) and
 * fdatasync; both images are opened before the filter, as kvz-vmm does. */
static struct blk_backend *grow_pre_raw, *grow_pre_q2;

static int open_tmp_image(const char *fmt, struct blk_backend **out)
{
	char path[] = "/tmp/kvz-seccomp-grow-XXXXXX", err[300];
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	close(fd);
	struct qcow2_create_opts co = {1u << 20, 16, NULL, NULL};
	bool q2 = !strcmp(fmt, "qcow2");
	if (q2)
		unlink(path);   /* qcow2_create makes the file itself */
	int r = q2 ? qcow2_create(path, &co, err, sizeof(err)) : truncate(path, 1 << 20);
	struct blk_open_opts o = {.path = path, .format = fmt};
	if (r == 0)
		r = blk_open(&o, out, err, sizeof(err));
	unlink(path);
	return r;
}

static int grow_pre(void)
{
	return open_tmp_image("raw", &grow_pre_raw) || open_tmp_image("qcow2", &grow_pre_q2);
}

static int child_block_grow(void)
{
	char err[300];
	if (blk_grow(grow_pre_raw, 3u << 20, err, sizeof(err)) < 0)
		return 70;
	/* Past what the first L1 table maps (512 MiB per entry here). */
	if (blk_grow(grow_pre_q2, 2ull << 30, err, sizeof(err)) < 0)
		return 71;
	return grow_pre_raw->size == 3u << 20 && grow_pre_q2->size == 2ull << 30 ? 0 : 72;
}

static void test_block_grow_allowed(void **state)
{
	(void)state;
	pre_filter = grow_pre;
	assert_allowed(SECCOMP_FILTER_ON, child_block_grow);
	pre_filter = NULL;
}

/* New rings, or changes to the existing ones, are setup-only. */
static int child_uring_setup(void)
{
	char err[256];
	blk_aio_create(8, false, err, sizeof(err));
	return 62;
}

static int child_uring_register(void)
{
	syscall(SYS_io_uring_register, 3, 0, NULL, 0);
	return 63;
}

static void test_io_uring_setup_forbidden(void **state)
{
	(void)state;
	assert_forbidden(child_uring_setup, "io_uring_setup");
	assert_forbidden(child_uring_register, "io_uring_register");
}

/* `migrate tcp:` is for runs without the filter: no connect under it. */
static int child_connect(void)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	connect(live_pre_fds[0], (struct sockaddr *)&a, sizeof(a));
	return 55;
}

static void test_connect_forbidden(void **state)
{
	(void)state;
	pre_filter = live_pre;
	assert_forbidden(child_connect, "connect");
	pre_filter = NULL;
}

/* fstat of a descriptor, yes; stat of a path, no. */
static int child_stat_path(void)
{
	struct stat st;
	syscall(SYS_newfstatat, AT_FDCWD, "/etc/passwd", &st, 0);
	return 43;
}

static void test_stat_of_paths_forbidden(void **state)
{
	(void)state;
	assert_forbidden(child_stat_path, "newfstatat");
}

static void test_socket_forbidden(void **state)
{
	(void)state;
	assert_forbidden(child_socket, "socket");
}

static void test_open_forbidden(void **state)
{
	(void)state;
	assert_forbidden(child_open_write, "openat");
	assert_forbidden(child_open_read, "openat");
	struct stat st;
	assert_int_equal(stat("/tmp/kvz-seccomp-must-not-exist", &st), -1);
}

static void test_new_programs_forbidden(void **state)
{
	(void)state;
	assert_forbidden(child_execve, "execve");
	assert_forbidden(child_fork, "clone");
}

static void test_executable_memory_forbidden(void **state)
{
	(void)state;
	assert_forbidden(child_exec_mmap, "mmap");
	assert_forbidden(child_exec_mprotect, "mprotect");
}

static void test_arguments_restricted(void **state)
{
	(void)state;
	assert_forbidden(child_other_ioctl, "ioctl");
	assert_forbidden(child_vhost_log_fd, "ioctl");
	assert_forbidden(child_enable_cap, "ioctl");
	assert_forbidden(child_kill_other, "kill");
	assert_forbidden(child_signal_other_tgkill, "tgkill");
	assert_forbidden(child_sigaction_other, "rt_sigaction");
}

/* log: what the list lacks still works (the kernel logs it). */
static void test_log_mode_allows(void **state)
{
	(void)state;
	struct outcome o;
	run_child(SECCOMP_FILTER_LOG, child_socket, &o);
	if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 30)
		fail_msg("child status 0x%x, stderr: %s", o.status, o.err);
}

static void test_parse_mode(void **state)
{
	(void)state;
	enum seccomp_mode m;
	assert_true(seccomp_filter_parse_mode("on", &m) && m == SECCOMP_FILTER_ON);
	assert_true(seccomp_filter_parse_mode("off", &m) && m == SECCOMP_FILTER_OFF);
	assert_true(seccomp_filter_parse_mode("log", &m) && m == SECCOMP_FILTER_LOG);
	assert_false(seccomp_filter_parse_mode("yes", &m));
	assert_false(seccomp_filter_parse_mode("", &m));
}

int main(void)
{
	if (!seccomp_filter_supported()) {
		printf("SKIP: sanitizer build: kvz-vmm does not install its seccomp filter there\n");
		return 77;
	}
	parent_pid = getpid();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_mode),
		cmocka_unit_test(test_allowed_calls_work),
		cmocka_unit_test(test_unlink_refused_quietly),
		cmocka_unit_test(test_terminal_restore_allowed),
		cmocka_unit_test(test_snapshot_calls_allowed),
		cmocka_unit_test(test_stat_of_paths_forbidden),
		cmocka_unit_test(test_live_migration_calls_allowed),
		cmocka_unit_test(test_disk_io_through_io_uring_allowed),
		cmocka_unit_test(test_block_grow_allowed),
		cmocka_unit_test(test_io_uring_setup_forbidden),
		cmocka_unit_test(test_connect_forbidden),
		cmocka_unit_test(test_socket_forbidden),
		cmocka_unit_test(test_open_forbidden),
		cmocka_unit_test(test_new_programs_forbidden),
		cmocka_unit_test(test_executable_memory_forbidden),
		cmocka_unit_test(test_arguments_restricted),
		cmocka_unit_test(test_log_mode_allows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
