/* kvz-ct's CRIU glue without CRIU: the error line taken from a CRIU log,
 * the `criu check` gate against stand-in binaries ($KVZ_CT_CRIU), and the
 * limits a checkpoint records, which restore must parse back unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "criu.h"
#include "ct_limits.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void log_error_line(void **state)
{
	(void)state;
	char out[128];
	criu_log_error("(00.000100) Version: 3.17.1\n"
		       "(00.020000) Error (criu/mount.c:1088): mnt: Can't lookup mount=1 for fd=-3\n"
		       "(00.030000) Error (criu/cr-dump.c:2000): Dumping FAILED.\n", out, sizeof(out));
	assert_string_equal(out, "mnt: Can't lookup mount=1 for fd=-3");
	criu_log_error("Error (x.c:1): last line", out, sizeof(out));
	assert_string_equal(out, "last line");
	criu_log_error("(00.01) Warn: nothing wrong\n", out, sizeof(out));
	assert_string_equal(out, "");
	criu_log_error(NULL, out, sizeof(out));
	assert_string_equal(out, "");
	criu_log_error("Error (a.c:1): a message much longer than the buffer given", out, 10);
	assert_string_equal(out, "a message");
}

static char *stand_in(const char *body)
{
	static char path[] = "/tmp/kvz-criu-XXXXXX";
	strcpy(path, "/tmp/kvz-criu-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	dprintf(fd, "#!/bin/sh\n%s\n", body);
	close(fd);
	chmod(path, 0700);
	return path;
}

static void gate(void **state)
{
	(void)state;
	char why[512];
	setenv("KVZ_CT_CRIU", "/nonexistent/criu", 1);
	assert_int_equal(criu_usable(why, sizeof(why)), -1);
	assert_non_null(strstr(why, "CRIU is not installed"));
	char *p = stand_in("echo 'Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable' >&2\n"
			   "echo 'Error (criu/crtools.c:260): Could not initialize kernel features detection.' >&2\n"
			   "exit 1");
	setenv("KVZ_CT_CRIU", p, 1);
	assert_int_equal(criu_usable(why, sizeof(why)), -1);
	assert_string_equal(why, "CRIU cannot checkpoint or restore on this host: `criu check` fails "
				 "(vdso: Failed to fill self vdso symtable)");
	unlink(p);
	p = stand_in("[ \"$1\" = check ] && echo Looks good. && exit 0; exit 3");
	setenv("KVZ_CT_CRIU", p, 1);
	assert_int_equal(criu_usable(why, sizeof(why)), 0);
	unlink(p);
	unsetenv("KVZ_CT_CRIU");
}

static void limits_round_trip(void **state)
{
	(void)state;
	struct ct_limits l = {0}, back = {0};
	char err[256];
	assert_true(ct_limit_parse(&l, "memory", "48M:96M", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "swap", "1G", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "cpus", "0.3", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "cpu-weight", "30", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "cpuset", "0-1,3", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "pids", "77", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "io-weight", "500", err, sizeof(err)));
	assert_true(ct_limit_parse(&l, "disk", "1G", err, sizeof(err)));
	json_t *j = ct_limits_to_json(&l);
	assert_null(json_object_get(j, "disk")); /* the image's size, not a cgroup limit */
	assert_string_equal(json_string_value(json_object_get(j, "memory")), "50331648:100663296");
	assert_true(ct_limits_from_json(&back, j, err, sizeof(err)));
	l.has_disk = false;
	l.disk = 0;
	assert_memory_equal(&l, &back, sizeof(l));
	json_decref(j);
	/* Only what was set comes back set. */
	struct ct_limits one = {0}, one_back = {0};
	assert_true(ct_limit_parse(&one, "pids", "5", err, sizeof(err)));
	j = ct_limits_to_json(&one);
	assert_int_equal(json_object_size(j), 1);
	assert_true(ct_limits_from_json(&one_back, j, err, sizeof(err)));
	assert_memory_equal(&one, &one_back, sizeof(one));
	json_decref(j);
}

static void limits_bad_json(void **state)
{
	(void)state;
	struct ct_limits l = {0};
	char err[256];
	json_t *j = json_pack("{s:i}", "pids", 5);
	assert_false(ct_limits_from_json(&l, j, err, sizeof(err)));
	assert_string_equal(err, "limit 'pids': want a string");
	json_decref(j);
	j = json_pack("{s:s}", "disk", "1G");
	assert_false(ct_limits_from_json(&l, j, err, sizeof(err)));
	json_decref(j);
	j = json_pack("{s:s}", "memory", "lots");
	assert_false(ct_limits_from_json(&l, j, err, sizeof(err)));
	assert_non_null(strstr(err, "invalid --memory"));
	json_decref(j);
	assert_false(ct_limits_from_json(&l, NULL, err, sizeof(err)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(log_error_line), cmocka_unit_test(gate),
		cmocka_unit_test(limits_round_trip), cmocka_unit_test(limits_bad_json),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
