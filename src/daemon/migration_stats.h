/* A migrated guest's usage history, carried by the commit (migration.h). */
#ifndef KVZD_MIGRATION_STATS_H
#define KVZD_MIGRATION_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct store;

/* What the commit carries: {"samples": rows, "sample_disks": each row's
 * disks} (a new object). */
json_t *mig_stats_export(struct store *s, const char *name, int64_t now_ms);
/* body: the commit's (may be NULL; "sample_disks" optional, as an older
 * source sends none). Checks every row and its disks, then stores them
 * all, or none with err. No "samples": nothing to do. */
int mig_stats_import(struct store *s, const char *name, json_t *body, int64_t now_ms,
		     char *err, size_t errlen);

#endif
