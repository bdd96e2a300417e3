/* The policies and policy_log tables (store.h, docs/policy.md). */
#include <stdlib.h>
#include <string.h>

#include "kvzd.h"
#include "store.h"
#include "store_internal.h"

int store_policy_insert(struct store *s, const char *name, json_t *rule, bool enabled)
{
	char *text = json_dumps(rule, JSON_COMPACT);
	if (!text)
		return -1;
	int rc = -1;
	int64_t now = kvzd_now_ms();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO policies (name, rule, enabled, created_ms,"
					 " updated_ms) VALUES (?, ?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(st, 3, enabled);
		sqlite3_bind_int64(st, 4, now);
		sqlite3_bind_int64(st, 5, now);
		int r = sqlite3_step(st);
		rc = r == SQLITE_DONE ? 0 : r == SQLITE_CONSTRAINT ? 1 : -1;
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	free(text);
	return rc;
}

static json_t *policy_query(struct store *s, const char *name)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT name, rule, enabled, created_ms, updated_ms"
					 " FROM policies WHERE ?1 IS NULL OR name = ?1 ORDER BY name");
	if (st) {
		store_bind_opt_text(st, 1, name);
		while (sqlite3_step(st) == SQLITE_ROW) {
			json_t *rule = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
			json_array_append_new(list, json_pack(
				"{s:s, s:o, s:b, s:I, s:I}",
				"name", (const char *)sqlite3_column_text(st, 0),
				"rule", rule ? rule : json_null(), "enabled", sqlite3_column_int(st, 2),
				"created_ms", (json_int_t)sqlite3_column_int64(st, 3),
				"updated_ms", (json_int_t)sqlite3_column_int64(st, 4)));
		}
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

json_t *store_policy_get(struct store *s, const char *name)
{
	return store_first_row(policy_query(s, name));
}

json_t *store_policy_list(struct store *s)
{
	return policy_query(s, NULL);
}

int store_policy_set_enabled(struct store *s, const char *name, bool enabled)
{
	int rc = -1;
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "UPDATE policies SET enabled = ?, updated_ms = ?"
					 " WHERE name = ?");
	if (st) {
		sqlite3_bind_int(st, 1, enabled);
		sqlite3_bind_int64(st, 2, kvzd_now_ms());
		sqlite3_bind_text(st, 3, name, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
		if (!rc && sqlite3_changes(s->db) == 0)
			rc = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_policy_delete(struct store *s, const char *name)
{
	int rc = -1;
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "DELETE FROM policies WHERE name = ?");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
		if (!rc && sqlite3_changes(s->db) == 0)
			rc = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int64_t store_policy_log_add(struct store *s, const char *rule, const char *guest,
			     const char *action, const char *state, const char *reason)
{
	int64_t id = -1, now = kvzd_now_ms();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO policy_log (ts_ms, rule, guest, action,"
					 " state, reason, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_int64(st, 1, now);
		sqlite3_bind_text(st, 2, rule, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, guest, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 4, action, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 5, state, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 6, reason, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 7, now);
		if (!store_run_stmt(s, st))
			id = sqlite3_last_insert_rowid(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	return id;
}

int store_policy_log_update(struct store *s, int64_t id, const char *from, const char *state,
			    const char *result, const char *approved_by)
{
	int rc = -1;
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "UPDATE policy_log SET state = ?1, result = ?2,"
					 " approved_by = COALESCE(?3, approved_by), updated_ms = ?4"
					 " WHERE id = ?5 AND (?6 IS NULL OR state = ?6)");
	if (st) {
		sqlite3_bind_text(st, 1, state, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, result ? result : "", -1, SQLITE_TRANSIENT);
		store_bind_opt_text(st, 3, approved_by);
		sqlite3_bind_int64(st, 4, kvzd_now_ms());
		sqlite3_bind_int64(st, 5, id);
		store_bind_opt_text(st, 6, from);
		rc = store_run_stmt(s, st);
		if (!rc && sqlite3_changes(s->db) == 0)
			rc = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static json_t *log_query(struct store *s, int64_t id, int64_t since, const char *state, int limit)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT id, ts_ms, rule, guest, action, state, reason,"
					 " result, approved_by, updated_ms FROM policy_log"
					 " WHERE (?1 = 0 OR id = ?1) AND id > ?2"
					 " AND (?3 IS NULL OR state = ?3) ORDER BY id LIMIT ?4");
	if (st) {
		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_int64(st, 2, since);
		store_bind_opt_text(st, 3, state);
		sqlite3_bind_int(st, 4, limit);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(list, json_pack(
				"{s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}",
				"id", (json_int_t)sqlite3_column_int64(st, 0),
				"ts_ms", (json_int_t)sqlite3_column_int64(st, 1),
				"rule", (const char *)sqlite3_column_text(st, 2),
				"guest", (const char *)sqlite3_column_text(st, 3),
				"action", (const char *)sqlite3_column_text(st, 4),
				"state", (const char *)sqlite3_column_text(st, 5),
				"reason", (const char *)sqlite3_column_text(st, 6),
				"result", (const char *)sqlite3_column_text(st, 7),
				"approved_by", (const char *)sqlite3_column_text(st, 8),
				"updated_ms", (json_int_t)sqlite3_column_int64(st, 9)));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

json_t *store_policy_log_get(struct store *s, int64_t id)
{
	return store_first_row(log_query(s, id, 0, NULL, 1));
}

json_t *store_policy_log_list(struct store *s, int64_t since, const char *state, int limit)
{
	return log_query(s, 0, since, state, limit);
}

int64_t store_event_last_id(struct store *s)
{
	int64_t id = 0;
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT COALESCE(MAX(id), 0) FROM events");
	if (st) {
		if (sqlite3_step(st) == SQLITE_ROW)
			id = sqlite3_column_int64(st, 0);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return id;
}
