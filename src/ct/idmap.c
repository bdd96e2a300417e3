#include "idmap.h"

#include "idmap_pool.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static const char *registry_dir(void)
{
	const char *d = getenv("KVZ_CT_IDMAP_DIR");
	return d && *d ? d : IDMAP_DEFAULT_REGISTRY;
}

static void entry_path(uint32_t base, char *out, size_t size)
{
	snprintf(out, size, "%s/%u", registry_dir(), base);
}

/* The registry's lock: every allocation and release holds it. */
static int lock_registry(char *err, size_t len)
{
	if (mkdir_p(registry_dir(), 0700, err, len) < 0)
		return -1;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/.lock", registry_dir());
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		snprintf(err, len, "cannot lock %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static bool in_pool(json_int_t base)
{
	return base >= IDMAP_POOL_START && base <= IDMAP_POOL_END - IDMAP_COUNT &&
	       base % IDMAP_COUNT == 0;
}

int idmap_load(const char *path, struct idmap *m, char *err, size_t len)
{
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j) {
		snprintf(err, len, "%s: %s", path, je.text);
		return -1;
	}
	json_int_t uid = json_integer_value(json_object_get(j, "uid"));
	json_int_t gid = json_integer_value(json_object_get(j, "gid"));
	json_int_t count = json_integer_value(json_object_get(j, "count"));
	json_decref(j);
	/* Only ranges of the pool: a hand-edited file must not map a
	 * container onto host users. */
	if (count != IDMAP_COUNT || !in_pool(uid) || !in_pool(gid)) {
		snprintf(err, len, "%s: not a range of the id pool", path);
		return -1;
	}
	*m = (struct idmap){(uint32_t)uid, (uint32_t)gid, (uint32_t)count};
	return 0;
}

json_t *idmap_to_json(const struct idmap *m)
{
	return json_pack("{s:I,s:I,s:I}", "uid", (json_int_t)m->uid, "gid", (json_int_t)m->gid,
			 "count", (json_int_t)m->count);
}

static int write_idmap(const char *path, const struct idmap *m, char *err, size_t len)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	json_t *j = idmap_to_json(m);
	int rc = json_dump_file(j, tmp, JSON_COMPACT);
	json_decref(j);
	if (rc < 0 || rename(tmp, path) < 0) {
		snprintf(err, len, "cannot write %s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* Whether the owner of a registry entry still holds it. */
static bool entry_held(uint32_t base)
{
	char path[PATH_MAX], line[PATH_MAX + 8] = "", err[256];
	entry_path(base, path, sizeof(path));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, line, sizeof(line) - 1);
	line[n > 0 ? n : 0] = 0;
	line[strcspn(line, "\n")] = 0;
	bool held = false;
	struct idmap m;
	if (!strncmp(line, "ct ", 3))
		held = idmap_load(line + 3, &m, err, sizeof(err)) == 0 && m.uid == base;
	else if (!strncmp(line, "run ", 4))
		held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return held;
}

/* Bases held in the registry; entries whose owner is gone are removed. */
static uint32_t *held_bases(size_t *n)
{
	*n = 0;
	size_t cap = 64;
	uint32_t *v = malloc(cap * sizeof(*v));
	DIR *d = opendir(registry_dir());
	if (!d || !v) {
		if (d)
			closedir(d);
		return v;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		unsigned long b = strtoul(e->d_name, &end, 10);
		if (*end || e->d_name[0] < '1' || e->d_name[0] > '9' || b > UINT32_MAX)
			continue;
		if (!entry_held((uint32_t)b)) {
			unlinkat(dirfd(d), e->d_name, 0);
			continue;
		}
		if (*n == cap) {
			uint32_t *nv = realloc(v, (cap *= 2) * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = (uint32_t)b;
	}
	closedir(d);
	return v;
}

/* Host users and groups and subordinate ids: the pool avoids them all. */
static void host_spans(struct id_spans *s)
{
	static const char *const dbs[] = {"/etc/passwd", "/etc/group"};
	static const char *const subs[] = {"/etc/subuid", "/etc/subgid"};
	for (size_t i = 0; i < 2; i++) {
		char *t = read_text(dbs[i]);
		if (t)
			id_spans_add_db(s, t);
		free(t);
		t = read_text(subs[i]);
		if (t)
			id_spans_add_subid(s, t);
		free(t);
	}
}

/* The registry entry of base, saying owner; returns its open fd. */
static int create_entry(uint32_t base, const char *owner, char *err, size_t len)
{
	char path[PATH_MAX];
	entry_path(base, path, sizeof(path));
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || dprintf(fd, "%s\n", owner) < 0) {
		snprintf(err, len, "cannot create %s: %s", path, strerror(errno));
		if (fd >= 0) {
			unlink(path);
			close(fd);
		}
		return -1;
	}
	return fd;
}

/* Picks a free base and creates its registry entry saying owner; returns
 * the entry's open fd. Call with the registry locked. */
static int take_range(const char *owner, struct idmap *m, char *err, size_t len)
{
	size_t n;
	uint32_t *used = held_bases(&n);
	struct id_spans s = {0};
	host_spans(&s);
	uint32_t base = idmap_pool_pick(IDMAP_POOL_START, IDMAP_POOL_END, IDMAP_COUNT, used, n, &s);
	free(used);
	id_spans_free(&s);
	if (!base) {
		snprintf(err, len, "no free id range left in the pool (registry %s)", registry_dir());
		return -1;
	}
	int fd = create_entry(base, owner, err, len);
	if (fd >= 0)
		*m = (struct idmap){base, base, IDMAP_COUNT};
	return fd;
}

/* A new range for the idmap file at path, written there. Call with the
 * registry locked. */
static int alloc_locked(const char *path, struct idmap *m, char *err, size_t len)
{
	char owner[PATH_MAX + 8];
	snprintf(owner, sizeof(owner), "ct %s", path);
	int fd = take_range(owner, m, err, len);
	if (fd < 0)
		return -1;
	close(fd);
	if (write_idmap(path, m, err, len) == 0)
		return 0;
	char entry[PATH_MAX];
	entry_path(m->uid, entry, sizeof(entry));
	unlink(entry);
	return -1;
}

int idmap_alloc_persistent(const char *path, struct idmap *m, char *err, size_t len)
{
	int lock = lock_registry(err, len);
	if (lock < 0)
		return -1;
	int rc = alloc_locked(path, m, err, len);
	close(lock);
	return rc;
}

/* Whether the registry entry of base gives it to the idmap file at path;
 * want gets the entry's text for that. */
static bool entry_names(uint32_t base, const char *path, char *want, size_t size)
{
	char entry[PATH_MAX], line[PATH_MAX + 8] = "";
	entry_path(base, entry, sizeof(entry));
	snprintf(want, size, "ct %s\n", path);
	int fd = open(entry, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, line, sizeof(line) - 1);
	line[n > 0 ? n : 0] = 0;
	close(fd);
	return !strcmp(line, want);
}

/* Whether the registry gives base to path, making it so when the entry is
 * missing or its owner gone. Call with the registry locked. */
static bool own_entry(uint32_t base, const char *path)
{
	char entry[PATH_MAX], want[PATH_MAX + 8], err[256];
	if (entry_names(base, path, want, sizeof(want)))
		return true;
	if (entry_held(base))
		return false;
	entry_path(base, entry, sizeof(entry));
	unlink(entry);
	want[strcspn(want, "\n")] = 0;
	int fd = create_entry(base, want, err, sizeof(err));
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

int idmap_claim(const char *path, struct idmap *m, char *err, size_t len)
{
	int lock = lock_registry(err, len);
	if (lock < 0)
		return -1;
	char why[256];
	int rc = 0;
	bool recorded = idmap_load(path, m, why, sizeof(why)) == 0;
	if (!recorded || !own_entry(m->uid, path))
		rc = alloc_locked(path, m, err, len);
	close(lock);
	return rc;
}

int idmap_alloc_run(const char *name, struct idmap *m, char *err, size_t len)
{
	int lock = lock_registry(err, len);
	if (lock < 0)
		return -1;
	char owner[128];
	snprintf(owner, sizeof(owner), "run %s %d", name, (int)getpid());
	int fd = take_range(owner, m, err, len);
	if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		snprintf(err, len, "cannot lock id range %u: %s", m->uid, strerror(errno));
		char entry[PATH_MAX];
		entry_path(m->uid, entry, sizeof(entry));
		unlink(entry);
		close(fd);
		fd = -1;
	}
	close(lock);
	return fd;
}

void idmap_release_run(int fd, const struct idmap *m)
{
	char err[256], entry[PATH_MAX];
	int lock = lock_registry(err, sizeof(err));
	entry_path(m->uid, entry, sizeof(entry));
	unlink(entry);
	close(fd);
	if (lock >= 0)
		close(lock);
}

void idmap_release(const char *path)
{
	char err[256], entry[PATH_MAX], want[PATH_MAX + 8];
	struct idmap m;
	if (idmap_load(path, &m, err, sizeof(err)) < 0)
		return;
	int lock = lock_registry(err, sizeof(err));
	if (lock < 0)
		return;
	if (entry_names(m.uid, path, want, sizeof(want))) {
		entry_path(m.uid, entry, sizeof(entry));
		unlink(entry);
	}
	close(lock);
}
