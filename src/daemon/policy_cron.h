/* Schedules of policy rules in cron syntax (five fields: minute, hour,
 * day of month, month, day of week; "*", lists, ranges and steps; day of
 * week 0-7 with 0 and 7 Sunday). Times are UTC. */
#ifndef KVZD_POLICY_CRON_H
#define KVZD_POLICY_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct cron {
	uint64_t minute;   /* bit n: minute n */
	uint32_t hour;
	uint32_t mday;     /* bits 1..31 */
	uint16_t month;    /* bits 1..12 */
	uint8_t wday;      /* bits 0..6 */
	bool mday_any, wday_any; /* "*": cron ORs the two day fields unless one is "*" */
};

/* 0, or -1 with a message naming the field. */
int cron_parse(const char *spec, struct cron *c, char *err, size_t errlen);
/* Whether the minute holding t (seconds since the epoch) is scheduled. */
bool cron_matches(const struct cron *c, time_t t);
/* The first scheduled minute strictly after t, or -1 when none within
 * five years (e.g. "0 0 31 2 *"). */
time_t cron_next(const struct cron *c, time_t t);

#endif
