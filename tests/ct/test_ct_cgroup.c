/* The cgroup v1 and v2 file-writing logic against fake cgroup trees: this
 * host's controllers are bound to v1, so v2 cannot be exercised live here.
 * Real cgroupfs files exist before they are written; the fake tree creates
 * them the same way before each step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "cgroup.h"
#include "ct_limits.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[PATH_MAX];

static void put(const char *dir, const char *file, const char *val)
{
	char path[PATH_MAX * 2];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(val, f);
	fclose(f);
}

static void expect_file(const char *dir, const char *file, const char *want)
{
	char buf[256];
	assert_int_equal(cg_read(dir, file, buf, sizeof(buf)), 0);
	assert_string_equal(buf, want);
}

static int make_root(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/kvz-ct-unit.XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int drop_root(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd);
}

static struct ct_limits parse_all(const char *mem, const char *cpus, const char *pids)
{
	struct ct_limits l = {0};
	char err[256];
	assert_true(ct_limit_parse(&l, "memory", mem, err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "cpus", cpus, err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "pids", pids, err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "cpu-weight", "200", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "io-weight", "300", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "cpuset", "0-1", err, sizeof(err)));
	return l;
}

static void v2_files(const char *dir, const char *usage)
{
	static const char *const files[] = {"memory.max", "memory.high", "memory.swap.max",
					    "cpu.max", "cpu.weight", "pids.max", "io.weight",
					    "cpuset.cpus", "cgroup.procs"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		put(dir, files[i], "max");
	put(dir, "memory.current", usage);
}

static void test_v2_create_and_apply(void **state)
{
	(void)state;
	char err[512], kvz[PATH_MAX + 8], dir[PATH_MAX + 16];
	put(root, "cgroup.controllers", "cpuset cpu io memory pids hugetlb");
	put(root, "cgroup.subtree_control", "");
	snprintf(kvz, sizeof(kvz), "%s/kvz", root);
	mkdir(kvz, 0755);
	put(kvz, "cgroup.controllers", "cpuset cpu io memory pids");
	put(kvz, "cgroup.subtree_control", "");
	struct cgroup cg;
	assert_int_equal(cgroup_init(&cg, root, 2, "c1", err, sizeof(err)), 0);
	assert_int_equal(cg.version, 2);
	assert_int_equal(cgroup_create(&cg, err, sizeof(err)), 0);
	snprintf(dir, sizeof(dir), "%s/c1", kvz);
	struct stat st;
	assert_int_equal(stat(dir, &st), 0);
	/* Each controller is enabled by its own write; the last one stays. */
	expect_file(kvz, "cgroup.subtree_control", "+cpuset");

	v2_files(dir, "1048576");
	struct ct_limits l = parse_all("32M:64M", "0.5", "100");
	assert_int_equal(cgroup_apply(&cg, &l, &l, err, sizeof(err)), 0);
	expect_file(dir, "memory.high", "33554432");
	expect_file(dir, "memory.max", "67108864");
	expect_file(dir, "memory.swap.max", "0");
	expect_file(dir, "cpu.max", "50000 100000");
	expect_file(dir, "cpu.weight", "200");
	expect_file(dir, "pids.max", "100");
	expect_file(dir, "io.weight", "default 300");
	expect_file(dir, "cpuset.cpus", "0-1");

	assert_int_equal(cgroup_attach(&cg, 4242, err, sizeof(err)), 0);
	expect_file(dir, "cgroup.procs", "4242");
	json_t *paths = cgroup_paths(&cg);
	assert_int_equal(json_array_size(paths), 1);
	assert_string_equal(json_string_value(json_array_get(paths, 0)), dir);
	json_decref(paths);
}

static void test_v2_refuses_below_usage(void **state)
{
	(void)state;
	char err[512], dir[PATH_MAX + 16];
	struct cgroup cg;
	assert_int_equal(cgroup_init(&cg, root, 2, "c1", err, sizeof(err)), 0);
	snprintf(dir, sizeof(dir), "%s/kvz/c1", root);
	put(dir, "memory.current", "104857600");
	put(dir, "memory.max", "134217728");
	struct ct_limits l = {0};
	assert_true(ct_limit_parse(&l, "memory", "32M:64M", err, sizeof(err)));
	assert_int_equal(cgroup_apply(&cg, &l, &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "below the container's current usage"));
	expect_file(dir, "memory.max", "134217728"); /* untouched */
	put(dir, "pids.current", "30");
	put(dir, "pids.max", "100");
	struct ct_limits p = {0};
	assert_true(ct_limit_parse(&p, "pids", "20", err, sizeof(err)));
	assert_int_equal(cgroup_apply(&cg, &p, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "below the container's current 30 processes"));
	expect_file(dir, "pids.max", "100");
}

static void test_v2_stats(void **state)
{
	(void)state;
	char err[512], dir[PATH_MAX + 16];
	struct cgroup cg;
	assert_int_equal(cgroup_init(&cg, root, 2, "c1", err, sizeof(err)), 0);
	snprintf(dir, sizeof(dir), "%s/kvz/c1", root);
	put(dir, "cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
	put(dir, "memory.current", "4096");
	put(dir, "pids.current", "3");
	struct cgroup_stats st;
	assert_int_equal(cgroup_read_stats(&cg, &st), 0);
	assert_int_equal(st.cpu_ns, 1500000);
	assert_int_equal(st.mem_used, 4096);
	assert_int_equal(st.pids, 3);
}

static void test_v1_apply(void **state)
{
	(void)state;
	static const char *const ctrls[] = {"memory", "cpu", "cpuacct", "cpuset", "pids", "blkio"};
	char err[512], d[PATH_MAX + 32];
	for (size_t i = 0; i < 6; i++) {
		snprintf(d, sizeof(d), "%s/%s", root, ctrls[i]);
		mkdir(d, 0755);
		put(d, "cgroup.procs", "");
	}
	snprintf(d, sizeof(d), "%s/cpuset", root);
	put(d, "cpuset.cpus", "0-1");
	put(d, "cpuset.mems", "0");
	struct cgroup cg;
	assert_int_equal(cgroup_init(&cg, root, 1, "c2", err, sizeof(err)), 0);
	assert_int_equal(cgroup_create(&cg, err, sizeof(err)), 0);
	/* The new cpuset got its parent's CPUs and memory nodes. */
	snprintf(d, sizeof(d), "%s/cpuset/kvz/c2", root);
	expect_file(d, "cpuset.mems", "0");
	expect_file(d, "cpuset.cpus", "0-1");

	snprintf(d, sizeof(d), "%s/memory/kvz/c2", root);
	put(d, "memory.usage_in_bytes", "1048576");
	put(d, "memory.limit_in_bytes", "9223372036854771712");
	put(d, "memory.memsw.limit_in_bytes", "9223372036854771712");
	put(d, "memory.soft_limit_in_bytes", "");
	snprintf(d, sizeof(d), "%s/cpu/kvz/c2", root);
	put(d, "cpu.cfs_quota_us", "-1");
	put(d, "cpu.cfs_period_us", "100000");
	put(d, "cpu.shares", "1024");
	snprintf(d, sizeof(d), "%s/pids/kvz/c2", root);
	put(d, "pids.max", "max");
	snprintf(d, sizeof(d), "%s/blkio/kvz/c2", root);
	put(d, "blkio.bfq.weight", "100");

	struct ct_limits l = parse_all("32M:64M", "1.5", "50");
	assert_true(ct_limit_parse(&l, "swap", "16M", err, sizeof(err)));
	int rc = cgroup_apply(&cg, &l, &l, err, sizeof(err));
	if (rc)
		print_error("%s\n", err);
	assert_int_equal(rc, 0);
	snprintf(d, sizeof(d), "%s/memory/kvz/c2", root);
	expect_file(d, "memory.soft_limit_in_bytes", "33554432");
	expect_file(d, "memory.limit_in_bytes", "67108864");
	expect_file(d, "memory.memsw.limit_in_bytes", "83886080");
	snprintf(d, sizeof(d), "%s/cpu/kvz/c2", root);
	expect_file(d, "cpu.cfs_quota_us", "150000");
	expect_file(d, "cpu.shares", "2048");
	snprintf(d, sizeof(d), "%s/pids/kvz/c2", root);
	expect_file(d, "pids.max", "50");
	snprintf(d, sizeof(d), "%s/blkio/kvz/c2", root);
	expect_file(d, "blkio.bfq.weight", "300");

	/* Usage above the new hard limit: refused, files unchanged. */
	snprintf(d, sizeof(d), "%s/memory/kvz/c2", root);
	put(d, "memory.usage_in_bytes", "104857600");
	struct ct_limits low = {0};
	assert_true(ct_limit_parse(&low, "memory", "16M:32M", err, sizeof(err)));
	assert_int_equal(cgroup_apply(&cg, &low, &low, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "below the container's current usage 100M"));
	expect_file(d, "memory.limit_in_bytes", "67108864");
}

static void mkdirs(const char *rel)
{
	char path[PATH_MAX * 2];
	snprintf(path, sizeof(path), "mkdir -p %s/%s", root, rel);
	assert_int_equal(system(path), 0);
}

/* Containers go under the caller's own cgroup of each hierarchy, as
 * /proc/self/cgroup names it (combined and named v1 hierarchies too). */
static void test_v1_own_cgroup(void **state)
{
	(void)state;
	static const char *const hier[] = {"memory", "cpu", "cpuacct", "systemd", "unified"};
	for (size_t i = 0; i < 5; i++) {
		char d[PATH_MAX + 16];
		snprintf(d, sizeof(d), "%s/%s", root, hier[i]);
		mkdir(d, 0755);
		put(d, "cgroup.procs", "");
	}
	mkdirs("memory/a/b");
	mkdirs("cpu/c");
	mkdirs("cpuacct/c");
	mkdirs("systemd/user.slice");
	mkdirs("unified/u");
	char file[PATH_MAX + 16], err[512];
	snprintf(file, sizeof(file), "%s/self-cgroup", root);
	put(root, "self-cgroup", "9:name=systemd:/user.slice\n4:memory:/a/b\n2:cpu,cpuacct:/c\n3:pids:/\n0::/u\n");
	struct cgroup cg;
	assert_int_equal(cgroup_init(&cg, root, 1, "c3", err, sizeof(err)), 0);
	assert_int_equal(cgroup_locate(&cg, file, err, sizeof(err)), 0);
	assert_int_equal(cgroup_create(&cg, err, sizeof(err)), 0);
	json_t *paths = cgroup_paths(&cg);
	static const char *const want[] = {"memory/a/b", "cpu/c", "cpuacct/c", "systemd/user.slice",
					   "unified/u"};
	assert_int_equal(json_array_size(paths), 5);
	for (size_t i = 0; i < 5; i++) {
		char d[PATH_MAX + 64];
		snprintf(d, sizeof(d), "%s/%s/kvz/c3", root, want[i]);
		assert_string_equal(json_string_value(json_array_get(paths, i)), d);
		struct stat st;
		assert_int_equal(stat(d, &st), 0);
	}
	json_decref(paths);
	/* CRIU's --cgroup-root for a restore here: each hierarchy's own path,
	 * named ones as name=, the unified one as the default. */
	char roots[8][CGROUP_ROOT_ARG];
	static const char *const want_roots[] = {"name=systemd:/user.slice/kvz/c3", "memory:/a/b/kvz/c3",
						 "cpu:/c/kvz/c3", "cpuacct:/c/kvz/c3", "pids:/kvz/c3",
						 "/u/kvz/c3"};
	assert_int_equal(cgroup_restore_roots(&cg, roots, 8), 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(roots[i], want_roots[i]);
	assert_int_equal(cgroup_restore_roots(&cg, roots, 2), 2);
	/* The parent kvz goes with the last container in it. */
	assert_int_equal(cgroup_destroy(&cg, err, sizeof(err)), 0);
	char d[PATH_MAX + 32];
	struct stat st;
	snprintf(d, sizeof(d), "%s/memory/a/b/kvz", root);
	assert_int_equal(stat(d, &st), -1);
	snprintf(d, sizeof(d), "%s/memory/a/b", root);
	assert_int_equal(stat(d, &st), 0);

}

/* v2 below a non-root cgroup: kvz-ct moves itself into the leaf
 * OWN/kvz/_supervisors, then enables controllers in OWN and OWN/kvz. */
static void test_v2_own_cgroup(void **state)
{
	(void)state;
	char err[512], own[PATH_MAX + 16], kvz[PATH_MAX + 32], file[PATH_MAX + 16];
	mkdirs("svc/kvz/_supervisors");
	snprintf(own, sizeof(own), "%s/svc", root);
	snprintf(kvz, sizeof(kvz), "%s/kvz", own);
	for (const char *d = own; d; d = d == own ? kvz : NULL) {
		put(d, "cgroup.controllers", "memory pids");
		put(d, "cgroup.subtree_control", "");
	}
	snprintf(file, sizeof(file), "%s/self-cgroup-v2", root);
	put(root, "self-cgroup-v2", "0::/svc\n");
	struct cgroup cg;
	assert_int_equal(cgroup_init(&cg, root, 2, "c4", err, sizeof(err)), 0);
	assert_int_equal(cgroup_locate(&cg, file, err, sizeof(err)), 0);
	pid_t pids[] = {4243};
	assert_int_equal(cgroup_vacate(&cg, pids, 1, err, sizeof(err)), 0);
	char leaf[PATH_MAX + 64];
	snprintf(leaf, sizeof(leaf), "%s/_supervisors", kvz);
	expect_file(leaf, "cgroup.procs", "4243");
	assert_int_equal(cgroup_create(&cg, err, sizeof(err)), 0);
	expect_file(own, "cgroup.subtree_control", "+pids");
	expect_file(kvz, "cgroup.subtree_control", "+pids");
	json_t *paths = cgroup_paths(&cg);
	char d[PATH_MAX + 64];
	snprintf(d, sizeof(d), "%s/c4", kvz);
	assert_string_equal(json_string_value(json_array_get(paths, 0)), d);
	json_decref(paths);

	/* Started from the supervisors' leaf (kvzd on a v2 host put itself
	 * there, so that OWN holds no process): the same OWN, not a kvz/
	 * nested below the leaf. */
	put(root, "self-cgroup-v2", "0::/svc/kvz/_supervisors\n");
	struct cgroup again;
	assert_int_equal(cgroup_init(&again, root, 2, "c5", err, sizeof(err)), 0);
	assert_int_equal(cgroup_locate(&again, file, err, sizeof(err)), 0);
	assert_string_equal(cg_own(&again, ""), "/svc");
	char roots[2][CGROUP_ROOT_ARG];
	assert_int_equal(cgroup_restore_roots(&again, roots, 2), 1);
	assert_string_equal(roots[0], "/svc/kvz/c5");
	assert_int_equal(cgroup_vacate(&again, pids, 1, err, sizeof(err)), 0);
	assert_int_equal(cgroup_create(&again, err, sizeof(err)), 0);
	paths = cgroup_paths(&again);
	snprintf(d, sizeof(d), "%s/c5", kvz);
	assert_string_equal(json_string_value(json_array_get(paths, 0)), d);
	json_decref(paths);
	/* Only the whole leaf's name counts. */
	put(root, "self-cgroup-v2", "0::/svc/notkvz/_supervisors\n");
	assert_int_equal(cgroup_locate(&again, file, err, sizeof(err)), 0);
	assert_string_equal(cg_own(&again, ""), "/svc/notkvz/_supervisors");

	/* A line that is not "ID:HIERARCHIES:/PATH" is refused. */
	put(root, "self-cgroup-v2", "0:/svc\n");
	assert_int_equal(cgroup_locate(&cg, file, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unexpected line"));
}

static void test_limit_parsing(void **state)
{
	(void)state;
	struct ct_limits l = {0};
	char err[256];
	assert_false(ct_limit_parse(&l, "memory", "1G:512M", err, sizeof(err)));
	assert_non_null(strstr(err, "--memory"));
	assert_false(ct_limit_parse(&l, "cpus", "abc", err, sizeof(err)));
	assert_false(ct_limit_parse(&l, "pids", "0", err, sizeof(err)));
	assert_false(ct_limit_parse(&l, "cpuset", "0,,1", err, sizeof(err)));
	assert_false(ct_limit_parse(&l, "cpuset", "1-", err, sizeof(err)));
	assert_false(ct_limit_parse(&l, "disk", "64M", err, sizeof(err)));
	assert_false(ct_limit_parse(&l, "colour", "red", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "memory", "1G", err, sizeof(err)));
	assert_int_equal(l.mem_soft, 1ull << 30);
	assert_int_equal(l.mem_hard, 1ull << 30);
	struct ct_limits cur = {0}, upd = {0};
	assert_true(ct_limit_parse(&cur, "pids", "10", err, sizeof(err)));
	assert_true(ct_limit_parse(&upd, "cpus", "2", err, sizeof(err)));
	ct_limits_merge(&cur, &upd);
	assert_true(cur.has_pids && cur.has_cpus);
	assert_int_equal(cur.pids, 10);
}

int main(void)
{
	const struct CMUnitTest v2[] = {
		cmocka_unit_test(test_v2_create_and_apply),
		cmocka_unit_test(test_v2_refuses_below_usage),
		cmocka_unit_test(test_v2_stats),
	};
	const struct CMUnitTest v1[] = {
		cmocka_unit_test(test_v1_apply),
		cmocka_unit_test(test_limit_parsing),
	};
	const struct CMUnitTest own[] = {
		cmocka_unit_test(test_v1_own_cgroup),
		cmocka_unit_test(test_v2_own_cgroup),
	};
	int rc = cmocka_run_group_tests_name("cgroup v2", v2, make_root, drop_root);
	rc |= cmocka_run_group_tests_name("cgroup v1", v1, make_root, drop_root);
	return rc | cmocka_run_group_tests_name("own cgroup", own, make_root, drop_root);
}
