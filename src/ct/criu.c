#include "criu.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The binary: `criu` on PATH, or $KVZ_CT_CRIU (a test's stand-in). */
static const char *criu_bin(void)
{
	const char *b = getenv("KVZ_CT_CRIU");
	return b && *b ? b : "criu";
}

void criu_log_error(const char *log, char *out, size_t size)
{
	out[0] = 0;
	const char *e = log ? strstr(log, "Error (") : NULL;
	if (!e)
		return;
	const char *msg = strstr(e, "): ");
	const char *end = strchr(e, '\n');
	if (!end)
		end = e + strlen(e);
	if (msg && msg < end)
		e = msg + 3;
	snprintf(out, size, "%.*s", (int)(end - e), e);
}

static void last_line_of(char *text, char *out, size_t size)
{
	size_t n = strlen(text);
	while (n && text[n - 1] == '\n')
		text[--n] = 0;
	const char *nl = strrchr(text, '\n');
	snprintf(out, size, "%s", nl ? nl + 1 : text);
}

/* A dump of a large container may take minutes; one that has not ended
 * in CRIU_TIMEOUT_S is killed (a failed restore's tasks are killed with
 * the container's cgroup by the supervisor's teardown). */
#define CRIU_TIMEOUT_S (30 * 60)

static int wait_bounded(pid_t pid)
{
	int status = 0;
	struct timespec tick = {.tv_nsec = 20 * 1000 * 1000};
	for (long waited = 0;; waited += 20) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			return status;
		if (waited / 1000 == CRIU_TIMEOUT_S)
			kill(pid, SIGKILL);
		nanosleep(&tick, NULL);
	}
}

/* Runs criu with argv (argv[0] is replaced by the binary), keeping
 * the descriptors in keep (-1: none) open across exec; stdout on /dev/null, stderr collected into
 * *errtext. Returns the exit status, or -1 when it could not run. */
static int run_criu(const char **argv, const int keep[2], const char *hide,
		    int (*before)(pid_t, void *, char *, size_t), void *arg,
		    char **errtext, char *err, size_t len)
{
	int ep[2], go[2];
	if (pipe2(ep, O_CLOEXEC) < 0 || pipe2(go, O_CLOEXEC) < 0) {
		snprintf(err, len, "pipe: %s", strerror(errno));
		return -1;
	}
	argv[0] = criu_bin();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, len, "fork: %s", strerror(errno));
		return -1;
	}
	if (pid == 0) {
		char c;
		int null = open("/dev/null", O_RDWR);
		if (read(go[0], &c, 1) != 1 || null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
		    dup2(ep[1], 2) < 0)
			_exit(126);
		for (int i = 0; i < 2; i++)
			if (keep[i] >= 0 && fcntl(keep[i], F_SETFD, 0) < 0)
				_exit(126);
		if (hide && (unshare(CLONE_NEWNS) < 0 || umount2(hide, MNT_DETACH) < 0)) {
			dprintf(2, "cannot hide %s from criu: %s\n", hide, strerror(errno));
			_exit(126);
		}
		execvp(argv[0], (char *const *)argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(ep[1]);
	close(go[0]);
	int rc = before ? before(pid, arg, err, len) : 0;
	/* A hook that failed lets criu die unrun (go closed, nothing read). */
	if (rc == 0 && write(go[1], "g", 1) != 1)
		rc = -1;
	close(go[1]);
	int status = wait_bounded(pid);
	/* criu itself is done: what it wrote is there. Its stderr is not
	 * read to its end, which a task criu restored (or left behind) may
	 * hold open for good. */
	fcntl(ep[0], F_SETFL, O_NONBLOCK);
	*errtext = read_fd_text(ep[0]);
	close(ep[0]);
	if (rc < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Why criu failed: the first error of its log, else its last stderr line. */
static void failure(const char *what, const char *dir, const char *shown, const char *logname,
		    char *errtext, char *err, size_t len)
{
	char path[PATH_MAX], msg[400] = "";
	snprintf(path, sizeof(path), "%s/%s", dir, logname);
	char *log = read_text(path);
	criu_log_error(log, msg, sizeof(msg));
	free(log);
	if (!msg[0] && errtext)
		last_line_of(errtext, msg, sizeof(msg));
	snprintf(err, len, "criu %s failed: %s (log: %s/%s)", what, msg[0] ? msg : "no message",
		 shown ? shown : dir, logname);
}

int criu_usable(char *why, size_t len)
{
	const char *argv[] = {NULL, "check", NULL};
	char *errtext = NULL, e[256] = "";
	const int none[2] = {-1, -1};
	int rc = run_criu(argv, none, NULL, NULL, NULL, &errtext, e, sizeof(e));
	if (rc == 0) {
		free(errtext);
		return 0;
	}
	char msg[300] = "";
	criu_log_error(errtext, msg, sizeof(msg));
	if (rc == 127)
		snprintf(why, len, "CRIU is not installed (%s; Debian package criu)",
			 errtext && strstr(errtext, "cannot run") ? strchr(errtext, ':') + 2 : "no criu");
	else if (rc < 0)
		snprintf(why, len, "cannot run criu check: %s", e);
	else {
		if (!msg[0] && errtext)
			last_line_of(errtext, msg, sizeof(msg));
		snprintf(why, len, "CRIU cannot checkpoint or restore on this host: `criu check` fails (%s)",
			 msg[0] ? msg : "no message");
	}
	why[strcspn(why, "\n")] = 0;
	free(errtext);
	return -1;
}

int criu_lazy_usable(char *why, size_t len)
{
	/* criu_usable first: its refusal says more (not installed...). */
	if (criu_usable(why, len) < 0)
		return -1;
	const char *argv[] = {NULL, "check", "--feature", "uffd-noncoop", NULL};
	char *errtext = NULL, msg[300] = "";
	const int none[2] = {-1, -1};
	int rc = run_criu(argv, none, NULL, NULL, NULL, &errtext, msg, sizeof(msg));
	if (rc > 0 && errtext)
		last_line_of(errtext, msg, sizeof(msg));
	free(errtext);
	if (rc == 0)
		return 0;
	snprintf(why, len, "`criu check --feature uffd-noncoop` fails (%s)", msg[0] ? msg : "no message");
	why[strcspn(why, "\n")] = 0;
	return -1;
}

int criu_lazy_pages(const char *dir, char *err, size_t len)
{
	const char *argv[] = {NULL, "lazy-pages", "--images-dir", dir, "--log-file", "lazy-pages.log",
			      "-v4", "--daemon", "--pidfile", "lazy-pages.pid", NULL};
	char *errtext = NULL;
	const int none[2] = {-1, -1};
	int rc = run_criu(argv, none, NULL, NULL, NULL, &errtext, err, len);
	if (rc > 0)
		failure("lazy-pages", dir, NULL, "lazy-pages.log", errtext, err, len);
	free(errtext);
	return rc == 0 ? 0 : -1;
}

int criu_tty_key(int slave_fd, char *out, size_t size, char *err, size_t len)
{
	struct stat st;
	if (fstat(slave_fd, &st) < 0) {
		snprintf(err, len, "cannot stat the console: %s", strerror(errno));
		return -1;
	}
	snprintf(out, size, "tty[%llx:%llx]", (unsigned long long)st.st_rdev,
		 (unsigned long long)st.st_dev);
	return 0;
}

/* criu's argv, built by appending (counted, NULL-terminated). */
struct argv_buf {
	const char *v[96]; /* v1 adds two per hierarchy (--cgroup-root) */
	size_t n;
};

static void add(struct argv_buf *a, const char *arg)
{
	if (a->n + 1 < sizeof(a->v) / sizeof(a->v[0]))
		a->v[a->n++] = arg;
	a->v[a->n] = NULL;
}

/* Options both directions share: established TCP connections, bind
 * mounts of host files (the /dev nodes, the masks over /proc) found by
 * themselves, the network locked with nftables (no iptables binaries
 * needed for that), cgroups into what exists, a verbose log. */
static void common(struct argv_buf *a, const char *cmd, const char *dir, const char *log)
{
	static const char *const opts[] = {"--tcp-established", "--network-lock", "nftables",
					   "--external", "mnt[]", "--manage-cgroups=soft", "-v4"};
	add(a, NULL); /* run_criu puts the binary here */
	add(a, cmd);
	add(a, "--images-dir");
	add(a, dir);
	add(a, "--log-file");
	add(a, log);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		add(a, opts[i]);
}

int criu_dump(const struct criu_dump *d, char *err, size_t len)
{
	char pid[16], veth[64], ps[16];
	snprintf(pid, sizeof(pid), "%d", (int)d->pid);
	const char *what = d->pre ? "pre-dump" : "dump";
	const char *log = d->pre ? "pre-dump.log" : "dump.log";
	struct argv_buf a = {.n = 0};
	common(&a, what, d->dir, log);
	add(&a, "--tree");
	add(&a, pid);
	if (d->leave_running)
		add(&a, "--leave-running");
	if (d->track_mem)
		add(&a, "--track-mem");
	if (d->prev) {
		add(&a, "--prev-images-dir");
		add(&a, d->prev);
	}
	if (d->veth) {
		/* eth0's peer is in the host's namespace: external, made anew
		 * on restore (without this the restore cannot place it). */
		snprintf(veth, sizeof(veth), "veth[eth0]:%s", d->veth);
		add(&a, "--external");
		add(&a, veth);
	}
	if (d->console_tty) {
		/* The pty's master stays with the supervisor: the slave is an
		 * external tty, and the bind of it at /dev/console an external
		 * mount named "console", both given anew on restore. */
		add(&a, "--external");
		add(&a, d->console_tty);
		add(&a, "--external");
		add(&a, "mnt[/dev/console]:console");
	}
	if (d->ps_fd >= 0) {
		snprintf(ps, sizeof(ps), "%d", d->ps_fd);
		add(&a, "--page-server");
		add(&a, "--ps-socket");
		add(&a, ps);
	}
	if (d->freeze_cgroup) {
		add(&a, "--freeze-cgroup");
		add(&a, d->freeze_cgroup);
	}
	char *errtext = NULL;
	const int keep[2] = {d->dir_fd, d->ps_fd};
	int rc = run_criu(a.v, keep, d->hide, NULL, NULL, &errtext, err, len);
	if (rc > 0)
		failure(what, d->dir, d->shown, log, errtext, err, len);
	free(errtext);
	return rc == 0 ? 0 : -1;
}

static pid_t read_pidfile(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/restore.pid", dir);
	char *t = read_text(path);
	long v = t ? strtol(t, NULL, 10) : 0;
	free(t);
	unlink(path);
	return v > 0 ? (pid_t)v : -1;
}

/* The "(SS.UUUUUU)" stamp of the line around at (-1 if none). */
static double stamp_of(const char *log, const char *at)
{
	while (at > log && at[-1] != '\n')
		at--;
	double s;
	return sscanf(at, "(%lf)", &s) == 1 && s >= 0 && s < 86400 ? s : -1;
}

/* How long before its last log line criu logged "Restore finished
 * successfully" (the tasks resumed), in ms; -1 when it did not. */
static int64_t finished_before_end(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/restore.log", dir);
	char *log = read_text(path);
	const char *hit = log ? strstr(log, "Restore finished successfully") : NULL;
	int64_t ms = -1;
	if (hit) {
		size_t n = strlen(log);
		while (n && log[n - 1] == '\n')
			n--;
		const char *last = log + n;
		while (last > log && last[-1] != '\n')
			last--;
		double f = stamp_of(log, hit), e = stamp_of(log, last);
		if (f >= 0 && e >= f)
			ms = (int64_t)((e - f) * 1000);
	}
	free(log);
	return ms;
}

pid_t criu_restore(struct criu_restore *r, char *err, size_t len)
{
	char veth[64], inherit[96], console_mnt[PATH_MAX + 32];
	struct argv_buf a = {.n = 0};
	common(&a, "restore", r->dir, "restore.log");
	add(&a, "--root");
	add(&a, r->root);
	add(&a, "--restore-detached");
	add(&a, "--restore-sibling");
	add(&a, "--pidfile");
	add(&a, "restore.pid");
	for (size_t i = 0; i < r->ncgroup_roots; i++) {
		add(&a, "--cgroup-root");
		add(&a, r->cgroup_roots[i]);
	}
	if (r->veth) {
		snprintf(veth, sizeof(veth), "veth[eth0]:%s", r->veth);
		add(&a, "--external");
		add(&a, veth);
	}
	if (r->lazy)
		add(&a, "--lazy-pages");
	if (r->console_tty) {
		snprintf(inherit, sizeof(inherit), "fd[%d]:%s", r->console_fd, r->console_tty);
		snprintf(console_mnt, sizeof(console_mnt), "mnt[console]:%s", r->console_path);
		add(&a, "--inherit-fd");
		add(&a, inherit);
		add(&a, "--external");
		add(&a, console_mnt);
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/restore.pid", r->dir);
	unlink(path);
	char *errtext = NULL;
	const int keep[2] = {r->console_tty ? r->console_fd : -1, -1};
	int rc = run_criu(a.v, keep, NULL, r->before, r->arg, &errtext, err, len);
	if (rc > 0)
		failure("restore", r->dir, NULL, "restore.log", errtext, err, len);
	/* Counted back from criu's end (its exit after the last line is
	 * short; its start before the log's first is not, under emulation). */
	int64_t cleanup = rc == 0 ? finished_before_end(r->dir) : -1;
	r->resumed_at = cleanup >= 0 ? now_ms() - cleanup : 0;
	free(errtext);
	if (rc != 0)
		return -1;
	pid_t pid = read_pidfile(r->dir);
	if (pid < 0)
		snprintf(err, len, "criu restore wrote no pid to %s", path);
	return pid;
}

int criu_page_server(const char *dir, const char *prev, int ps_fd, char *err, size_t len)
{
	char ps[16];
	snprintf(ps, sizeof(ps), "%d", ps_fd);
	struct argv_buf a = {.n = 0};
	add(&a, NULL);
	add(&a, "page-server");
	add(&a, "--images-dir");
	add(&a, dir);
	add(&a, "--log-file");
	add(&a, "page-server.log");
	add(&a, "-v4");
	add(&a, "--ps-socket");
	add(&a, ps);
	if (prev) {
		add(&a, "--prev-images-dir");
		add(&a, prev);
	}
	char *errtext = NULL;
	const int keep[2] = {ps_fd, -1};
	int rc = run_criu(a.v, keep, NULL, NULL, NULL, &errtext, err, len);
	if (rc > 0)
		failure("page-server", dir, NULL, "page-server.log", errtext, err, len);
	free(errtext);
	return rc == 0 ? 0 : -1;
}
