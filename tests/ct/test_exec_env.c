/* The environment kvz-ct exec gives a command: the fixed base, --env
 * NAME=VALUE and NAME (copied from ours, or left out), TERM only when it is
 * a terminal name, and bad names refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "exec_env.h"

#include <stdlib.h>
#include <string.h>

static const char *get(const struct exec_env *e, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < e->n; i++)
		if (!strncmp(e->vars[i], name, n) && e->vars[i][n] == '=')
			return e->vars[i] + n + 1;
	return NULL;
}

static void test_base_only(void **state)
{
	(void)state;
	setenv("KVZ_TEST_SECRET", "s3cret", 1);
	setenv("TERM", "xterm-256color", 1);
	struct exec_env e;
	char err[256];
	assert_int_equal(exec_env_build(&e, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(e.n, 4);
	assert_null(e.vars[4]);
	assert_string_equal(get(&e, "PATH"), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	assert_string_equal(get(&e, "HOME"), "/root");
	assert_string_equal(get(&e, "TERM"), "xterm-256color");
	assert_string_equal(get(&e, "container"), "kvz");
	assert_null(get(&e, "KVZ_TEST_SECRET"));
	exec_env_free(&e);
}

static void test_env_args(void **state)
{
	(void)state;
	setenv("KVZ_TEST_COPY", "from-admin", 1);
	unsetenv("KVZ_TEST_UNSET");
	char *args[] = {"A=1", "KVZ_TEST_COPY", "KVZ_TEST_UNSET", "HOME=/srv", "A=2=3", "EMPTY="};
	struct exec_env e;
	char err[256];
	assert_int_equal(exec_env_build(&e, args, 6, err, sizeof(err)), 0);
	assert_string_equal(get(&e, "A"), "2=3"); /* the last one wins */
	assert_string_equal(get(&e, "KVZ_TEST_COPY"), "from-admin");
	assert_null(get(&e, "KVZ_TEST_UNSET"));
	assert_string_equal(get(&e, "HOME"), "/srv");
	assert_string_equal(get(&e, "EMPTY"), "");
	assert_int_equal(e.n, 7);
	exec_env_free(&e);
}

static void test_bad_names(void **state)
{
	(void)state;
	const char *bad[] = {"1A=x", "=x", "A-B=x", "", "A B=x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *args[] = {(char *)bad[i]};
		struct exec_env e;
		char err[256] = "";
		assert_int_equal(exec_env_build(&e, args, 1, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "invalid --env"));
		assert_null(e.vars);
	}
}

static void test_insane_term(void **state)
{
	(void)state;
	const char *terms[] = {"\033]0;x\007", "../../etc/passwd", "", "a b"};
	for (size_t i = 0; i < sizeof(terms) / sizeof(terms[0]); i++) {
		setenv("TERM", terms[i], 1);
		struct exec_env e;
		char err[256];
		assert_int_equal(exec_env_build(&e, NULL, 0, err, sizeof(err)), 0);
		assert_string_equal(get(&e, "TERM"), "linux");
		exec_env_free(&e);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_only),
		cmocka_unit_test(test_env_args),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_insane_term),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
