/* Retention of snapshots and backups made by policy rules: keep the newest
 * keep_last, and for each of the last keep_daily UTC days (the day of now
 * and those before it) the newest one of that day too. Pure, so that unit
 * tests drive it with made-up times. */
#ifndef KVZD_POLICY_RETENTION_H
#define KVZD_POLICY_RETENTION_H

#include <stdint.h>

#include <jansson.h>

/* items: [{name, created_ms}] in any order (borrowed). The names of those
 * that go, oldest first (a new array). */
json_t *policy_retention_drop(json_t *items, int keep_last, int keep_daily, int64_t now_ms);

#endif
