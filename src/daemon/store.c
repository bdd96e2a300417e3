#include "store.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvzd.h"
#include "log.h"
#include "store_internal.h"


/* A VM's disk 0 as an entry of its config's "disks" list (vm_disks.h),
 * from the flat disk_* keys: base and path null when it has none (yet). */
#define VM_DISK0 "json_object('path', json_extract(config, '$.disk_path'),"		\
	" 'size', COALESCE(json_extract(config, '$.disk_size'), 0),"			\
	" 'format', COALESCE(json_extract(config, '$.disk_format'), 'raw'),"		\
	" 'mode', COALESCE(json_extract(config, '$.disk_mode'), 'sparse'),"		\
	" 'base', json_extract(config, '$.disk_base'))"
/* disks[0] rewritten from the flat keys for every VM that has a disk or a
 * list: the one place that keeps the two in step, whoever wrote config. */
#define VM_DISK0_MIRROR "UPDATE guests SET config = CASE"				\
	" WHEN json_type(config, '$.disks') = 'array'"					\
	"  AND json_array_length(config, '$.disks') > 0"				\
	" THEN json_set(config, '$.disks[0]', " VM_DISK0 ")"				\
	" ELSE json_set(config, '$.disks', json_array(" VM_DISK0 ")) END"		\
	" WHERE type = 'vm' AND (json_extract(config, '$.disk_path') IS NOT NULL"	\
	" OR COALESCE(json_extract(config, '$.disk_size'), 0) > 0"			\
	" OR json_type(config, '$.disks') = 'array')"

/* Schema versions, applied in order once each; never edit a released entry,
 * append a new one. */
static const char *const migrations[] = {
	"CREATE TABLE guests ("
	" name TEXT PRIMARY KEY, type TEXT NOT NULL, state TEXT NOT NULL,"
	" config TEXT NOT NULL, pid INTEGER NOT NULL DEFAULT 0,"
	" pid_start INTEGER NOT NULL DEFAULT 0, qmp TEXT NOT NULL DEFAULT '',"
	" console TEXT NOT NULL DEFAULT '', autostart INTEGER NOT NULL DEFAULT 0,"
	" created_ms INTEGER NOT NULL, state_ms INTEGER NOT NULL);"
	"CREATE TABLE events ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL,"
	" guest TEXT NOT NULL, type TEXT NOT NULL, detail TEXT);"
	"CREATE INDEX events_guest ON events(guest, id);"
	"CREATE TABLE samples ("
	" guest TEXT NOT NULL, resolution INTEGER NOT NULL, ts_ms INTEGER NOT NULL,"
	" cpu_pct REAL NOT NULL, mem_used INTEGER NOT NULL, mem_limit INTEGER NOT NULL,"
	" disk_used INTEGER NOT NULL, disk_size INTEGER NOT NULL,"
	" net_rx INTEGER NOT NULL, net_tx INTEGER NOT NULL);"
	"CREATE INDEX samples_guest ON samples(guest, resolution, ts_ms);",
	/* 2: long operations (store_jobs.c), snapshots (store_snapshots.c),
	 * other hosts (store_nodes.c; their tokens are files, nodes.h). */
	"CREATE TABLE jobs ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, guest TEXT NOT NULL,"
	" state TEXT NOT NULL, phase TEXT NOT NULL DEFAULT '',"
	" done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0,"
	" rate REAL NOT NULL DEFAULT 0, error TEXT, params TEXT NOT NULL,"
	" created_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL DEFAULT 0,"
	" ended_ms INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX jobs_guest ON jobs(guest, id);"
	"CREATE TABLE snapshots ("
	" guest TEXT NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL,"
	" size INTEGER NOT NULL, running INTEGER NOT NULL,"
	" PRIMARY KEY (guest, name));"
	"CREATE TABLE nodes ("
	" name TEXT PRIMARY KEY, url TEXT NOT NULL, added_ms INTEGER NOT NULL);",
	/* 3: policy rules and their audit trail (store_policy.c). */
	"CREATE TABLE policies ("
	" name TEXT PRIMARY KEY, rule TEXT NOT NULL, enabled INTEGER NOT NULL,"
	" created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);"
	"CREATE TABLE policy_log ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL,"
	" rule TEXT NOT NULL, guest TEXT NOT NULL, action TEXT NOT NULL,"
	" state TEXT NOT NULL, reason TEXT NOT NULL, result TEXT NOT NULL DEFAULT '',"
	" approved_by TEXT NOT NULL DEFAULT '', updated_ms INTEGER NOT NULL);"
	"CREATE INDEX policy_log_state ON policy_log(state, id);",
	/* 4: a VM's ordered list of disks; the disk it had becomes disk 0. */
	VM_DISK0_MIRROR ";",
	/* 5: why a guest is in its state (a source left paused by a failed
	 * migration) and what a job reports at its end (a migration's
	 * hand-over times). */
	"ALTER TABLE guests ADD COLUMN state_reason TEXT NOT NULL DEFAULT '';"
	"ALTER TABLE jobs ADD COLUMN result TEXT;",
	/* 6: a VM's sample per disk, a JSON list (NULL without: containers,
	 * rows from before, another host's history). */
	"ALTER TABLE samples ADD COLUMN disks TEXT;",
};

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static int schema_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM migrations",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
	sqlite3_finalize(st);
	return v;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	if (exec_sql(db, "CREATE TABLE IF NOT EXISTS migrations ("
		     " version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
		     err, errlen))
		return -1;
	int have = schema_version(db);
	if (have < 0) {
		snprintf(err, errlen, "cannot read schema version: %s", sqlite3_errmsg(db));
		return -1;
	}
	int want = (int)(sizeof(migrations) / sizeof(migrations[0]));
	if (have > want) {
		snprintf(err, errlen, "database schema version %d is newer than this kvzd (%d)",
			 have, want);
		return -1;
	}
	for (int v = have + 1; v <= want; v++) {
		char rec[128];
		snprintf(rec, sizeof(rec), "INSERT INTO migrations VALUES (%d, %lld);",
			 v, (long long)kvzd_now_ms());
		if (exec_sql(db, "BEGIN", err, errlen))
			return -1;
		if (exec_sql(db, migrations[v - 1], err, errlen) ||
		    exec_sql(db, rec, err, errlen)) {
			exec_sql(db, "ROLLBACK", err + strlen(err), 0);
			return -1;
		}
		if (exec_sql(db, "COMMIT", err, errlen))
			return -1;
	}
	return 0;
}

struct store *store_open(const char *path, char *err, size_t errlen)
{
	struct store *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
			    SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		store_close(s);
		return NULL;
	}
	sqlite3_busy_timeout(s->db, 5000);
	char e[256] = "";
	if (exec_sql(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
		     " PRAGMA foreign_keys=ON;", e, sizeof(e)) ||
	    migrate(s->db, e, sizeof(e))) {
		snprintf(err, errlen, "%s: %s", path, e);
		store_close(s);
		return NULL;
	}
	return s;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

sqlite3_stmt *store_prepare(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		kvz_error("store: %s: %s", sql, sqlite3_errmsg(s->db));
		return NULL;
	}
	return st;
}

/* Steps a statement that returns no rows, then finalizes it. */
int store_run_stmt(struct store *s, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		kvz_error("store: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

void store_bind_opt_text(sqlite3_stmt *st, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

json_t *store_first_row(json_t *list)
{
	json_t *row = json_incref(json_array_get(list, 0));
	json_decref(list);
	return row;
}

/* VM_DISK0_MIRROR for one guest; the caller holds s->lock. */
static int mirror_disk0(struct store *s, const char *name)
{
	sqlite3_stmt *st = store_prepare(s, VM_DISK0_MIRROR " AND name = ?");
	if (!st)
		return -1;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	return store_run_stmt(s, st);
}

int store_guest_insert(struct store *s, const char *name, const char *type,
		       json_t *config, bool autostart, char *err, size_t errlen)
{
	char *cfg = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
	if (!cfg) {
		snprintf(err, errlen, "cannot encode configuration");
		return -1;
	}
	int64_t now = kvzd_now_ms();
	pthread_mutex_lock(&s->lock);
	int ret = -1;
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO guests (name, type, state, config,"
				   " autostart, created_ms, state_ms)"
				   " VALUES (?, ?, 'creating', ?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, type, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, cfg, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 4, autostart);
		sqlite3_bind_int64(st, 5, now);
		sqlite3_bind_int64(st, 6, now);
		int rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			ret = mirror_disk0(s, name);
		if (rc == SQLITE_CONSTRAINT)
			snprintf(err, errlen, "guest %s already exists", name);
		else if (rc != SQLITE_DONE || ret)
			snprintf(err, errlen, "store: %s", sqlite3_errmsg(s->db));
		sqlite3_finalize(st);
	} else {
		snprintf(err, errlen, "store: %s", sqlite3_errmsg(s->db));
	}
	pthread_mutex_unlock(&s->lock);
	free(cfg);
	return ret;
}

static json_t *guest_row(sqlite3_stmt *st)
{
	json_error_t jerr;
	json_t *cfg = json_loads((const char *)sqlite3_column_text(st, 3), 0, &jerr);
	const char *reason = (const char *)sqlite3_column_text(st, 11);
	json_t *g = json_pack("{s:s, s:s, s:s, s:o, s:I, s:I, s:s, s:s, s:b, s:I, s:I}",
			 "name", (const char *)sqlite3_column_text(st, 0),
			 "type", (const char *)sqlite3_column_text(st, 1),
			 "state", (const char *)sqlite3_column_text(st, 2),
			 "config", cfg ? cfg : json_object(),
			 "pid", (json_int_t)sqlite3_column_int64(st, 4),
			 "pid_start", (json_int_t)sqlite3_column_int64(st, 5),
			 "qmp", (const char *)sqlite3_column_text(st, 6),
			 "console", (const char *)sqlite3_column_text(st, 7),
			 "autostart", sqlite3_column_int(st, 8),
			 "created_ms", (json_int_t)sqlite3_column_int64(st, 9),
			 "state_ms", (json_int_t)sqlite3_column_int64(st, 10));
	if (g && reason && reason[0])
		json_object_set_new(g, "state_reason", json_string(reason));
	return g;
}

#define GUEST_COLUMNS "name, type, state, config, pid, pid_start, qmp, console," \
	" autostart, created_ms, state_ms, state_reason"

json_t *store_guest_get(struct store *s, const char *name)
{
	json_t *g = NULL;
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT " GUEST_COLUMNS " FROM guests WHERE name = ?");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		if (sqlite3_step(st) == SQLITE_ROW)
			g = guest_row(st);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return g;
}

json_t *store_guest_list(struct store *s)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT " GUEST_COLUMNS " FROM guests ORDER BY name");
	if (st) {
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(list, guest_row(st));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

int store_guest_set_state_reason(struct store *s, const char *name, const char *state,
				 const char *reason)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "UPDATE guests SET state = ?, state_ms = ?,"
					 " state_reason = ? WHERE name = ?");
	if (st) {
		sqlite3_bind_text(st, 1, state, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, kvzd_now_ms());
		sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 4, name, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_guest_set_state(struct store *s, const char *name, const char *state)
{
	return store_guest_set_state_reason(s, name, state, NULL);
}

int store_guest_set_runtime(struct store *s, const char *name, pid_t pid,
			    unsigned long long pid_start, const char *qmp,
			    const char *console)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "UPDATE guests SET pid = ?, pid_start = ?, qmp = ?,"
				   " console = ? WHERE name = ?");
	if (st) {
		sqlite3_bind_int64(st, 1, pid);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)pid_start);
		sqlite3_bind_text(st, 3, qmp, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 4, console, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 5, name, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_guest_set_config(struct store *s, const char *name, json_t *config)
{
	char *cfg = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS);
	if (!cfg)
		return -1;
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	char e[256];
	/* One transaction: no reader sees the new flat keys with the old
	 * disks[0]. */
	sqlite3_stmt *st = exec_sql(s->db, "BEGIN IMMEDIATE", e, sizeof(e)) ? NULL :
		store_prepare(s, "UPDATE guests SET config = ? WHERE name = ?");
	if (st) {
		sqlite3_bind_text(st, 1, cfg, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
		if (rc == 0)
			rc = mirror_disk0(s, name);
		exec_sql(s->db, rc ? "ROLLBACK" : "COMMIT", e, sizeof(e));
	}
	pthread_mutex_unlock(&s->lock);
	free(cfg);
	return rc;
}

int store_guest_delete(struct store *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "DELETE FROM guests WHERE name = ?");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int64_t store_event_add(struct store *s, const char *guest, const char *type,
			const char *detail)
{
	pthread_mutex_lock(&s->lock);
	int64_t id = -1;
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO events (ts_ms, guest, type, detail)"
				   " VALUES (?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_int64(st, 1, kvzd_now_ms());
		sqlite3_bind_text(st, 2, guest, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, type, -1, SQLITE_TRANSIENT);
		store_bind_opt_text(st, 4, detail);
		if (store_run_stmt(s, st) == 0)
			id = sqlite3_last_insert_rowid(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	return id;
}

json_t *store_event_list(struct store *s, int64_t since, const char *guest, int limit)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	/* The newest `limit` events after `since`, returned oldest first. */
	sqlite3_stmt *st = store_prepare(s, "SELECT * FROM (SELECT id, ts_ms, guest, type, detail"
				   " FROM events WHERE id > ? AND (?2 IS NULL OR guest = ?2)"
				   " ORDER BY id DESC LIMIT ?3) ORDER BY id");
	if (st) {
		sqlite3_bind_int64(st, 1, since);
		store_bind_opt_text(st, 2, guest);
		sqlite3_bind_int(st, 3, limit);
		while (sqlite3_step(st) == SQLITE_ROW) {
			const char *detail = (const char *)sqlite3_column_text(st, 4);
			json_array_append_new(list, json_pack(
				"{s:I, s:I, s:s, s:s, s:s?}",
				"id", (json_int_t)sqlite3_column_int64(st, 0),
				"ts_ms", (json_int_t)sqlite3_column_int64(st, 1),
				"guest", (const char *)sqlite3_column_text(st, 2),
				"type", (const char *)sqlite3_column_text(st, 3),
				"detail", detail));
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

#define SAMPLE_INSERT "INSERT INTO samples (guest, resolution, ts_ms, cpu_pct, mem_used,"	\
	" mem_limit, disk_used, disk_size, net_rx, net_tx, disks)"				\
	" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

/* A sample's disks as the stored (and listed) JSON text, NULL for none. */
static char *sample_disks_text(const struct sample *m)
{
	if (!m->ndisks)
		return NULL;
	json_t *list = json_array();
	for (unsigned i = 0; i < m->ndisks && i < SAMPLE_DISKS; i++) {
		const struct sample_disk *d = &m->disks[i];
		json_array_append_new(list, json_pack("{s:s, s:I, s:I, s:I, s:I}", "device", d->device,
						      "used", (json_int_t)d->used, "size",
						      (json_int_t)d->size, "rd_bytes", (json_int_t)d->rd,
						      "wr_bytes", (json_int_t)d->wr));
	}
	char *text = json_dumps(list, JSON_COMPACT);
	json_decref(list);
	return text;
}

static void bind_sample(sqlite3_stmt *st, const char *guest, int resolution,
			const struct sample *m)
{
	sqlite3_bind_text(st, 1, guest, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(st, 2, resolution);
	sqlite3_bind_int64(st, 3, m->ts_ms);
	sqlite3_bind_double(st, 4, m->cpu_pct);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)m->mem_used);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)m->mem_limit);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)m->disk_used);
	sqlite3_bind_int64(st, 8, (sqlite3_int64)m->disk_size);
	sqlite3_bind_int64(st, 9, (sqlite3_int64)m->net_rx);
	sqlite3_bind_int64(st, 10, (sqlite3_int64)m->net_tx);
	char *disks = sample_disks_text(m);
	if (disks)
		sqlite3_bind_text(st, 11, disks, -1, free);
	else
		sqlite3_bind_null(st, 11);
}

int store_samples_import(struct store *s, const char *guest, int resolution,
			 const struct sample *smp, size_t n)
{
	char err[256];
	pthread_mutex_lock(&s->lock);
	int rc = exec_sql(s->db, "BEGIN", err, sizeof(err));
	for (size_t i = 0; rc == 0 && i < n; i++) {
		sqlite3_stmt *st = store_prepare(s, SAMPLE_INSERT);
		if (!st) {
			rc = -1;
			break;
		}
		bind_sample(st, guest, resolution, &smp[i]);
		rc = store_run_stmt(s, st);
	}
	if (exec_sql(s->db, rc ? "ROLLBACK" : "COMMIT", err, sizeof(err)))
		rc = -1;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_sample_add(struct store *s, const char *guest, const struct sample *smp)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, SAMPLE_INSERT);
	if (st) {
		bind_sample(st, guest, 0, smp);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_samples_rollup(struct store *s, int64_t now_ms)
{
	int64_t minute_end = now_ms / 60000 * 60000;
	char sql[2048];
	/* One row per (guest, ended minute) that has raw samples and no average
	 * yet; the average row is stamped with the minute's start. Its disks
	 * are the minute's last sample's (counters and sizes: their latest). */
	snprintf(sql, sizeof(sql),
		 "BEGIN;"
		 "INSERT INTO samples SELECT r.guest, 60, r.ts_ms / 60000 * 60000,"
		 " AVG(cpu_pct), CAST(AVG(mem_used) AS INTEGER), MAX(mem_limit),"
		 " MAX(disk_used), MAX(disk_size), MAX(net_rx), MAX(net_tx),"
		 " (SELECT l.disks FROM samples l WHERE l.guest = r.guest AND l.resolution = 0"
		 "  AND l.ts_ms / 60000 = r.ts_ms / 60000 ORDER BY l.ts_ms DESC LIMIT 1)"
		 " FROM samples r WHERE r.resolution = 0 AND r.ts_ms < %lld"
		 " AND NOT EXISTS (SELECT 1 FROM samples m WHERE m.guest = r.guest"
		 "  AND m.resolution = 60 AND m.ts_ms = r.ts_ms / 60000 * 60000)"
		 " GROUP BY r.guest, r.ts_ms / 60000;"
		 "DELETE FROM samples WHERE resolution = 0 AND ts_ms < %lld;"
		 "DELETE FROM samples WHERE resolution = 60 AND ts_ms < %lld;"
		 "COMMIT;",
		 (long long)minute_end, (long long)(now_ms - 3600 * 1000LL),
		 (long long)(now_ms - 24 * 3600 * 1000LL));
	char err[256];
	pthread_mutex_lock(&s->lock);
	int rc = exec_sql(s->db, sql, err, sizeof(err));
	if (rc) {
		kvz_error("store: sample rollup: %s", err);
		exec_sql(s->db, "ROLLBACK", err, sizeof(err));
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* A row's disks (kvzd wrote them: sample_disks_text), NULL when none. */
static json_t *stored_disks(sqlite3_stmt *st, int col)
{
	const char *text = (const char *)sqlite3_column_text(st, col);
	json_t *v = text ? json_loads(text, 0, NULL) : NULL;
	if (v && !json_is_array(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

json_t *store_sample_list(struct store *s, const char *guest, int resolution,
			  int64_t since_ms)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT ts_ms, cpu_pct, mem_used, mem_limit, disk_used,"
				   " disk_size, net_rx, net_tx, disks FROM samples WHERE guest = ?"
				   " AND resolution = ? AND ts_ms >= ? ORDER BY ts_ms");
	if (st) {
		sqlite3_bind_text(st, 1, guest, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 2, resolution);
		sqlite3_bind_int64(st, 3, since_ms);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(list, json_pack(
				"{s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:o*}",
				"ts_ms", (json_int_t)sqlite3_column_int64(st, 0),
				"cpu_pct", sqlite3_column_double(st, 1),
				"mem_used", (json_int_t)sqlite3_column_int64(st, 2),
				"mem_limit", (json_int_t)sqlite3_column_int64(st, 3),
				"disk_used", (json_int_t)sqlite3_column_int64(st, 4),
				"disk_size", (json_int_t)sqlite3_column_int64(st, 5),
				"net_rx", (json_int_t)sqlite3_column_int64(st, 6),
				"net_tx", (json_int_t)sqlite3_column_int64(st, 7),
				"disks", stored_disks(st, 8)));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

int store_samples_delete(struct store *s, const char *guest)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "DELETE FROM samples WHERE guest = ?");
	if (st) {
		sqlite3_bind_text(st, 1, guest, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}
