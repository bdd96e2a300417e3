#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void last_line(char *buf, char *err, size_t len)
{
	size_t n = strlen(buf);
	while (n && buf[n - 1] == '\n')
		buf[--n] = 0;
	char *nl = strrchr(buf, '\n');
	snprintf(err, len, "%s", nl ? nl + 1 : buf);
}

char *read_fd_text(int fd)
{
	size_t used = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;
	while (buf && (n = read(fd, buf + used, cap - 1 - used)) > 0) {
		used += (size_t)n;
		if (used == cap - 1) {
			char *more = realloc(buf, cap *= 2);
			if (!more)
				free(buf);
			buf = more;
		}
	}
	if (buf)
		buf[used] = 0;
	return buf;
}

static pid_t spawn_captured(const char *const argv[], int out_fd, int err_fd)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	int null = open("/dev/null", O_RDWR);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd >= 0 ? out_fd : null, 1) < 0 ||
	    dup2(err_fd, 2) < 0)
		_exit(126);
	execvp(argv[0], (char *const *)argv);
	dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

int run_capture(const char *const argv[], char **out, char *err, size_t len)
{
	int ep[2], op[2] = {-1, -1};
	if (pipe2(ep, O_CLOEXEC) < 0 || (out && pipe2(op, O_CLOEXEC) < 0)) {
		snprintf(err, len, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = spawn_captured(argv, op[1], ep[1]);
	close(ep[1]);
	if (op[1] >= 0)
		close(op[1]);
	/* stdout first: what a helper prints on stderr (one error line) fits
	 * in the pipe while it waits. */
	char *o = out && pid > 0 ? read_fd_text(op[0]) : NULL;
	char *e = pid > 0 ? read_fd_text(ep[0]) : NULL;
	close(ep[0]);
	if (op[0] >= 0)
		close(op[0]);
	int status = 0;
	while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int rc = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
	if (rc < 0 && pid < 0)
		snprintf(err, len, "fork: %s", strerror(errno));
	else if (rc < 0)
		last_line(e ? e : (char[]){""}, err, len);
	free(e);
	if (out && rc == 0)
		*out = o;
	else
		free(o);
	return rc;
}

int run_quiet(const char *const argv[], char *err, size_t len)
{
	char line[512] = "";
	if (run_capture(argv, NULL, line, sizeof(line)) == 0)
		return 0;
	snprintf(err, len, "%s failed: %s", argv[0], line[0] ? line : "no message");
	return -1;
}

int mkdir_p(const char *path, mode_t mode, char *err, size_t len)
{
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			goto fail;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		goto fail;
	return 0;
fail:
	snprintf(err, len, "cannot create directory %s: %s", buf, strerror(errno));
	return -1;
}

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT ? -1 : 0;
}

int rm_rf(const char *path)
{
	if (!path_exists(path))
		return 0;
	return nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

int write_text(const char *path, const char *text, char *err, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, len, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	size_t n = strlen(text);
	ssize_t w = write(fd, text, n);
	int saved = errno;
	if (close(fd) < 0 || w != (ssize_t)n) {
		snprintf(err, len, "cannot write %s: %s", path, strerror(w < 0 ? saved : EIO));
		return -1;
	}
	return 0;
}

char *read_text(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, used = 0;
	char *buf = malloc(cap);
	ssize_t n;
	while (buf && (n = read(fd, buf + used, cap - used - 1)) > 0) {
		used += (size_t)n;
		if (used + 1 == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
			}
			buf = nb;
			cap *= 2;
		}
	}
	close(fd);
	if (buf)
		buf[used] = 0;
	return buf;
}

bool path_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool pid_alive(pid_t pid)
{
	if (pid <= 0)
		return false;
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	/* A zombie has finished (and released its locks); its parent just has
	 * not reaped it yet. */
	const char *paren = strrchr(buf, ')');
	return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

int wait_exit_code(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int run_in_child(int (*fn)(void *arg, int err_fd), void *arg, char *msg, size_t len)
{
	int p[2];
	msg[0] = 0;
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(msg, len, "cannot create a pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(msg, len, "cannot fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		close(p[0]);
		_exit(fn(arg, p[1]));
	}
	close(p[1]);
	size_t used = 0;
	ssize_t n;
	while (used + 1 < len && (n = read(p[0], msg + used, len - 1 - used)) > 0)
		used += (size_t)n;
	msg[used] = 0;
	close(p[0]);
	return wait_exit_code(pid) == 0 && used == 0 ? 0 : -1;
}
