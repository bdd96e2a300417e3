#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "mono_clock.h"

extern char **environ;

#define MAX_CHILDREN 256

/* The supervisors this kvzd spawned and has not yet reaped, and the wait
 * status of those it has. Process-wide because children are: only the reaper
 * thread waits for them, everybody else asks it through this table. */
static struct {
	pthread_mutex_t lock;
	struct child {
		pid_t pid;
		bool exited;
		int status;
	} c[MAX_CHILDREN];
} reaper = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *reaper_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&reaper.lock);
		for (int i = 0; i < MAX_CHILDREN; i++) {
			struct child *c = &reaper.c[i];
			if (!c->pid || c->exited)
				continue;
			int st;
			pid_t r = waitpid(c->pid, &st, WNOHANG);
			if (r == c->pid || (r < 0 && errno == ECHILD)) {
				c->exited = true;
				c->status = r == c->pid ? st : 0;
			}
		}
		pthread_mutex_unlock(&reaper.lock);
		/* A poll rather than SIGCHLD: helper commands run by API threads
		 * wait for their own pids, and a signal-driven waitpid(-1) would
		 * steal their status. */
		usleep(100 * 1000);
	}
	return NULL;
}

int sup_init(char *err, size_t errlen)
{
	pthread_t t;
	int rc = pthread_create(&t, NULL, reaper_main, NULL);
	if (rc) {
		snprintf(err, errlen, "cannot start reaper thread: %s", strerror(rc));
		return -1;
	}
	pthread_detach(t);
	return 0;
}

static void register_child(pid_t pid)
{
	pthread_mutex_lock(&reaper.lock);
	/* A reaped child's pid may have been reused for this one: forget the
	 * old entry so that lookups find the new child. */
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (reaper.c[i].pid == pid)
			reaper.c[i].pid = 0;
	struct child *slot = NULL;
	for (int i = 0; i < MAX_CHILDREN && !slot; i++)
		if (!reaper.c[i].pid)
			slot = &reaper.c[i];
	/* Table full: recycle the oldest reaped entry. */
	for (int i = 0; i < MAX_CHILDREN && !slot; i++)
		if (reaper.c[i].exited)
			slot = &reaper.c[i];
	if (slot)
		*slot = (struct child){.pid = pid};
	else
		kvz_warn("reaper table full; supervisor %d will be watched by pid only", pid);
	pthread_mutex_unlock(&reaper.lock);
}

/* In the child after fork: only async-signal-safe calls until exec. */
static void exec_child(char *const argv[], int keep_fd, int logfd)
{
	int devnull = open("/dev/null", O_RDONLY);
	if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(logfd, 1) < 0 || dup2(logfd, 2) < 0)
		_exit(126);
	if (keep_fd > 2 && fcntl(keep_fd, F_SETFD, 0) < 0)
		_exit(126);
	setsid();
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	execv(argv[0], argv);
	static const char msg[] = "kvzd: cannot execute supervisor\n";
	ssize_t w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	_exit(127);
}

pid_t sup_spawn(char *const argv[], int keep_fd, const char *logpath, char *err,
		size_t errlen)
{
	int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (logfd < 0) {
		snprintf(err, errlen, "cannot open log %s: %s", logpath, strerror(errno));
		return -1;
	}
	if (access(argv[0], X_OK) < 0) {
		snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(errno));
		close(logfd);
		return -1;
	}
	/* The reaper only waits for registered pids: a child that exits before
	 * register_child() stays a zombie until then, and is reaped after. */
	pid_t pid = fork();
	if (pid == 0)
		exec_child(argv, keep_fd, logfd);
	int saved = errno;
	close(logfd);
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", strerror(saved));
		return -1;
	}
	register_child(pid);
	return pid;
}

/* /proc/<pid>/<file> into buf, NUL-terminated (at most size - 1 bytes);
 * the bytes read, 0 when the process or file is gone. */
static size_t proc_read(pid_t pid, const char *file, char *buf, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t n = fread(buf, 1, size - 1, f);
	fclose(f);
	buf[n] = 0;
	return n;
}

enum sup_liveness sup_check(pid_t pid, unsigned long long start, int *status)
{
	if (pid <= 0)
		return SUP_GONE;
	pthread_mutex_lock(&reaper.lock);
	for (int i = 0; i < MAX_CHILDREN; i++) {
		struct child *c = &reaper.c[i];
		if (c->pid != pid)
			continue;
		bool exited = c->exited;
		if (exited && status)
			*status = c->status;
		pthread_mutex_unlock(&reaper.lock);
		return exited ? SUP_EXITED : SUP_ALIVE;
	}
	pthread_mutex_unlock(&reaper.lock);
	unsigned long long now = sup_proc_start(pid);
	if (!now || (start && now != start))
		return SUP_GONE;
	/* A zombie whose parent is not us still counts as gone. */
	char buf[512];
	if (!proc_read(pid, "stat", buf, sizeof(buf)))
		return SUP_GONE;
	char *rp = strrchr(buf, ')');
	if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X'))
		return SUP_GONE;
	return SUP_ALIVE;
}

unsigned long long sup_proc_start(pid_t pid)
{
	char buf[1024];
	if (!proc_read(pid, "stat", buf, sizeof(buf)))
		return 0;
	/* The command name may hold spaces and parentheses: fields start after
	 * the last ')'. Field 3 is the state; start time is field 22. */
	char *p = strrchr(buf, ')');
	if (!p)
		return 0;
	p += 2;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	return p ? strtoull(p, NULL, 10) : 0;
}

bool sup_is_supervisor(pid_t pid, unsigned long long start, const char *prog,
		       const char *name)
{
	if (pid <= 0 || sup_proc_start(pid) != start)
		return false;
	char buf[8192];
	size_t n = proc_read(pid, "cmdline", buf, sizeof(buf));
	if (!n)
		return false;
	const char *argv0 = buf;
	const char *base = strrchr(argv0, '/');
	base = base ? base + 1 : argv0;
	if (strcmp(base, prog))
		return false;
	/* Walk the NUL-separated arguments looking for "--name NAME". */
	for (const char *a = buf; a < buf + n; a += strlen(a) + 1) {
		const char *next = a + strlen(a) + 1;
		if (!strcmp(a, "--name") && next < buf + n && !strcmp(next, name))
			return true;
	}
	return false;
}

/* fork + exec argv in a process group of its own (so that a cancel reaches
 * what it runs), stdin from /dev/null, stdout and stderr into *outfd. */
static pid_t start_piped(char *const argv[], char *const envp[], int *outfd, char *out,
			 size_t outlen)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0) {
		snprintf(out, outlen, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		if (setpgid(0, 0) < 0 || devnull < 0 || dup2(devnull, 0) < 0 ||
		    dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
			_exit(126);
		/* Nothing of kvzd's (store, sockets) reaches the command. */
		close_range(3, ~0U, 0);
		execve(argv[0], argv, envp ? envp : environ);
		_exit(127);
	}
	close(pfd[1]);
	if (pid < 0) {
		close(pfd[0]);
		snprintf(out, outlen, "fork: %s", strerror(errno));
		return -1;
	}
	*outfd = pfd[0];
	return pid;
}

/* The tail of a child's output: the last line says what went wrong. */
struct out_tail {
	char buf[4096];
	size_t len;
};

/* Reads what is there; false at end of file. */
static bool tail_read(struct out_tail *t, int fd)
{
	if (t->len == sizeof(t->buf) - 1) {
		memmove(t->buf, t->buf + sizeof(t->buf) / 2, t->len - sizeof(t->buf) / 2);
		t->len -= sizeof(t->buf) / 2;
	}
	ssize_t n = read(fd, t->buf + t->len, sizeof(t->buf) - 1 - t->len);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	t->len += (size_t)n;
	return true;
}

/* The last line into out, then the exit code, or -1 for a signal. */
static int child_result(struct out_tail *t, char *const argv[], int st, char *out,
			size_t outlen)
{
	t->buf[t->len] = 0;
	while (t->len && (t->buf[t->len - 1] == '\n' || t->buf[t->len - 1] == ' '))
		t->buf[--t->len] = 0;
	char *last = strrchr(t->buf, '\n');
	snprintf(out, outlen, "%s", last ? last + 1 : t->buf);
	if (WIFEXITED(st)) {
		if (WEXITSTATUS(st) == 127 && !out[0])
			snprintf(out, outlen, "cannot execute %s", argv[0]);
		return WEXITSTATUS(st);
	}
	snprintf(out + strlen(out), outlen - strlen(out), " (killed by signal %d)",
		 WTERMSIG(st));
	return -1;
}

int sup_run(char *const argv[], char *out, size_t outlen)
{
	return sup_run_watched(argv, NULL, NULL, NULL, out, outlen);
}

int sup_run_watched(char *const argv[], char *const envp[], bool (*tick)(void *), void *arg,
		    char *out, size_t outlen)
{
	if (outlen)
		out[0] = 0;
	int fd, st;
	pid_t pid = start_piped(argv, envp, &fd, out, outlen);
	if (pid < 0)
		return -1;
	struct out_tail *t = calloc(1, sizeof(*t));
	bool open_ = true;
	int64_t killed_at = 0;
	bool waited = false;
	while (!waited) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (open_ && poll(&p, 1, 200) > 0)
			open_ = t && tail_read(t, fd);
		pid_t r = waitpid(pid, &st, WNOHANG);
		waited = r == pid;
		if (r < 0 && errno != EINTR) {
			snprintf(out, outlen, "waitpid: %s", strerror(errno));
			break;
		}
		if (waited)
			break;
		if (!open_)
			usleep(20 * 1000);
		bool go_on = !tick || tick(arg);
		int64_t now = kvz_mono_ms();
		/* Told to stop: SIGTERM to its group, SIGKILL 3 s later. */
		if (!go_on && !killed_at) {
			kill(-pid, SIGTERM);
			killed_at = now;
		} else if (killed_at && now - killed_at > 3000) {
			kill(-pid, SIGKILL);
		}
	}
	/* What it wrote just before it ended. */
	struct pollfd p = {.fd = fd, .events = POLLIN};
	while (waited && open_ && t && poll(&p, 1, 0) > 0 && tail_read(t, fd))
		;
	close(fd);
	int rc = t && waited ? child_result(t, argv, st, out, outlen) : -1;
	free(t);
	return rc;
}
