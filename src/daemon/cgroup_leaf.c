/* cgroup v2 gives controllers only to the children of cgroups without
 * processes (the root excepted). kvz-ct puts a container in OWN/kvz/NAME,
 * OWN being its caller's cgroup, and moves itself into the leaf
 * OWN/kvz/_supervisors first; a kvzd left in OWN (a systemd service's
 * cgroup, or any cgroup of its own) would keep OWN busy and every start
 * would fail. kvzd therefore moves itself into that leaf at start; kvz-ct
 * started from there counts as in OWN (src/ct/cgroup.c). */
#include "cgroup_leaf.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEAF "/kvz/_supervisors"

/* The unified hierarchy's path from "0::/PATH"; "" when there is none. */
static int own_path(const char *proc_cgroup, char *out, size_t size, char *err, size_t len)
{
	FILE *f = fopen(proc_cgroup, "re");
	if (!f) {
		snprintf(err, len, "cannot read %s: %s", proc_cgroup, strerror(errno));
		return -1;
	}
	char line[PATH_MAX + 8];
	out[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "0::/", 4)) {
			size_t n = strlen(line + 3);
			if (n < size)
				memcpy(out, line + 3, n + 1);
			break;
		}
	}
	fclose(f);
	return 0;
}

static int make_dir(const char *path, char *err, size_t len)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0;
	snprintf(err, len, "cannot create %s: %s", path, strerror(errno));
	return -1;
}

int kvzd_cgroup_leaf(const char *root, const char *proc_cgroup, char *err, size_t len)
{
	char path[PATH_MAX + 64], own[PATH_MAX];
	snprintf(path, sizeof(path), "%s/cgroup.controllers", root);
	if (access(path, F_OK) < 0)
		return 0; /* v1 or hybrid: no such rule */
	if (own_path(proc_cgroup, own, sizeof(own), err, len) < 0)
		return -1;
	size_t n = strlen(own), l = strlen(LEAF);
	if (!strcmp(own, "/") || !own[0] || (n >= l && !strcmp(own + n - l, LEAF)))
		return 0;
	char kvz[PATH_MAX], leaf[PATH_MAX + 16];
	int w = snprintf(kvz, sizeof(kvz), "%s%s/kvz", root, own);
	if (w < 0 || (size_t)w >= sizeof(kvz)) {
		snprintf(err, len, "cgroup path too long: %s", own);
		return -1;
	}
	snprintf(leaf, sizeof(leaf), "%s/_supervisors", kvz);
	if (make_dir(kvz, err, len) < 0 || make_dir(leaf, err, len) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/cgroup.procs", leaf);
	FILE *f = fopen(path, "we");
	if (!f) {
		snprintf(err, len, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	int bad = fprintf(f, "%d\n", (int)getpid()) < 0;
	bad |= fclose(f) != 0;
	if (bad) {
		snprintf(err, len, "cannot move kvzd into %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}
