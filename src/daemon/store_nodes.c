/* The nodes table (store.h). */
#include "kvzd.h"
#include "store.h"
#include "store_internal.h"

int store_node_insert(struct store *s, const char *name, const char *url)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO nodes (name, url, added_ms)"
					 " VALUES (?, ?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, url, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, kvzd_now_ms());
		int r = sqlite3_step(st);
		rc = r == SQLITE_DONE ? 0 : r == SQLITE_CONSTRAINT ? 1 : -1;
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Nodes called name, or all when name is NULL. */
static json_t *node_query(struct store *s, const char *name)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT name, url, added_ms FROM nodes"
					 " WHERE ?1 IS NULL OR name = ?1 ORDER BY name");
	if (st) {
		store_bind_opt_text(st, 1, name);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(list, json_pack(
				"{s:s, s:s, s:I}", "name", (const char *)sqlite3_column_text(st, 0),
				"url", (const char *)sqlite3_column_text(st, 1),
				"added_ms", (json_int_t)sqlite3_column_int64(st, 2)));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

json_t *store_node_get(struct store *s, const char *name)
{
	return store_first_row(node_query(s, name));
}

json_t *store_node_list(struct store *s)
{
	return node_query(s, NULL);
}

int store_node_delete(struct store *s, const char *name)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "DELETE FROM nodes WHERE name = ?");
	if (st) {
		sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}
