#include "cgroup.h"

#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

static const struct cgroup_ops *ops_of(const struct cgroup *cg)
{
	return cg->version == 2 ? &cgroup_v2_ops : &cgroup_v1_ops;
}

int cgroup_detect_version(const char *root)
{
	struct statfs sf;
	if (statfs(root, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
		return 2;
	return 1;
}

int cgroup_init(struct cgroup *cg, const char *root, int version, const char *name,
		char *err, size_t len)
{
	memset(cg, 0, sizeof(*cg));
	if (strlen(root) >= sizeof(cg->root) || strlen(name) >= sizeof(cg->name)) {
		snprintf(err, len, "cgroup path too long");
		return -1;
	}
	strcpy(cg->root, root);
	strcpy(cg->name, name);
	cg->version = version > 0 ? version : cgroup_detect_version(root);
	return 0;
}

static int add_own(struct cgroup *cg, const char *hier, size_t hlen, bool named,
		   const char *path, char *err, size_t len)
{
	if (cg->nown == CGROUP_MAX_OWN || hlen >= sizeof(cg->own[0].hier) ||
	    strlen(path) >= sizeof(cg->own[0].path)) {
		snprintf(err, len, "too many cgroup hierarchies, or a cgroup path too long: %.*s:%s",
			 (int)hlen, hier, path);
		return -1;
	}
	struct cgroup_own *o = &cg->own[cg->nown++];
	memcpy(o->hier, hier, hlen);
	o->hier[hlen] = 0;
	o->named = named;
	/* The root is kept as "" so that paths join as ROOT/HIER + OWN. */
	snprintf(o->path, sizeof(o->path), "%s", strcmp(path, "/") ? path : "");
	/* Started from the supervisors' leaf (cgroup v2: where kvzd, or a
	 * kvz-ct before it, moved itself so that OWN holds no process), the
	 * caller belongs to OWN: staying in the leaf would nest kvz/ anew
	 * below it, in a cgroup that holds processes. */
	size_t pl = strlen(o->path), sl = strlen(CGROUP_SUPERVISORS_LEAF);
	if (pl >= sl && !strcmp(o->path + pl - sl, CGROUP_SUPERVISORS_LEAF))
		o->path[pl - sl] = 0;
	return 0;
}

/* "ID:ctrl1,ctrl2:/path" or "ID:name=NAME:/path" or "0::/path". */
static int parse_own_line(struct cgroup *cg, char *line, char *err, size_t len)
{
	char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
	if (!c2 || c2[1] != '/') {
		snprintf(err, len, "unexpected line in /proc/self/cgroup: %s", line);
		return -1;
	}
	*c2 = 0;
	const char *path = c2 + 1, *list = c1 + 1;
	if (!*list)
		return add_own(cg, "", 0, false, path, err, len);
	for (const char *h = list; *h;) {
		size_t n = strcspn(h, ",");
		const char *name = strncmp(h, "name=", 5) ? h : h + 5;
		if (add_own(cg, name, n - (size_t)(name - h), name != h, path, err, len) < 0)
			return -1;
		h += n + (h[n] == ',');
	}
	return 0;
}

int cgroup_locate(struct cgroup *cg, const char *proc_file, char *err, size_t len)
{
	FILE *f = fopen(proc_file, "re");
	if (!f) {
		snprintf(err, len, "cannot read %s: %s", proc_file, strerror(errno));
		return -1;
	}
	char line[512];
	int rc = 0;
	cg->nown = 0;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		rc = parse_own_line(cg, line, err, len);
	}
	fclose(f);
	return rc;
}

size_t cgroup_restore_roots(const struct cgroup *cg, char (*out)[CGROUP_ROOT_ARG], size_t max)
{
	size_t n = 0;
	if (cg->version == 2) {
		if (max)
			snprintf(out[n++], CGROUP_ROOT_ARG, "%s/kvz/%s", cg_own(cg, ""), cg->name);
		return n;
	}
	/* v1: each hierarchy by its controller (or name=), the unified one of
	 * a hybrid host as the default. */
	for (size_t i = 0; i < cg->nown && n < max; i++) {
		const struct cgroup_own *o = &cg->own[i];
		snprintf(out[n++], CGROUP_ROOT_ARG, "%s%s%s%s/kvz/%s", o->named ? "name=" : "", o->hier,
			 o->hier[0] ? ":" : "", o->path, cg->name);
	}
	return n;
}

const char *cg_own(const struct cgroup *cg, const char *hier)
{
	for (size_t i = 0; i < cg->nown; i++)
		if (!strcmp(cg->own[i].hier, hier))
			return cg->own[i].path;
	return "";
}

int cgroup_vacate(const struct cgroup *cg, const pid_t *pids, size_t n, char *err, size_t len)
{
	return ops_of(cg)->vacate(cg, pids, n, err, len);
}

int cgroup_create(const struct cgroup *cg, char *err, size_t len)
{
	return ops_of(cg)->create(cg, err, len);
}

int cgroup_apply(const struct cgroup *cg, const struct ct_limits *upd,
		 const struct ct_limits *full, char *err, size_t len)
{
	return ops_of(cg)->apply(cg, upd, full, err, len);
}

int cgroup_attach(const struct cgroup *cg, pid_t pid, char *err, size_t len)
{
	return ops_of(cg)->attach(cg, pid, err, len);
}

int cgroup_read_stats(const struct cgroup *cg, struct cgroup_stats *st)
{
	memset(st, 0, sizeof(*st));
	return ops_of(cg)->stats(cg, st);
}

int cgroup_destroy(const struct cgroup *cg, char *err, size_t len)
{
	return ops_of(cg)->destroy(cg, err, len);
}

json_t *cgroup_paths(const struct cgroup *cg)
{
	return ops_of(cg)->paths(cg);
}

int cg_write(const char *dir, const char *file, const char *val, char *err, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	/* O_CREAT changes nothing on cgroupfs (files cannot be created there)
	 * and lets the unit tests run on a plain directory tree. */
	int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, len, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	ssize_t n = write(fd, val, strlen(val));
	int saved = errno;
	close(fd);
	if (n != (ssize_t)strlen(val)) {
		snprintf(err, len, "cannot write '%s' to %s: %s", val, path,
			 n < 0 ? strerror(saved) : "short write");
		errno = n < 0 ? saved : EIO;
		return -1;
	}
	return 0;
}

int cg_read(const char *dir, const char *file, char *buf, size_t size)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

int cg_read_u64(const char *dir, const char *file, uint64_t *out)
{
	char buf[64];
	if (cg_read(dir, file, buf, sizeof(buf)) < 0)
		return -1;
	if (!strcmp(buf, "max")) {
		*out = UINT64_MAX;
		return 0;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno || end == buf)
		return -1;
	*out = v;
	return 0;
}

int cg_mkdir(const char *path, char *err, size_t len)
{
	if (mkdir(path, 0755) == 0 || errno == EEXIST)
		return 0;
	snprintf(err, len, "cannot create cgroup %s: %s", path, strerror(errno));
	return -1;
}

int cg_mkdir_below(const char *parent, const char *dir,
		   int (*prepare)(const char *parent, void *arg, char *err, size_t len), void *arg,
		   char *err, size_t len)
{
	for (int i = 0; i < 5; i++) {
		if (cg_mkdir(parent, err, len) < 0 || (prepare && prepare(parent, arg, err, len) < 0))
			return -1;
		if (mkdir(dir, 0755) == 0 || errno == EEXIST)
			return 0;
		if (errno != ENOENT)
			break;
	}
	snprintf(err, len, "cannot create cgroup %s: %s", dir, strerror(errno));
	return -1;
}

void cg_rmdir_parent(const char *dir)
{
	char parent[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s", dir);
	char *slash = strrchr(parent, '/');
	if (!slash)
		return;
	*slash = 0;
	if (rmdir(parent) < 0) {
		/* busy (other containers), already gone: both fine */
	}
}

static void kill_procs(const char *dir)
{
	char buf[4096];
	if (cg_read(dir, "cgroup.procs", buf, sizeof(buf)) < 0)
		return;
	for (char *tok = strtok(buf, "\n"); tok; tok = strtok(NULL, "\n")) {
		pid_t pid = (pid_t)atoi(tok);
		if (pid > 0)
			kill(pid, SIGKILL);
	}
}

/* Processes killed a moment ago can hold the cgroup busy until they are
 * reaped, hence the retries. */
int cg_rmdir_killing(const char *dir, char *err, size_t len)
{
	for (int i = 0; i < 200; i++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			break;
		kill_procs(dir);
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
	snprintf(err, len, "cannot remove cgroup %s: %s", dir, strerror(errno));
	return -1;
}

int cg_check_usage(uint64_t hard, uint64_t usage, char *err, size_t len)
{
	if (hard >= usage)
		return 0;
	char a[32], b[32];
	snprintf(err, len, "memory hard limit %s is below the container's current usage %s",
		 kvz_format_size(hard, a, sizeof(a)), kvz_format_size(usage, b, sizeof(b)));
	return -1;
}

int cg_check_pids(const char *dir, uint64_t max, char *err, size_t len)
{
	uint64_t cur;
	if (cg_read_u64(dir, "pids.current", &cur) < 0 || max >= cur)
		return 0;
	snprintf(err, len, "pids limit %llu is below the container's current %llu processes",
		 (unsigned long long)max, (unsigned long long)cur);
	return -1;
}

int cgroup_freezer_dir(const struct cgroup *cg, char *out, size_t size, char *err, size_t len)
{
	if (cg->version == 2)
		snprintf(out, size, "%s%s/kvz/%s", cg->root, cg_own(cg, ""), cg->name);
	else
		cgroup_v1_top(cg, "freezer", out, size);
	if (access(out, F_OK) < 0) {
		snprintf(err, len, "no freezer for the container at %s: %s", out, strerror(errno));
		return -1;
	}
	return 0;
}

/* Whether the freezer at dir reached the state asked for. */
static bool freezer_is(const struct cgroup *cg, const char *dir, bool frozen)
{
	char buf[512];
	if (cg->version == 1)
		return cg_read(dir, "freezer.state", buf, sizeof(buf)) == 0 &&
		       !strncmp(buf, frozen ? "FROZEN" : "THAWED", 6);
	if (cg_read(dir, "cgroup.events", buf, sizeof(buf)) < 0)
		return false;
	const char *f = strstr(buf, "frozen ");
	return f && f[7] == (frozen ? '1' : '0');
}

/* A freeze waits for every task to stop in the kernel; one stuck in an
 * uninterruptible sleep (I/O) keeps it FREEZING. */
#define FREEZE_TIMEOUT_MS 10000

int cgroup_freeze(const struct cgroup *cg, bool frozen, char *err, size_t len)
{
	char dir[PATH_MAX];
	if (cgroup_freezer_dir(cg, dir, sizeof(dir), err, len) < 0)
		return -1;
	const char *file = cg->version == 2 ? "cgroup.freeze" : "freezer.state";
	const char *val = cg->version == 2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED");
	if (cg_write(dir, file, val, err, len) < 0)
		return -1;
	struct timespec tick = {.tv_nsec = 5 * 1000 * 1000};
	for (int waited = 0; !freezer_is(cg, dir, frozen); waited += 5) {
		if (waited >= FREEZE_TIMEOUT_MS) {
			snprintf(err, len, "container '%s' did not %s within %d s", cg->name,
				 frozen ? "freeze" : "thaw", FREEZE_TIMEOUT_MS / 1000);
			return -1;
		}
		nanosleep(&tick, NULL);
	}
	return 0;
}
