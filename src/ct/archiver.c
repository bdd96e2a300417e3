#include "archiver.h"

#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* kvz-ct-archive in kvz-ct's own directory: installed together, and in the
 * build tree side by side. */
static int helper_path(char *out, size_t size, char *err, size_t len)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		snprintf(err, len, "cannot find kvz-ct's own path: %s", strerror(errno));
		return -1;
	}
	self[n] = 0;
	char *slash = strrchr(self, '/');
	snprintf(out, size, "%.*s/kvz-ct-archive", (int)(slash ? slash - self : 0), self);
	if (access(out, X_OK) < 0) {
		snprintf(err, len, "cannot run %s: %s", out, strerror(errno));
		return -1;
	}
	return 0;
}

static int run(const char *op, const char *a, const char *b, const char *c, char **out,
	       char *err, size_t len)
{
	char path[PATH_MAX];
	if (helper_path(path, sizeof(path), err, len) < 0)
		return -1;
	const char *argv[] = {path, op, a, b, c, NULL};
	if (run_capture(argv, out, err, len) == 0)
		return 0;
	if (!err[0])
		snprintf(err, len, "kvz-ct-archive %s %s failed", op, a);
	return -1;
}

int archiver_pack_dir(const char *dir, const char *out, const char *meta_json,
		      char *err, size_t len)
{
	return run("pack", dir, out, meta_json, NULL, err, len);
}

char *archiver_read_meta(const char *in, char *err, size_t len)
{
	char *meta = NULL;
	return run("meta", in, NULL, NULL, &meta, err, len) < 0 ? NULL : meta;
}

int archiver_unpack(const char *in, const char *dir, char *err, size_t len)
{
	return run("unpack", in, dir, NULL, NULL, err, len);
}
