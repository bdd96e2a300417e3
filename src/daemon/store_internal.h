/* What the store's files (store.c, store_jobs.c, store_snapshots.c) share;
 * nothing outside the store includes this. */
#ifndef KVZD_STORE_INTERNAL_H
#define KVZD_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

struct store {
	sqlite3 *db;
	pthread_mutex_t lock;   /* one statement at a time on db */
};

/* Both are called with s->lock held. NULL (logged) when sql is bad. */
sqlite3_stmt *store_prepare(struct store *s, const char *sql);
/* Steps a statement that returns no rows, then finalizes it. */
int store_run_stmt(struct store *s, sqlite3_stmt *st);

#endif
