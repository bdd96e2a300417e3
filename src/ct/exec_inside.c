#include "exec_inside.h"

#include "namespaces.h"
#include "unix_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static __attribute__((noreturn, format(printf, 3, 4))) void fail(const struct exec_inside *x, int code,
								 const char *fmt, ...)
{
	char msg[1024];
	msg[0] = EXEC_MSG_ERROR;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg + 1, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	if (send(x->ctl, msg, strlen(msg), MSG_NOSIGNAL) < 0) {
		/* the host side is gone: nobody to tell */
	}
	_exit(code);
}

static void send_master(const struct exec_inside *x, int master)
{
	char type = EXEC_MSG_MASTER;
	if (kvz_send_fd(x->ctl, &type, 1, master) < 0)
		fail(x, 1, "cannot hand the terminal over: %s", strerror(errno));
}

static void join_cgroups(const struct exec_inside *x)
{
	size_t i;
	json_t *p;
	char pid[32];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	json_array_foreach(x->cgroups, i, p) {
		char file[4096];
		snprintf(file, sizeof(file), "%s/cgroup.procs", json_string_value(p));
		int fd = open(file, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, pid, strlen(pid)) < 0)
			fail(x, 1, "cannot join cgroup %s: %s", json_string_value(p), strerror(errno));
		close(fd);
	}
}

static bool same_ns(pid_t pid, const char *ns)
{
	char a[64], b[64];
	struct stat sa, sb;
	snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)pid, ns);
	snprintf(b, sizeof(b), "/proc/self/ns/%s", ns);
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

/* The user namespace goes first (it owns the others), the mount namespace
 * last, then the root of the container's init. All descriptors are opened
 * before the first setns, while /proc is still the host's. */
static void enter_namespaces(const struct exec_inside *x)
{
	static const char *const order[] = {"user", "cgroup", "ipc", "uts", "net", "pid", "mnt"};
	enum { NNS = sizeof(order) / sizeof(order[0]) };
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/root", (int)x->init);
	int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		fail(x, 1, "cannot open %s: %s", path, strerror(errno));
	int fds[NNS];
	for (size_t i = 0; i < NNS; i++) {
		fds[i] = -1;
		if (same_ns(x->init, order[i]))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)x->init, order[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			fail(x, 1, "cannot open %s: %s", path, strerror(errno));
	}
	for (size_t i = 0; i < NNS; i++) {
		if (fds[i] >= 0 && setns(fds[i], 0) < 0)
			fail(x, 1, "cannot enter the container's %s namespace: %s", order[i], strerror(errno));
		if (fds[i] >= 0)
			close(fds[i]);
	}
	if (fchdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0)
		fail(x, 1, "cannot enter the container's root: %s", strerror(errno));
	close(root);
}

/* The container's credentials: its root (the first host id of its range
 * under a user namespace) and no supplementary groups of the administrator.
 * The bounding set, no_new_privs and the seccomp filter of the container's
 * init follow just before the exec (run_command). */
static void take_credentials(const struct exec_inside *x)
{
	char err[256];
	if (ns_become_root(err, sizeof(err)) < 0)
		fail(x, 1, "%s", err);
	/* Changing credentials may have reset it; keep it until the exec. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail(x, 1, "cannot make the process non-dumpable: %s", strerror(errno));
}

/* The pty comes from the container's devpts (its /dev/pts/ptmx), so the
 * command's terminal is the container's, like any terminal opened in there;
 * the slave through TIOCGPTPEER, never looked up by a path the container
 * controls. */
static int open_pty(const struct exec_inside *x, int *slave)
{
	int master = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	struct stat st;
	if (master < 0)
		fail(x, 1, "cannot open the container's /dev/pts/ptmx: %s", strerror(errno));
	/* The container controls its mounts: it must be a ptmx (5:2) still. */
	if (fstat(master, &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 ||
	    minor(st.st_rdev) != 2)
		fail(x, 1, "the container's /dev/pts/ptmx is not a pty multiplexer");
	if (unlockpt(master) < 0 ||
	    (*slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
		fail(x, 1, "cannot open a terminal in the container: %s", strerror(errno));
	if (x->has_winsize && ioctl(master, TIOCSWINSZ, &x->ws) < 0)
		fail(x, 1, "cannot set the terminal size: %s", strerror(errno));
	return master;
}

static void set_stdio(const struct exec_inside *x, const int fds[3])
{
	for (int i = 0; i < 3; i++)
		if (fds[i] != i && dup2(fds[i], i) < 0)
			fail(x, 1, "cannot set up stdio: %s", strerror(errno));
}

/* Everything inherited from the host side but 0-2 and keep. */
static void close_except(int keep)
{
	if (keep > 3)
		close_range(3, (unsigned)keep - 1, 0);
	close_range((unsigned)keep + 1, ~0U, 0);
}

static void reset_signals(void)
{
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* The command: a session of its own (the pty as controlling terminal, or
 * none), stdio on 0-2 and not one other descriptor past the exec. */
static __attribute__((noreturn)) void run_command(const struct exec_inside *x)
{
	if (setsid() < 0)
		fail(x, 1, "setsid: %s", strerror(errno));
	if (x->tty && ioctl(0, TIOCSCTTY, 0) < 0)
		fail(x, 1, "cannot take the terminal: %s", strerror(errno));
	reset_signals();
	umask(022);
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		fail(x, 1, "close_range: %s", strerror(errno));
	char err[512];
	if (confine_apply(x->conf, err, sizeof(err)) < 0)
		fail(x, 1, "%s", err);
	environ = x->envp; /* execvp searches the container's PATH */
	execvp(x->argv[0], x->argv);
	fail(x, 127, "cannot run '%s' in container '%s': %s", x->argv[0], x->name, strerror(errno));
}

static int wait_code(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Passes the host side's stop signals on to the command until it ends. */
static int forward_until_exit(pid_t cmd)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);
		if (sig == SIGCHLD)
			return wait_code(cmd);
		if (sig > 0)
			kill(cmd, sig);
	}
}

void exec_inside_run(const struct exec_inside *x)
{
	/* First of all: from here on no process of the container may read
	 * our memory, environment, descriptors or executable. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		fail(x, 1, "cannot make the process non-dumpable: %s", strerror(errno));
	pid_t parent = getppid();
	setpgid(0, 0); /* the terminal's signals reach the host side only */
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		fail(x, 1, "cannot open /dev/null: %s", strerror(errno));
	/* Drop the administrator's stdio before anything of the container. */
	set_stdio(x, x->tty ? (const int[3]){null, null, null} : x->stdio);
	close_except(x->ctl); /* the host side's ends of the pipes above all */
	join_cgroups(x);
	enter_namespaces(x);
	take_credentials(x);
	/* Set only now: changing credentials clears it. Nobody would relay or
	 * wait for a command whose kvz-ct exec is gone. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		fail(x, 1, "kvz-ct exec went away");
	int slave = -1;
	if (x->tty) {
		int master = open_pty(x, &slave);
		send_master(x, master);
		close(master);
	}
	pid_t pid = fork();
	if (pid < 0)
		fail(x, 1, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (x->tty)
			set_stdio(x, (const int[3]){slave, slave, slave});
		run_command(x);
	}
	if (slave >= 0)
		close(slave);
	close(x->ctl);
	_exit(forward_until_exit(pid));
}
