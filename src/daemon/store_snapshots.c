/* The snapshots table (store.h). */
#include "store.h"
#include "store_internal.h"

int store_snapshot_insert(struct store *s, const char *guest, const char *name,
			  int64_t created_ms, uint64_t size, bool running)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO snapshots (guest, name, created_ms,"
					 " size, running) VALUES (?, ?, ?, ?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, guest, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, created_ms);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)size);
		sqlite3_bind_int(st, 5, running);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static json_t *snapshot_row(sqlite3_stmt *st)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:b}",
			 "guest", (const char *)sqlite3_column_text(st, 0),
			 "name", (const char *)sqlite3_column_text(st, 1),
			 "created_ms", (json_int_t)sqlite3_column_int64(st, 2),
			 "size", (json_int_t)sqlite3_column_int64(st, 3),
			 "running", sqlite3_column_int(st, 4));
}

/* ?1 = guest, ?2 = name or NULL (all of the guest's). */
static void bind_guest_name(sqlite3_stmt *st, const char *guest, const char *name)
{
	sqlite3_bind_text(st, 1, guest, -1, SQLITE_TRANSIENT);
	store_bind_opt_text(st, 2, name);
}

/* Snapshots of guest, only the one called name when name is not NULL. */
static json_t *snapshot_query(struct store *s, const char *guest, const char *name)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT guest, name, created_ms, size, running"
					 " FROM snapshots WHERE guest = ?1 AND"
					 " (?2 IS NULL OR name = ?2) ORDER BY created_ms, name");
	if (st) {
		bind_guest_name(st, guest, name);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(list, snapshot_row(st));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

json_t *store_snapshot_get(struct store *s, const char *guest, const char *name)
{
	return store_first_row(snapshot_query(s, guest, name));
}

json_t *store_snapshot_list(struct store *s, const char *guest)
{
	return snapshot_query(s, guest, NULL);
}

int store_snapshot_delete(struct store *s, const char *guest, const char *name)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "DELETE FROM snapshots WHERE guest = ?1 AND"
					 " (?2 IS NULL OR name = ?2)");
	if (st) {
		bind_guest_name(st, guest, name);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}
