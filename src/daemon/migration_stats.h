/* A migrated guest's usage history, carried by the commit (migration.h). */
#ifndef KVZD_MIGRATION_STATS_H
#define KVZD_MIGRATION_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct store;

/* The rows to send (a new array). */
json_t *mig_stats_export(struct store *s, const char *name, int64_t now_ms);
/* Checks every row, then stores them all, or none with err. rows NULL:
 * nothing to do. */
int mig_stats_import(struct store *s, const char *name, json_t *rows, int64_t now_ms,
		     char *err, size_t errlen);

#endif
