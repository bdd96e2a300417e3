#include "state.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

void state_path(const char *run_dir, const char *name, const char *ext, char *out, size_t size)
{
	snprintf(out, size, "%s/%s.%s", run_dir, name, ext);
}

int state_lock(const char *run_dir, const char *name, char *err, size_t len)
{
	if (mkdir_p(run_dir, 0755, err, len) < 0)
		return -1;
	char path[PATH_MAX];
	state_path(run_dir, name, "pid", path, sizeof(path));
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, len, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, len, errno == EWOULDBLOCK ? "container '%s' is already running"
							: "cannot lock %s", name);
		close(fd);
		return -1;
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		snprintf(err, len, "cannot write %s: %s", path, strerror(errno));
		unlink(path);
		close(fd);
		return -1;
	}
	return fd;
}

int state_write(const char *run_dir, const char *name, json_t *state, char *err, size_t len)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	state_path(run_dir, name, "json", path, sizeof(path));
	state_path(run_dir, name, "json.tmp", tmp, sizeof(tmp));
	if (json_dump_file(state, tmp, JSON_INDENT(1)) < 0) {
		snprintf(err, len, "cannot write %s", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) < 0) {
		snprintf(err, len, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

json_t *state_load(const char *run_dir, const char *name, char *err, size_t len)
{
	char path[PATH_MAX];
	state_path(run_dir, name, "json", path, sizeof(path));
	json_t *st = json_load_file(path, 0, NULL);
	if (!st) {
		snprintf(err, len, "container '%s' is not running (no %s)", name, path);
		return NULL;
	}
	json_int_t pid = json_integer_value(json_object_get(st, "supervisor-pid"));
	if (!pid_alive((pid_t)pid)) {
		snprintf(err, len, "container '%s' is not running (stale %s)", name, path);
		json_decref(st);
		return NULL;
	}
	return st;
}

void state_remove(const char *run_dir, const char *name)
{
	static const char *const exts[] = {"json", "qmp", "pid"};
	for (size_t i = 0; i < 3; i++) {
		char path[PATH_MAX];
		state_path(run_dir, name, exts[i], path, sizeof(path));
		if (unlink(path) < 0 && errno != ENOENT)
			fprintf(stderr, "kvz-ct: warning: cannot remove %s: %s\n", path, strerror(errno));
	}
}
