/* One interface over cgroup v1 (hybrid hosts like ours: one hierarchy per
 * controller) and pure cgroup v2. A container's cgroup is kvz/NAME under the
 * hierarchy root(s). */
#ifndef KVZ_CT_CGROUP_H
#define KVZ_CT_CGROUP_H

#include "ct_limits.h"

#include <jansson.h>
#include <stdint.h>
#include <sys/types.h>

struct cgroup {
	int version;    /* 1 or 2 */
	char root[256]; /* where the hierarchies are mounted: /sys/fs/cgroup */
	char name[64];
};

struct cgroup_stats {
	uint64_t cpu_ns;
	uint64_t mem_used;
	uint64_t pids;
};

/* 2 when root is a cgroup2 mount, 1 otherwise (v1 or hybrid). */
int cgroup_detect_version(const char *root);

/* Fills cg (version detected unless forced >0) and creates the cgroup. */
int cgroup_init(struct cgroup *cg, const char *root, int version, const char *name,
		char *err, size_t len);
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
/* The directories making up the cgroup, for the state file. */
json_t *cgroup_paths(const struct cgroup *cg);

/* Shared by the two versions (cgroup.c). */
int cg_write(const char *dir, const char *file, const char *val, char *err, size_t len);
int cg_read(const char *dir, const char *file, char *buf, size_t size);
int cg_read_u64(const char *dir, const char *file, uint64_t *out);
int cg_mkdir(const char *path, char *err, size_t len);
int cg_rmdir_killing(const char *dir, char *err, size_t len);
int cg_check_usage(uint64_t hard, uint64_t usage, char *err, size_t len);
/* Refuses a pids.max below pids.current (the kernel would accept it). */
int cg_check_pids(const char *dir, uint64_t max, char *err, size_t len);

struct cgroup_ops {
	int (*create)(const struct cgroup *cg, char *err, size_t len);
	int (*apply)(const struct cgroup *cg, const struct ct_limits *upd,
		     const struct ct_limits *full, char *err, size_t len);
	int (*attach)(const struct cgroup *cg, pid_t pid, char *err, size_t len);
	int (*stats)(const struct cgroup *cg, struct cgroup_stats *st);
	int (*destroy)(const struct cgroup *cg, char *err, size_t len);
	json_t *(*paths)(const struct cgroup *cg);
};
extern const struct cgroup_ops cgroup_v1_ops;
extern const struct cgroup_ops cgroup_v2_ops;

#endif
