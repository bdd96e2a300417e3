/* Unit tests of kvzd's store (schema migrations, records, events, the
 * round-robin sample series) and supervisor helpers, with a clock the test
 * controls. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "kvzd.h"
#include "store.h"
#include "supervisor.h"

/* The store stamps rows with kvzd_now_ms(); tests move this clock. */
static int64_t fake_now = 1700000000000LL;

int64_t kvzd_now_ms(void) { return fake_now; }

static char dbpath[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dbpath, sizeof(dbpath), "/tmp/kvzd-store-test-%d.db", getpid());
	unlink(dbpath);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char p[80];
	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
	return 0;
}

static int count(const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int n = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

static void test_migrations(void **state)
{
	(void)state;
	char err[256];
	struct store *s = store_open(dbpath, err, sizeof(err));
	assert_non_null(s);
	store_close(s);
	s = store_open(dbpath, err, sizeof(err));
	assert_non_null(s);
	store_close(s);
	assert_int_equal(count("SELECT COUNT(*) FROM migrations"), 6);
	/* A database from a newer kvzd is refused, not damaged. */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO migrations VALUES (99, 0)", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_null(store_open(dbpath, err, sizeof(err)));
	assert_non_null(strstr(err, "newer"));
}

static json_t *disks_of(struct store *s, const char *name)
{
	json_t *g = store_guest_get(s, name);
	json_t *d = json_incref(json_object_get(json_object_get(g, "config"), "disks"));
	json_decref(g);
	return d;
}

/* A VM's disks[0] follows its flat disk_* keys on every write (vm_disks.h);
 * disks 1.. stay as written; containers and diskless VMs get no list. */
static void test_vm_disk0_mirror(void **state)
{
	(void)state;
	char err[256];
	struct store *s = store_open(dbpath, err, sizeof(err));
	assert_non_null(s);
	json_t *cfg = json_pack("{s:s, s:i, s:s, s:s}", "disk_path", "/i/v.img", "disk_size", 4096,
				"disk_format", "qcow2", "disk_mode", "sparse");
	assert_int_equal(store_guest_insert(s, "v", "vm", cfg, false, err, sizeof(err)), 0);
	json_t *d = disks_of(s, "v");
	assert_int_equal(json_array_size(d), 1);
	json_t *d0 = json_array_get(d, 0);
	assert_string_equal(json_string_value(json_object_get(d0, "path")), "/i/v.img");
	assert_int_equal(json_integer_value(json_object_get(d0, "size")), 4096);
	assert_string_equal(json_string_value(json_object_get(d0, "format")), "qcow2");
	assert_true(json_is_null(json_object_get(d0, "base")));
	json_decref(d);
	/* A writer that set disks[0] wrong and a disk 1: disk 0 is the flat
	 * keys' again, disk 1 is kept. */
	json_object_set_new(cfg, "disk_size", json_integer(8192));
	json_object_set_new(cfg, "disks", json_pack("[{s:s}, {s:s, s:i}]", "path", "/etc/shadow",
						    "path", "/i/v@1.img", "size", 512));
	assert_int_equal(store_guest_set_config(s, "v", cfg), 0);
	d = disks_of(s, "v");
	assert_int_equal(json_array_size(d), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(d, 0), "path")), "/i/v.img");
	assert_int_equal(json_integer_value(json_object_get(json_array_get(d, 0), "size")), 8192);
	assert_string_equal(json_string_value(json_object_get(json_array_get(d, 1), "path")), "/i/v@1.img");
	json_decref(d);
	json_decref(cfg);
	cfg = json_pack("{s:i}", "disk_size", 1 << 30);
	assert_int_equal(store_guest_insert(s, "c", "ct", cfg, false, err, sizeof(err)), 0);
	assert_null(disks_of(s, "c"));
	json_decref(cfg);
	cfg = json_pack("{s:i, s:s}", "disk_size", 0, "disk_format", "raw");
	assert_int_equal(store_guest_insert(s, "k", "vm", cfg, false, err, sizeof(err)), 0);
	assert_null(disks_of(s, "k"));
	json_decref(cfg);
	store_close(s);
}

static void test_guests_and_events(void **state)
{
	(void)state;
	char err[256];
	struct store *s = store_open(dbpath, err, sizeof(err));
	assert_non_null(s);
	json_t *cfg = json_pack("{s:i}", "memory", 42);
	assert_int_equal(store_guest_insert(s, "a", "vm", cfg, false, err, sizeof(err)), 0);
	assert_int_equal(store_guest_insert(s, "a", "ct", cfg, false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "already exists"));
	json_decref(cfg);
	json_t *g = store_guest_get(s, "a");
	assert_string_equal(json_string_value(json_object_get(g, "state")), "creating");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(g, "config"), "memory")), 42);
	json_decref(g);
	assert_int_equal(store_guest_set_runtime(s, "a", 123, 456, "/q", "/c"), 0);
	g = store_guest_get(s, "a");
	assert_int_equal(json_integer_value(json_object_get(g, "pid_start")), 456);
	assert_null(json_object_get(g, "state_reason"));
	json_decref(g);
	/* A state's reason shows until the next state without one. */
	assert_int_equal(store_guest_set_state_reason(s, "a", "paused", "the disk is held"), 0);
	g = store_guest_get(s, "a");
	assert_string_equal(json_string_value(json_object_get(g, "state")), "paused");
	assert_string_equal(json_string_value(json_object_get(g, "state_reason")), "the disk is held");
	json_decref(g);
	assert_int_equal(store_guest_set_state(s, "a", "running"), 0);
	g = store_guest_get(s, "a");
	assert_null(json_object_get(g, "state_reason"));
	json_decref(g);
	assert_null(store_guest_get(s, "b"));

	int64_t first = store_event_add(s, "a", "created", NULL);
	for (int i = 0; i < 5; i++)
		store_event_add(s, i % 2 ? "a" : "b", "started", "x");
	json_t *all = store_event_list(s, 0, NULL, 100);
	assert_int_equal(json_array_size(all), 6);
	json_decref(all);
	/* The newest `limit` after `since`, oldest first. */
	json_t *two = store_event_list(s, first, "a", 2);
	assert_int_equal(json_array_size(two), 2);
	assert_true(json_integer_value(json_object_get(json_array_get(two, 0), "id")) <
		    json_integer_value(json_object_get(json_array_get(two, 1), "id")));
	json_decref(two);
	store_close(s);
}

static void test_jobs_and_snapshots(void **state)
{
	(void)state;
	char err[256];
	struct store *s = store_open(dbpath, err, sizeof(err));
	assert_non_null(s);
	json_t *params = json_pack("{s:s}", "snapshot", "s1");
	int64_t a = store_job_insert(s, "snapshot-create", "vm1", params);
	int64_t b = store_job_insert(s, "snapshot-restore", "vm2", params);
	json_decref(params);
	assert_true(a > 0 && b > a);
	struct job_row r = {.id = a, .state = "running", .phase = "saving memory",
			    .done = 10, .total = 100, .rate = 5.5, .started_ms = 7};
	assert_int_equal(store_job_save(s, &r), 0);
	json_t *j = store_job_get(s, a);
	assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
	assert_string_equal(json_string_value(json_object_get(j, "type")), "snapshot-create");
	assert_int_equal(json_integer_value(json_object_get(j, "total")), 100);
	assert_true(json_is_null(json_object_get(j, "error")));
	assert_true(json_is_null(json_object_get(j, "result")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(j, "params"),
							      "snapshot")), "s1");
	json_decref(j);
	/* A result is kept apart from the progress a later save writes. */
	json_t *res = json_pack("{s:{s:i}}", "handover", "told_ms", 3);
	assert_int_equal(store_job_set_result(s, a, res), 0);
	json_decref(res);
	assert_int_equal(store_job_save(s, &r), 0);
	j = store_job_get(s, a);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(
				 j, "result"), "handover"), "told_ms")), 3);
	json_decref(j);
	assert_null(store_job_get(s, 999));
	/* Both unfinished (running and queued), oldest first. */
	json_t *u = store_jobs_unfinished(s);
	assert_int_equal(json_array_size(u), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(u, 0), "id")), a);
	json_decref(u);
	snprintf(r.state, sizeof(r.state), "failed");
	snprintf(r.error, sizeof(r.error), "boom");
	store_job_save(s, &r);
	u = store_jobs_unfinished(s);
	assert_int_equal(json_array_size(u), 1);
	json_decref(u);
	json_t *l = store_job_list(s, "vm1", 10);
	assert_int_equal(json_array_size(l), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(l, 0), "error")), "boom");
	json_decref(l);

	assert_int_equal(store_snapshot_insert(s, "vm1", "s1", 5, 4096, true), 0);
	assert_int_equal(store_snapshot_insert(s, "vm1", "s1", 6, 1, false), -1);
	assert_int_equal(store_snapshot_insert(s, "vm1", "s2", 6, 1, false), 0);
	assert_int_equal(store_snapshot_insert(s, "vm2", "s1", 6, 1, false), 0);
	json_t *sn = store_snapshot_get(s, "vm1", "s1");
	assert_int_equal(json_integer_value(json_object_get(sn, "size")), 4096);
	assert_true(json_is_true(json_object_get(sn, "running")));
	json_decref(sn);
	assert_int_equal(store_snapshot_delete(s, "vm1", "s1"), 0);
	assert_null(store_snapshot_get(s, "vm1", "s1"));
	store_snapshot_delete(s, "vm1", NULL);
	json_t *left = store_snapshot_list(s, "vm1");
	assert_int_equal(json_array_size(left), 0);
	json_decref(left);
	left = store_snapshot_list(s, "vm2");
	assert_int_equal(json_array_size(left), 1);
	json_decref(left);
	store_close(s);
}

/* A sample with two disks whose figures follow ts (disk 1: twice disk 0's). */
static void add_raw(struct store *s, int64_t ts, double cpu, uint64_t mem)
{
	struct sample m = {.ts_ms = ts, .cpu_pct = cpu, .mem_used = mem, .net_rx = (uint64_t)ts,
			   .ndisks = 2};
	for (unsigned i = 0; i < 2; i++)
		m.disks[i] = (struct sample_disk){.device = {'v', 'd', (char)('a' + i)},
						  .used = (uint64_t)ts * (i + 1), .size = 1u << 20,
						  .rd = (uint64_t)ts * (i + 1), .wr = 7 * (i + 1)};
	assert_int_equal(store_sample_add(s, "g", &m), 0);
}

/* Disk i of a listed sample: its device and rd_bytes. */
static void assert_disk(json_t *row, size_t i, const char *dev, int64_t rd)
{
	json_t *d = json_array_get(json_object_get(row, "disks"), i);
	assert_non_null(d);
	assert_string_equal(json_string_value(json_object_get(d, "device")), dev);
	assert_int_equal(json_integer_value(json_object_get(d, "rd_bytes")), rd);
}

static void test_rollup(void **state)
{
	(void)state;
	char err[256];
	struct store *s = store_open(dbpath, err, sizeof(err));
	assert_non_null(s);
	int64_t minute = fake_now / 60000 * 60000;
	/* Three samples in one ended minute, one in the current minute. */
	add_raw(s, minute - 60000 + 1000, 10, 100);
	add_raw(s, minute - 60000 + 2000, 20, 200);
	add_raw(s, minute - 60000 + 3000, 60, 600);
	add_raw(s, minute + 1000, 99, 999);
	fake_now = minute + 2000;
	assert_int_equal(store_samples_rollup(s, fake_now), 0);
	json_t *m = store_sample_list(s, "g", 60, 0);
	assert_int_equal(json_array_size(m), 1);
	json_t *row = json_array_get(m, 0);
	assert_int_equal(json_integer_value(json_object_get(row, "ts_ms")), minute - 60000);
	assert_float_equal(json_real_value(json_object_get(row, "cpu_pct")), 30.0, 1e-9);
	assert_int_equal(json_integer_value(json_object_get(row, "mem_used")), 300);
	/* Counters keep their last value, each disk's too. */
	assert_int_equal(json_integer_value(json_object_get(row, "net_rx")), minute - 60000 + 3000);
	assert_int_equal(json_array_size(json_object_get(row, "disks")), 2);
	assert_disk(row, 0, "vda", minute - 60000 + 3000);
	assert_disk(row, 1, "vdb", 2 * (minute - 60000 + 3000));
	json_decref(m);
	/* A raw sample lists its own disks. */
	m = store_sample_list(s, "g", 0, minute);
	assert_int_equal(json_array_size(m), 1);
	assert_disk(json_array_get(m, 0), 1, "vdb", 2 * (minute + 1000));
	json_decref(m);
	/* Rolling up again adds nothing. */
	assert_int_equal(store_samples_rollup(s, fake_now), 0);
	assert_int_equal(count("SELECT COUNT(*) FROM samples WHERE resolution = 60"), 1);

	/* Two hours on: raw rows are gone, the minute row stays (and the
	 * current-minute sample got its own average on the way). */
	fake_now += 2 * 3600 * 1000LL;
	assert_int_equal(store_samples_rollup(s, fake_now), 0);
	assert_int_equal(count("SELECT COUNT(*) FROM samples WHERE resolution = 0"), 0);
	assert_int_equal(count("SELECT COUNT(*) FROM samples WHERE resolution = 60"), 2);
	/* A day on: the minute rows expire too. */
	fake_now += 24 * 3600 * 1000LL;
	assert_int_equal(store_samples_rollup(s, fake_now), 0);
	assert_int_equal(count("SELECT COUNT(*) FROM samples"), 0);
	store_close(s);
}

/* Policies and their audit trail (store_policy.c): names unique, enable
 * flags, and a proposal decided only once. */
static void test_policies(void **state)
{
	(void)state;
	char err[256];
	struct store *s = store_open(dbpath, err, sizeof(err));
	assert_non_null(s);
	json_t *rule = json_pack("{s:s}", "name", "r1");
	assert_int_equal(store_policy_insert(s, "r1", rule, true), 0);
	assert_int_equal(store_policy_insert(s, "r1", rule, true), 1);
	assert_int_equal(store_policy_insert(s, "r0", rule, false), 0);
	json_decref(rule);
	json_t *list = store_policy_list(s);
	assert_int_equal(json_array_size(list), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")), "r0");
	json_decref(list);
	assert_int_equal(store_policy_set_enabled(s, "r0", true), 0);
	assert_int_equal(store_policy_set_enabled(s, "nope", true), 1);
	json_t *p = store_policy_get(s, "r0");
	assert_true(json_is_true(json_object_get(p, "enabled")));
	assert_string_equal(json_string_value(json_object_get(json_object_get(p, "rule"), "name")), "r1");
	json_decref(p);
	assert_int_equal(store_policy_delete(s, "r0"), 0);
	assert_int_equal(store_policy_delete(s, "r0"), 1);

	int64_t id = store_policy_log_add(s, "r1", "ct1", "restart", "proposed", "event crashed");
	assert_true(id > 0);
	assert_int_equal(store_policy_log_update(s, id, "proposed", "approved", "", "local-socket"), 0);
	/* A second approval finds it no longer proposed. */
	assert_int_equal(store_policy_log_update(s, id, "proposed", "approved", "", "tcp-client"), 1);
	assert_int_equal(store_policy_log_update(s, id, "approved", "done", "ok", NULL), 0);
	json_t *row = store_policy_log_get(s, id);
	assert_string_equal(json_string_value(json_object_get(row, "state")), "done");
	assert_string_equal(json_string_value(json_object_get(row, "approved_by")), "local-socket");
	assert_string_equal(json_string_value(json_object_get(row, "result")), "ok");
	json_decref(row);
	store_policy_log_add(s, "r1", "ct2", "restart", "skipped", "limit");
	json_t *only = store_policy_log_list(s, 0, "skipped", 10);
	assert_int_equal(json_array_size(only), 1);
	json_decref(only);
	json_t *after = store_policy_log_list(s, id, NULL, 10);
	assert_int_equal(json_array_size(after), 1);
	json_decref(after);
	assert_int_equal(store_event_last_id(s), 0);
	store_event_add(s, "ct1", "crashed", NULL);
	assert_true(store_event_last_id(s) > 0);
	store_close(s);
}

static void test_supervisor_identity(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(sup_init(err, sizeof(err)), 0);
	char *argv[] = {"/bin/sh", "-c", "sleep 30", "--name", "web1", NULL};
	pid_t pid = sup_spawn(argv, -1, "/dev/null", err, sizeof(err));
	assert_true(pid > 0);
	unsigned long long start = 0;
	/* argv is in place once the child has exec'd. */
	for (int i = 0; i < 100 && !sup_is_supervisor(pid, start, "sh", "web1"); i++) {
		usleep(20000);
		start = sup_proc_start(pid);
	}
	assert_true(sup_is_supervisor(pid, start, "sh", "web1"));
	assert_false(sup_is_supervisor(pid, start, "sh", "web2"));
	assert_false(sup_is_supervisor(pid, start, "kvz-vmm", "web1"));
	assert_false(sup_is_supervisor(pid, start + 1, "sh", "web1"));
	assert_int_equal(sup_check(pid, start, NULL), SUP_ALIVE);
	/* Its own session: a signal to kvzd's process group misses it. */
	assert_int_equal(getsid(pid), pid);
	kill(pid, SIGKILL);
	int status = 0;
	enum sup_liveness l = SUP_ALIVE;
	for (int i = 0; i < 100 && l == SUP_ALIVE; i++) {
		usleep(20000);
		l = sup_check(pid, start, &status);
	}
	assert_int_equal(l, SUP_EXITED);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* Not our child, and gone: GONE. */
	assert_int_equal(sup_check(999999, 0, NULL), SUP_GONE);

	char out[128];
	char *fails[] = {"/bin/sh", "-c", "echo first; echo 'the reason' >&2; exit 3", NULL};
	assert_int_equal(sup_run(fails, out, sizeof(out)), 3);
	assert_string_equal(out, "the reason");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrations, setup, teardown),
		cmocka_unit_test_setup_teardown(test_guests_and_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vm_disk0_mirror, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_jobs_and_snapshots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policies, setup, teardown),
		cmocka_unit_test(test_supervisor_identity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
