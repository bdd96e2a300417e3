/* One interface over cgroup v1 (hybrid hosts like ours: one hierarchy per
 * controller) and pure cgroup v2. A container's cgroup is OWN/kvz/NAME in
 * each hierarchy, OWN being the caller's own cgroup there (cgroup_locate;
 * "/" until it is called). */
#ifndef KVZ_CT_CGROUP_H
#define KVZ_CT_CGROUP_H

#include "ct_limits.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* One line of /proc/self/cgroup: hierarchy "memory", "systemd" (for
 * name=systemd), "" (the unified one, 0::) and the cgroup in it. */
struct cgroup_own {
	char hier[32];
	char path[224];
	bool named; /* a "name=HIER" hierarchy (no controller) */
};

#define CGROUP_MAX_OWN 24

struct cgroup {
	int version;    /* 1 or 2 */
	char root[256]; /* where the hierarchies are mounted: /sys/fs/cgroup */
	char name[64];
	struct cgroup_own own[CGROUP_MAX_OWN];
	size_t nown;
};

struct cgroup_stats {
	uint64_t cpu_ns;
	uint64_t mem_used;
	uint64_t pids;
};

/* 2 when root is a cgroup2 mount, 1 otherwise (v1 or hybrid). */
int cgroup_detect_version(const char *root);

/* CRIU's --cgroup-root values that put a restored container in its cgroup
 * here, OWN/kvz/NAME, whatever path it had where it was dumped (another
 * host's OWN): "/PATH" for v2, "CTRL:/PATH" per v1 hierarchy. Each out[i]
 * holds CGROUP_ROOT_ARG bytes; returns how many, at most max. */
#define CGROUP_ROOT_ARG 384
size_t cgroup_restore_roots(const struct cgroup *cg, char (*out)[CGROUP_ROOT_ARG], size_t max);
/* Fills cg (version detected unless forced >0) and creates the cgroup. */
int cgroup_init(struct cgroup *cg, const char *root, int version, const char *name,
		char *err, size_t len);
/* Where cgroup_vacate puts the supervisors, below OWN. */
#define CGROUP_SUPERVISORS_LEAF "/kvz/_supervisors"
/* Reads the caller's own cgroups from proc_file (/proc/self/cgroup), so
 * that the container's cgroups go under them. A caller in
 * OWN/kvz/_supervisors (kvzd started there on cgroup v2) counts as in OWN. */
int cgroup_locate(struct cgroup *cg, const char *proc_file, char *err, size_t len);
/* cgroup v2 enables controllers only for the children of a cgroup without
 * processes (the root excepted): moves pids (kvz-ct itself) out of the
 * caller's cgroup into OWN/kvz/_supervisors. Nothing to do on v1 or when
 * OWN is the root. Container names cannot start with '_'. */
int cgroup_vacate(const struct cgroup *cg, const pid_t *pids, size_t n, char *err, size_t len);
int cgroup_create(const struct cgroup *cg, char *err, size_t len);
/* Applies the limits set in upd; full is the merged state after the update
 * (v1 memsw needs both memory and swap). Refuses a hard memory limit below
 * current usage. */
int cgroup_apply(const struct cgroup *cg, const struct ct_limits *upd,
		 const struct ct_limits *full, char *err, size_t len);
int cgroup_attach(const struct cgroup *cg, pid_t pid, char *err, size_t len);
int cgroup_read_stats(const struct cgroup *cg, struct cgroup_stats *st);
/* Kills what is left inside and removes the cgroup; quiet when absent. */
int cgroup_destroy(const struct cgroup *cg, char *err, size_t len);
/* The directory whose freezer holds the container (v1: the freezer
 * hierarchy's, v2: the cgroup's own), as criu --freeze-cgroup takes it. */
int cgroup_freezer_dir(const struct cgroup *cg, char *out, size_t size, char *err, size_t len);
/* Freezes (or thaws) the container and waits until it is. */
int cgroup_freeze(const struct cgroup *cg, bool frozen, char *err, size_t len);
/* The directories making up the cgroup, for the state file. */
json_t *cgroup_paths(const struct cgroup *cg);

/* Shared by the two versions (cgroup.c). */
/* The caller's cgroup in hierarchy hier ("" = unified) as a path suffix:
 * "" for the root, else "/a/b". */
const char *cg_own(const struct cgroup *cg, const char *hier);
int cg_write(const char *dir, const char *file, const char *val, char *err, size_t len);
int cg_read(const char *dir, const char *file, char *buf, size_t size);
int cg_read_u64(const char *dir, const char *file, uint64_t *out);
int cg_mkdir(const char *path, char *err, size_t len);
int cg_rmdir_killing(const char *dir, char *err, size_t len);
/* Creates parent (kvz), runs prepare(parent, arg) on it, then creates dir
 * below it. Another container's teardown removes an empty parent
 * (cg_rmdir_parent), which can race with our mkdir: then all again. */
int cg_mkdir_below(const char *parent, const char *dir,
		   int (*prepare)(const char *parent, void *arg, char *err, size_t len), void *arg,
		   char *err, size_t len);
/* Removes dir's parent (kvz) if nothing else uses it; quiet otherwise. */
void cg_rmdir_parent(const char *dir);
int cg_check_usage(uint64_t hard, uint64_t usage, char *err, size_t len);
/* Refuses a pids.max below pids.current (the kernel would accept it). */
int cg_check_pids(const char *dir, uint64_t max, char *err, size_t len);

struct cgroup_ops {
	int (*vacate)(const struct cgroup *cg, const pid_t *pids, size_t n, char *err, size_t len);
	int (*create)(const struct cgroup *cg, char *err, size_t len);
	int (*apply)(const struct cgroup *cg, const struct ct_limits *upd,
		     const struct ct_limits *full, char *err, size_t len);
	int (*attach)(const struct cgroup *cg, pid_t pid, char *err, size_t len);
	int (*stats)(const struct cgroup *cg, struct cgroup_stats *st);
	int (*destroy)(const struct cgroup *cg, char *err, size_t len);
	json_t *(*paths)(const struct cgroup *cg);
};
extern const struct cgroup_ops cgroup_v1_ops;
/* v1: the container's cgroup OWN/kvz/NAME in hierarchy ctrl (in devices
 * its processes sit one level down, below the allow-list written here). */
void cgroup_v1_top(const struct cgroup *cg, const char *ctrl, char *out, size_t size);
extern const struct cgroup_ops cgroup_v2_ops;

#endif
