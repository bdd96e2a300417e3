/* cgroup v2: one unified hierarchy; the container's cgroup is
 * ROOT/OWN/kvz/NAME, OWN being the caller's cgroup. Controllers reach it
 * through OWN's and OWN/kvz's cgroup.subtree_control, which the kernel
 * allows only for cgroups without processes (the root excepted): kvz-ct
 * first moves itself into the leaf OWN/kvz/_supervisors (v2_vacate).
 *
 * Mapping: memory soft/hard -> memory.high / memory.max, swap ->
 * memory.swap.max; cpus -> cpu.max "QUOTA 100000"; weight -> cpu.weight;
 * cpuset.cpus; pids.max; io weight -> io.weight "default W". v2 does not
 * refuse a memory.max below usage (it reclaims, then OOM-kills), so the
 * usage check is done here before writing. */
#include "cgroup.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static const char *const wanted[] = {"cpu", "memory", "pids", "io", "cpuset"};

static void dir_of(const struct cgroup *cg, char *out, size_t size)
{
	snprintf(out, size, "%s%s/kvz/%s", cg->root, cg_own(cg, ""), cg->name);
}

/* Children only get the controllers their parent enables in
 * cgroup.subtree_control; enable those this kernel offers. */
static int enable_controllers(const char *dir, char *err, size_t len)
{
	char avail[512];
	if (cg_read(dir, "cgroup.controllers", avail, sizeof(avail)) < 0) {
		snprintf(err, len, "cannot read %s/cgroup.controllers: %s", dir, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < sizeof(wanted) / sizeof(wanted[0]); i++) {
		char word[32];
		snprintf(word, sizeof(word), " %s ", wanted[i]);
		char padded[520];
		snprintf(padded, sizeof(padded), " %s ", avail);
		if (!strstr(padded, word))
			continue;
		char val[32];
		snprintf(val, sizeof(val), "+%s", wanted[i]);
		if (cg_write(dir, "cgroup.subtree_control", val, err, len) < 0)
			return -1;
	}
	return 0;
}

static int v2_vacate(const struct cgroup *cg, const pid_t *pids, size_t n, char *err, size_t len)
{
	const char *own = cg_own(cg, "");
	if (!*own)
		return 0;
	char parent[PATH_MAX], leaf[PATH_MAX];
	snprintf(parent, sizeof(parent), "%s%s/kvz", cg->root, own);
	snprintf(leaf, sizeof(leaf), "%s/_supervisors", parent);
	if (cg_mkdir(parent, err, len) < 0 || cg_mkdir(leaf, err, len) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		char pid[32];
		snprintf(pid, sizeof(pid), "%d", (int)pids[i]);
		if (cg_write(leaf, "cgroup.procs", pid, err, len) < 0)
			return -1;
	}
	return 0;
}

static int enable_below(const char *parent, void *arg, char *err, size_t len)
{
	(void)arg;
	return enable_controllers(parent, err, len);
}

static int enable_in_own(const char *own, char *err, size_t len)
{
	if (enable_controllers(own, err, len) == 0)
		return 0;
	if (errno == EBUSY)
		snprintf(err, len, "cannot enable cgroup controllers below %s: it holds processes "
			 "other than kvz-ct's, and cgroup v2 gives controllers only to the children "
			 "of cgroups without processes; start kvz-ct from a cgroup of its own", own);
	return -1;
}

static int v2_create(const struct cgroup *cg, char *err, size_t len)
{
	char own[PATH_MAX], parent[PATH_MAX], dir[PATH_MAX];
	snprintf(own, sizeof(own), "%s%s", cg->root, cg_own(cg, ""));
	snprintf(parent, sizeof(parent), "%s/kvz", own);
	dir_of(cg, dir, sizeof(dir));
	if (enable_in_own(own, err, len) < 0 ||
	    cg_mkdir_below(parent, dir, enable_below, NULL, err, len) < 0)
		return -1;
	return 0;
}

static int write_u64(const char *dir, const char *file, uint64_t v, char *err, size_t len)
{
	char val[32];
	snprintf(val, sizeof(val), "%" PRIu64, v);
	return cg_write(dir, file, val, err, len);
}

static int apply_memory(const char *dir, const struct ct_limits *full, char *err, size_t len)
{
	uint64_t usage;
	if (cg_read_u64(dir, "memory.current", &usage) == 0 &&
	    cg_check_usage(full->mem_hard, usage, err, len) < 0)
		return -1;
	/* Raise max before high and lower high before max, so high <= max
	 * throughout (the kernel does not insist, but it keeps the meaning). */
	uint64_t old_max = UINT64_MAX;
	cg_read_u64(dir, "memory.max", &old_max);
	if (full->mem_hard >= old_max) {
		if (write_u64(dir, "memory.max", full->mem_hard, err, len) < 0 ||
		    write_u64(dir, "memory.high", full->mem_soft, err, len) < 0)
			return -1;
	} else if (write_u64(dir, "memory.high", full->mem_soft, err, len) < 0 ||
		   write_u64(dir, "memory.max", full->mem_hard, err, len) < 0) {
		return -1;
	}
	uint64_t swap = full->has_swap ? full->swap : 0;
	return write_u64(dir, "memory.swap.max", swap, err, len);
}

static int v2_apply(const struct cgroup *cg, const struct ct_limits *upd,
		    const struct ct_limits *full, char *err, size_t len)
{
	char dir[PATH_MAX];
	dir_of(cg, dir, sizeof(dir));
	if ((upd->has_memory || upd->has_swap) && full->has_memory &&
	    apply_memory(dir, full, err, len) < 0)
		return -1;
	if (upd->has_cpus) {
		uint64_t quota = (uint64_t)(upd->cpus * 100000.0);
		char val[64];
		snprintf(val, sizeof(val), "%" PRIu64 " 100000", quota < 1000 ? 1000 : quota);
		if (cg_write(dir, "cpu.max", val, err, len) < 0)
			return -1;
	}
	if (upd->has_cpu_weight && write_u64(dir, "cpu.weight", upd->cpu_weight, err, len) < 0)
		return -1;
	if (upd->has_cpuset && cg_write(dir, "cpuset.cpus", upd->cpuset, err, len) < 0)
		return -1;
	if (upd->has_pids && (cg_check_pids(dir, upd->pids, err, len) < 0 ||
			      write_u64(dir, "pids.max", upd->pids, err, len) < 0))
		return -1;
	if (upd->has_io_weight) {
		char val[64];
		snprintf(val, sizeof(val), "default %" PRIu64, upd->io_weight);
		if (cg_write(dir, "io.weight", val, err, len) < 0)
			return -1;
	}
	return 0;
}

static int v2_attach(const struct cgroup *cg, pid_t pid, char *err, size_t len)
{
	char dir[PATH_MAX];
	dir_of(cg, dir, sizeof(dir));
	return write_u64(dir, "cgroup.procs", (uint64_t)pid, err, len);
}

static int parse_usage_usec(const char *dir, uint64_t *ns)
{
	char buf[1024];
	if (cg_read(dir, "cpu.stat", buf, sizeof(buf)) < 0)
		return -1;
	const char *p = strstr(buf, "usage_usec ");
	unsigned long long us;
	if (!p || sscanf(p + 11, "%llu", &us) != 1)
		return -1;
	*ns = us * 1000;
	return 0;
}

static int v2_stats(const struct cgroup *cg, struct cgroup_stats *st)
{
	char dir[PATH_MAX];
	dir_of(cg, dir, sizeof(dir));
	int rc = parse_usage_usec(dir, &st->cpu_ns);
	rc |= cg_read_u64(dir, "memory.current", &st->mem_used);
	rc |= cg_read_u64(dir, "pids.current", &st->pids);
	return rc ? -1 : 0;
}

static int v2_destroy(const struct cgroup *cg, char *err, size_t len)
{
	char dir[PATH_MAX];
	dir_of(cg, dir, sizeof(dir));
	if (cg_rmdir_killing(dir, err, len) < 0)
		return -1;
	cg_rmdir_parent(dir); /* stays while _supervisors or others are in it */
	return 0;
}

static json_t *v2_paths(const struct cgroup *cg)
{
	char dir[PATH_MAX];
	dir_of(cg, dir, sizeof(dir));
	json_t *a = json_array();
	json_array_append_new(a, json_string(dir));
	return a;
}

const struct cgroup_ops cgroup_v2_ops = {
	.vacate = v2_vacate, .create = v2_create, .apply = v2_apply, .attach = v2_attach,
	.stats = v2_stats, .destroy = v2_destroy, .paths = v2_paths,
};
