/* cgroup v1: one hierarchy per controller under ROOT/<controller>. The
 * container's cgroup is ROOT/<controller>/OWN/kvz/NAME in each of them, OWN
 * being the caller's cgroup in that hierarchy; in every hierarchy mounted
 * there, including a hybrid host's systemd and unified (cgroup2, no
 * controllers) ones.
 *
 * Mapping (see docs/architecture.md): memory soft/hard ->
 * memory.soft_limit_in_bytes / memory.limit_in_bytes, hard+swap ->
 * memory.memsw.limit_in_bytes; cpus -> cpu.cfs_quota_us over a 100 ms
 * cpu.cfs_period_us; weight -> cpu.shares; cpuset.cpus; pids.max;
 * io weight -> blkio.bfq.weight or blkio.weight. The devices hierarchy
 * puts the processes one level down (DEVICES_LEAF). */
#include "cgroup.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The first six carry limits; the others only place the container, so
 * that its cgroup namespace is rooted at its own cgroup in every hierarchy
 * (a hierarchy left out would show the caller's subtree to a cgroup mount
 * inside). */
static const char *const controllers[] = {
	"memory",  "cpu",     "cpuacct",  "cpuset",	"pids",	 "blkio", "devices", "freezer",
	"net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc",  "systemd", "unified"};
#define NCTRL (sizeof(controllers) / sizeof(controllers[0]))

/* The caller's cgroup in the hierarchy mounted at ROOT/ctrl. */
static const char *own_of(const struct cgroup *cg, const char *ctrl)
{
	return cg_own(cg, strcmp(ctrl, "unified") ? ctrl : "");
}

/* devices: the container's processes sit in kvz/NAME/ct, below kvz/NAME
 * whose allow-list devices.c writes before anything joins. v1 checks a
 * devices.allow write only against the parent's list, so container root
 * (whose cgroup namespace starts at ct) cannot widen its own beyond
 * kvz/NAME's. ct is made at attach: a new devices cgroup copies its
 * parent's list, and "deny a" is refused once a cgroup has a child. */
#define DEVICES_LEAF "/ct"

static bool is_devices(const char *ctrl)
{
	return !strcmp(ctrl, "devices");
}

void cgroup_v1_top(const struct cgroup *cg, const char *ctrl, char *out, size_t size)
{
	snprintf(out, size, "%s/%s%s/kvz/%s", cg->root, ctrl, own_of(cg, ctrl), cg->name);
}

/* Where the container's processes are. */
static void dir_of(const struct cgroup *cg, const char *ctrl, char *out, size_t size)
{
	cgroup_v1_top(cg, ctrl, out, size);
	if (is_devices(ctrl))
		strncat(out, DEVICES_LEAF, size - strlen(out) - 1);
}

static bool mounted(const struct cgroup *cg, const char *ctrl)
{
	char path[PATH_MAX];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s/cgroup.procs", cg->root, ctrl);
	return stat(path, &st) == 0;
}

/* A new cpuset cgroup starts with no CPUs and no memory nodes; tasks cannot
 * join it until both are copied down from the parent. */
static int inherit_cpuset(const char *parent, const char *child, char *err, size_t len)
{
	static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
	for (size_t i = 0; i < 2; i++) {
		char cur[256], val[256];
		if (cg_read(child, files[i], cur, sizeof(cur)) == 0 && cur[0])
			continue;
		if (cg_read(parent, files[i], val, sizeof(val)) < 0) {
			snprintf(err, len, "cannot read %s/%s: %s", parent, files[i], strerror(errno));
			return -1;
		}
		if (cg_write(child, files[i], val, err, len) < 0)
			return -1;
	}
	return 0;
}

/* A devices leaf left by a SIGKILLed supervisor: kvz/NAME goes with it,
 * since "deny a" is refused while a child is still going offline, which
 * outlasts its rmdir. */
static int drop_stale_leaf(const struct cgroup *cg, const char *ctrl, char *err, size_t len)
{
	char leaf[PATH_MAX], top[PATH_MAX];
	dir_of(cg, ctrl, leaf, sizeof(leaf));
	cgroup_v1_top(cg, ctrl, top, sizeof(top));
	if (!strcmp(leaf, top) || access(leaf, F_OK) < 0)
		return 0;
	return cg_rmdir_killing(leaf, err, len) < 0 ? -1 : cg_rmdir_killing(top, err, len);
}

static int inherit_from_own(const char *parent, void *own, char *err, size_t len)
{
	return inherit_cpuset(own, parent, err, len);
}

static int v1_create(const struct cgroup *cg, char *err, size_t len)
{
	for (size_t i = 0; i < NCTRL; i++) {
		if (!mounted(cg, controllers[i]))
			continue;
		char top[PATH_MAX], parent[PATH_MAX], dir[PATH_MAX];
		snprintf(top, sizeof(top), "%s/%s%s", cg->root, controllers[i],
			 own_of(cg, controllers[i]));
		snprintf(parent, sizeof(parent), "%s/kvz", top);
		cgroup_v1_top(cg, controllers[i], dir, sizeof(dir));
		bool cpuset = !strcmp(controllers[i], "cpuset");
		if (drop_stale_leaf(cg, controllers[i], err, len) < 0 ||
		    cg_mkdir_below(parent, dir, cpuset ? inherit_from_own : NULL, top, err, len) < 0 ||
		    (cpuset && inherit_cpuset(parent, dir, err, len) < 0))
			return -1;
	}
	return 0;
}

static int write_u64(const struct cgroup *cg, const char *ctrl, const char *file,
		     uint64_t v, char *err, size_t len)
{
	char dir[PATH_MAX], val[32];
	dir_of(cg, ctrl, dir, sizeof(dir));
	snprintf(val, sizeof(val), "%" PRIu64, v);
	return cg_write(dir, file, val, err, len);
}

/* memsw must stay >= limit at every step: raise memsw first when it grows,
 * lower the limit first when memsw shrinks. */
static int apply_memory(const struct cgroup *cg, const struct ct_limits *full,
			char *err, size_t len)
{
	char dir[PATH_MAX];
	dir_of(cg, "memory", dir, sizeof(dir));
	uint64_t usage = 0, old_memsw = 0;
	if (cg_read_u64(dir, "memory.usage_in_bytes", &usage) == 0 &&
	    cg_check_usage(full->mem_hard, usage, err, len) < 0)
		return -1;
	uint64_t memsw = full->mem_hard + (full->has_swap ? full->swap : 0);
	bool has_memsw = cg_read_u64(dir, "memory.memsw.limit_in_bytes", &old_memsw) == 0;
	if (has_memsw && memsw >= old_memsw &&
	    write_u64(cg, "memory", "memory.memsw.limit_in_bytes", memsw, err, len) < 0)
		return -1;
	if (write_u64(cg, "memory", "memory.limit_in_bytes", full->mem_hard, err, len) < 0) {
		if (errno == EBUSY)
			cg_check_usage(full->mem_hard, UINT64_MAX, err, len);
		return -1;
	}
	if (has_memsw && memsw < old_memsw &&
	    write_u64(cg, "memory", "memory.memsw.limit_in_bytes", memsw, err, len) < 0)
		return -1;
	return write_u64(cg, "memory", "memory.soft_limit_in_bytes", full->mem_soft, err, len);
}

static int apply_cpu(const struct cgroup *cg, const struct ct_limits *upd, char *err, size_t len)
{
	if (upd->has_cpus) {
		uint64_t quota = (uint64_t)(upd->cpus * 100000.0);
		if (quota < 1000)
			quota = 1000;
		if (write_u64(cg, "cpu", "cpu.cfs_period_us", 100000, err, len) < 0 ||
		    write_u64(cg, "cpu", "cpu.cfs_quota_us", quota, err, len) < 0)
			return -1;
	}
	if (upd->has_cpu_weight) {
		/* v2 weight 100 is v1's default of 1024 shares. */
		uint64_t shares = upd->cpu_weight * 1024 / 100;
		if (write_u64(cg, "cpu", "cpu.shares", shares < 2 ? 2 : shares, err, len) < 0)
			return -1;
	}
	if (upd->has_cpuset) {
		char dir[PATH_MAX];
		dir_of(cg, "cpuset", dir, sizeof(dir));
		if (cg_write(dir, "cpuset.cpus", upd->cpuset, err, len) < 0)
			return -1;
	}
	return 0;
}

static int apply_io_weight(const struct cgroup *cg, uint64_t w, char *err, size_t len)
{
	char dir[PATH_MAX];
	dir_of(cg, "blkio", dir, sizeof(dir));
	uint64_t v = w < 10 ? 10 : w > 1000 ? 1000 : w;
	uint64_t cur;
	const char *file = cg_read_u64(dir, "blkio.bfq.weight", &cur) == 0 ? "blkio.bfq.weight"
			   : cg_read_u64(dir, "blkio.weight", &cur) == 0   ? "blkio.weight"
									    : NULL;
	if (!file) {
		snprintf(err, len, "io weight is not supported here: %s has neither "
			 "blkio.weight nor blkio.bfq.weight (no BFQ/CFQ scheduler)", dir);
		return -1;
	}
	return write_u64(cg, "blkio", file, v, err, len);
}

static int v1_apply(const struct cgroup *cg, const struct ct_limits *upd,
		    const struct ct_limits *full, char *err, size_t len)
{
	if ((upd->has_memory || upd->has_swap) && full->has_memory &&
	    apply_memory(cg, full, err, len) < 0)
		return -1;
	if (apply_cpu(cg, upd, err, len) < 0)
		return -1;
	char pids_dir[PATH_MAX];
	dir_of(cg, "pids", pids_dir, sizeof(pids_dir));
	if (upd->has_pids && (cg_check_pids(pids_dir, upd->pids, err, len) < 0 ||
			      write_u64(cg, "pids", "pids.max", upd->pids, err, len) < 0))
		return -1;
	if (upd->has_io_weight && apply_io_weight(cg, upd->io_weight, err, len) < 0)
		return -1;
	return 0;
}

static int v1_attach(const struct cgroup *cg, pid_t pid, char *err, size_t len)
{
	for (size_t i = 0; i < NCTRL; i++) {
		if (!mounted(cg, controllers[i]))
			continue;
		char dir[PATH_MAX];
		dir_of(cg, controllers[i], dir, sizeof(dir));
		if ((is_devices(controllers[i]) && cg_mkdir(dir, err, len) < 0) ||
		    write_u64(cg, controllers[i], "cgroup.procs", (uint64_t)pid, err, len) < 0)
			return -1;
	}
	return 0;
}

static int v1_stats(const struct cgroup *cg, struct cgroup_stats *st)
{
	char dir[PATH_MAX];
	int rc = 0;
	dir_of(cg, "cpuacct", dir, sizeof(dir));
	rc |= cg_read_u64(dir, "cpuacct.usage", &st->cpu_ns);
	dir_of(cg, "memory", dir, sizeof(dir));
	rc |= cg_read_u64(dir, "memory.usage_in_bytes", &st->mem_used);
	dir_of(cg, "pids", dir, sizeof(dir));
	rc |= cg_read_u64(dir, "pids.current", &st->pids);
	return rc ? -1 : 0;
}

static int v1_destroy(const struct cgroup *cg, char *err, size_t len)
{
	int rc = 0;
	for (size_t i = 0; i < NCTRL; i++) {
		char dir[PATH_MAX], top[PATH_MAX];
		dir_of(cg, controllers[i], dir, sizeof(dir));
		cgroup_v1_top(cg, controllers[i], top, sizeof(top));
		if (cg_rmdir_killing(dir, err, len) < 0 ||
		    (strcmp(dir, top) && cg_rmdir_killing(top, err, len) < 0))
			rc = -1;
		else
			cg_rmdir_parent(top);
	}
	return rc;
}

static json_t *v1_paths(const struct cgroup *cg)
{
	json_t *a = json_array();
	for (size_t i = 0; i < NCTRL; i++) {
		char dir[PATH_MAX];
		if (!mounted(cg, controllers[i]))
			continue;
		dir_of(cg, controllers[i], dir, sizeof(dir));
		json_array_append_new(a, json_string(dir));
	}
	return a;
}

/* v1 has no rule against processes in inner cgroups. */
static int v1_vacate(const struct cgroup *cg, const pid_t *pids, size_t n, char *err, size_t len)
{
	(void)cg, (void)pids, (void)n, (void)err, (void)len;
	return 0;
}

const struct cgroup_ops cgroup_v1_ops = {
	.vacate = v1_vacate, .create = v1_create, .apply = v1_apply, .attach = v1_attach,
	.stats = v1_stats, .destroy = v1_destroy, .paths = v1_paths,
};
