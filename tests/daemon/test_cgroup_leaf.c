/* kvzd_cgroup_leaf against fake cgroup trees: where kvzd moves itself on a
 * pure cgroup v2 host, and where it must not. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cgroup_leaf.h"

static char root[PATH_MAX];

static void put(const char *rel, const char *text)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int exists(const char *rel)
{
	char p[PATH_MAX + 64];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", root, rel);
	return stat(p, &st) == 0;
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/kvzd-cgleaf-XXXXXX");
	assert_non_null(mkdtemp(root));
	char p[PATH_MAX + 16];
	snprintf(p, sizeof(p), "%s/svc", root);
	assert_int_equal(mkdir(p, 0755), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd) == 0 ? 0 : -1;
}

static int leaf(const char *proc_text, char *err, size_t len)
{
	char proc[PATH_MAX + 16];
	put("self-cgroup", proc_text);
	snprintf(proc, sizeof(proc), "%s/self-cgroup", root);
	return kvzd_cgroup_leaf(root, proc, err, len);
}

/* v2, kvzd in /svc: it goes to /svc/kvz/_supervisors (its pid written). */
static void test_moves_into_leaf(void **state)
{
	(void)state;
	char err[256] = "", want[32], got[32] = "";
	put("cgroup.controllers", "cpu memory pids\n");
	assert_int_equal(leaf("0::/svc\n", err, sizeof(err)), 0);
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/svc/kvz/_supervisors/cgroup.procs", root);
	FILE *f = fopen(p, "r");
	assert_non_null(f);
	assert_non_null(fgets(got, sizeof(got), f));
	fclose(f);
	snprintf(want, sizeof(want), "%d\n", (int)getpid());
	assert_string_equal(got, want);
}

/* Nothing to do: v1/hybrid (no cgroup.controllers at the root), the
 * root cgroup, already in the leaf. */
static void test_left_alone(void **state)
{
	(void)state;
	char err[256] = "";
	assert_int_equal(leaf("0::/svc\n", err, sizeof(err)), 0);
	assert_false(exists("svc/kvz"));
	put("cgroup.controllers", "memory\n");
	assert_int_equal(leaf("0::/\n", err, sizeof(err)), 0);
	assert_false(exists("kvz"));
	assert_int_equal(leaf("0::/svc/kvz/_supervisors\n", err, sizeof(err)), 0);
	assert_false(exists("svc/kvz/_supervisors/kvz"));
	assert_false(exists("svc/kvz"));
}

/* A cgroup that is not there, an unreadable file: one error, -1. */
static void test_errors(void **state)
{
	(void)state;
	char err[256] = "";
	put("cgroup.controllers", "memory\n");
	assert_int_equal(leaf("0::/gone\n", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot create"));
	err[0] = 0;
	assert_int_equal(kvzd_cgroup_leaf(root, "/nonexistent/cgroup", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot read /nonexistent/cgroup"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_moves_into_leaf, setup, teardown),
		cmocka_unit_test_setup_teardown(test_left_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
