/* The jobs table (store.h). */
#include <stdio.h>
#include <stdlib.h>

#include "kvzd.h"
#include "store.h"
#include "store_internal.h"

int64_t store_job_insert(struct store *s, const char *type, const char *guest,
			 json_t *params)
{
	char *text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return -1;
	pthread_mutex_lock(&s->lock);
	int64_t id = -1;
	sqlite3_stmt *st = store_prepare(s, "INSERT INTO jobs (type, guest, state, params,"
					 " created_ms) VALUES (?, ?, 'queued', ?, ?)");
	if (st) {
		sqlite3_bind_text(st, 1, type, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, guest, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 3, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 4, kvzd_now_ms());
		if (store_run_stmt(s, st) == 0)
			id = sqlite3_last_insert_rowid(s->db);
	}
	pthread_mutex_unlock(&s->lock);
	free(text);
	return id;
}

int store_job_save(struct store *s, const struct job_row *r)
{
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "UPDATE jobs SET state = ?, phase = ?, done = ?,"
					 " total = ?, rate = ?, error = ?, started_ms = ?,"
					 " ended_ms = ? WHERE id = ?");
	if (st) {
		sqlite3_bind_text(st, 1, r->state, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(st, 2, r->phase, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 3, (sqlite3_int64)r->done);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)r->total);
		sqlite3_bind_double(st, 5, r->rate);
		store_bind_opt_text(st, 6, r->error[0] ? r->error : NULL);
		sqlite3_bind_int64(st, 7, r->started_ms);
		sqlite3_bind_int64(st, 8, r->ended_ms);
		sqlite3_bind_int64(st, 9, r->id);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int store_job_set_result(struct store *s, int64_t id, json_t *result)
{
	char *text = json_dumps(result, JSON_COMPACT | JSON_SORT_KEYS);
	if (!text)
		return -1;
	pthread_mutex_lock(&s->lock);
	int rc = -1;
	sqlite3_stmt *st = store_prepare(s, "UPDATE jobs SET result = ? WHERE id = ?");
	if (st) {
		sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, id);
		rc = store_run_stmt(s, st);
	}
	pthread_mutex_unlock(&s->lock);
	free(text);
	return rc;
}

#define JOB_COLUMNS "id, type, guest, state, phase, done, total, rate, error, params," \
	" created_ms, started_ms, ended_ms, result"

static json_t *job_row_json(sqlite3_stmt *st)
{
	json_error_t jerr;
	json_t *params = json_loads((const char *)sqlite3_column_text(st, 9), 0, &jerr);
	const char *error = (const char *)sqlite3_column_text(st, 8);
	const char *rtext = (const char *)sqlite3_column_text(st, 13);
	json_t *result = rtext ? json_loads(rtext, 0, &jerr) : NULL;
	return json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:f, s:s?, s:o, s:I, s:I, s:I, s:o}",
			 "id", (json_int_t)sqlite3_column_int64(st, 0),
			 "type", (const char *)sqlite3_column_text(st, 1),
			 "guest", (const char *)sqlite3_column_text(st, 2),
			 "state", (const char *)sqlite3_column_text(st, 3),
			 "phase", (const char *)sqlite3_column_text(st, 4),
			 "done", (json_int_t)sqlite3_column_int64(st, 5),
			 "total", (json_int_t)sqlite3_column_int64(st, 6),
			 "rate", sqlite3_column_double(st, 7),
			 "error", error,
			 "params", params ? params : json_object(),
			 "created_ms", (json_int_t)sqlite3_column_int64(st, 10),
			 "started_ms", (json_int_t)sqlite3_column_int64(st, 11),
			 "ended_ms", (json_int_t)sqlite3_column_int64(st, 12),
			 "result", result ? result : json_null());
}

/* Jobs matching sql, whose ?1 is the guest (NULL: any) and ?2 the limit. */
static json_t *job_query(struct store *s, const char *sql, const char *guest, int limit)
{
	json_t *list = json_array();
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, sql);
	if (st) {
		store_bind_opt_text(st, 1, guest);
		sqlite3_bind_int(st, 2, limit);
		while (sqlite3_step(st) == SQLITE_ROW)
			json_array_append_new(list, job_row_json(st));
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return list;
}

json_t *store_job_get(struct store *s, int64_t id)
{
	json_t *job = NULL;
	pthread_mutex_lock(&s->lock);
	sqlite3_stmt *st = store_prepare(s, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?");
	if (st) {
		sqlite3_bind_int64(st, 1, id);
		if (sqlite3_step(st) == SQLITE_ROW)
			job = job_row_json(st);
		sqlite3_finalize(st);
	}
	pthread_mutex_unlock(&s->lock);
	return job;
}

json_t *store_job_list(struct store *s, const char *guest, int limit)
{
	return job_query(s, "SELECT * FROM (SELECT " JOB_COLUMNS " FROM jobs"
			 " WHERE (?1 IS NULL OR guest = ?1) ORDER BY id DESC LIMIT ?2)"
			 " ORDER BY id", guest, limit);
}

json_t *store_jobs_unfinished(struct store *s)
{
	return job_query(s, "SELECT " JOB_COLUMNS " FROM jobs WHERE (?1 IS NULL OR guest = ?1)"
			 " AND state IN ('queued', 'running') ORDER BY id LIMIT ?2", NULL, -1);
}
