/* What the store's files (store.c, store_jobs.c, store_snapshots.c, store_nodes.c,
 * store_policy.c) share;
 * nothing outside the store includes this. */
#ifndef KVZD_STORE_INTERNAL_H
#define KVZD_STORE_INTERNAL_H

#include <pthread.h>
#include <jansson.h>
#include <sqlite3.h>

struct store {
	sqlite3 *db;
	pthread_mutex_t lock;   /* one statement at a time on db */
};

/* Both are called with s->lock held. NULL (logged) when sql is bad. */
sqlite3_stmt *store_prepare(struct store *s, const char *sql);
/* Steps a statement that returns no rows, then finalizes it. */
int store_run_stmt(struct store *s, sqlite3_stmt *st);
/* Binds v to parameter i, or SQL NULL when v is NULL. */
void store_bind_opt_text(sqlite3_stmt *st, int i, const char *v);
/* The first row of a query's list (a new reference) or NULL; frees list:
 * the one-row get of a *_query that also serves the list. */
json_t *store_first_row(json_t *list);

#endif
