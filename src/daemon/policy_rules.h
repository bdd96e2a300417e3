/* Policy rules (docs/policy.md): parsing and checking the JSON an operator
 * gives, and finding rules that would fight each other. Pure functions, no
 * daemon state, so that the rule fuzzer and unit tests link this alone. */
#ifndef KVZD_POLICY_RULES_H
#define KVZD_POLICY_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "policy_cron.h"

#define POLICY_MAX_GUEST_PATTERNS 16
#define POLICY_MAX_TAGS 8

enum policy_level { POLICY_MANUAL, POLICY_SUGGEST, POLICY_AUTOMATIC };
enum policy_trigger { TRIG_EVENT, TRIG_METRIC, TRIG_SCHEDULE };
enum policy_event { EV_CRASHED, EV_STOPPED_UNEXPECTEDLY, EV_KVZD_RESTART, EV_PEER_UNREACHABLE };
enum policy_metric {
	MET_CPU_PCT, MET_MEM_PCT, MET_DISK_PCT, MET_HOST_CPU_PCT,
	MET_MEM_PRESSURE, MET_NET_RX_RATE, MET_NET_TX_RATE,
};
enum policy_action {
	ACT_RESTART, ACT_SET_CPUS, ACT_RAISE_MEMORY, ACT_BALLOON, ACT_SNAPSHOT,
	ACT_STOP, ACT_NOTIFY, ACT_MIGRATE, ACT_BACKUP, ACT_WEBHOOK, ACT_COMMAND,
};
#define POLICY_MAX_ARGV 16
enum policy_guest_type { GT_ANY, GT_VM, GT_CT };

struct policy_rule {
	char name[64];
	enum policy_level level;
	enum policy_trigger trigger;
	/* TRIG_EVENT */
	enum policy_event event;
	int failures;     /* EV_PEER_UNREACHABLE: failed health checks in a row */
	/* TRIG_METRIC: fires once the metric has stayed above `above` for
	 * for_s seconds; rearms only after it fell below clear_below
	 * (hysteresis, defaults to above). */
	enum policy_metric metric;
	double above, clear_below;
	int for_s;
	/* TRIG_SCHEDULE */
	struct cron cron;
	char schedule[128];
	/* Conditions: guests whose name matches one pattern (glob; none: all),
	 * of a type, carrying every tag; between from_min and to_min minutes
	 * of the UTC day (to before from wraps over midnight; -1: any time). */
	char guests[POLICY_MAX_GUEST_PATTERNS][72];
	int nguests;
	enum policy_guest_type type;
	char tags[POLICY_MAX_TAGS][32];
	int ntags;
	int from_min, to_min;
	/* Action and its parameters (see docs/policy.md). */
	enum policy_action action;
	int cpus_delta, cpus_min, cpus_max;    /* ACT_SET_CPUS */
	int step_pct;                          /* ACT_RAISE_MEMORY, ACT_BALLOON */
	int keep_last, keep_daily;             /* ACT_SNAPSHOT, ACT_BACKUP */
	char url[512];                         /* ACT_WEBHOOK: http(s) */
	char argv[POLICY_MAX_ARGV][256];       /* ACT_COMMAND: argv[0] absolute */
	int nargv;
	int timeout_s;                         /* ACT_WEBHOOK, ACT_COMMAND */
	int backoff_s;                         /* ACT_RESTART: doubled each time */
	char message[256];                     /* ACT_NOTIFY */
	/* Limits: seconds between two firings of the rule (any guest) and on one
	 * guest; at most max_per_period actions per guest in period_s. */
	int cooldown_s, guest_cooldown_s, max_per_period, period_s;
};

/* Parses one rule; on error returns -1 with a message that starts with the
 * field's path ("trigger.above: ..."). Unknown fields are errors. */
int policy_rule_parse(json_t *in, struct policy_rule *r, char *err, size_t errlen);
/* The rule as canonical JSON (every default filled in): what the store
 * keeps and the API shows. */
json_t *policy_rule_json(const struct policy_rule *r);
/* Whether a and b may act on one guest in opposite ways at the same moment;
 * when so, why in msg. */
bool policy_rules_conflict(const struct policy_rule *a, const struct policy_rule *b,
			   char *msg, size_t msglen);
/* Whether the rule's guest conditions (names, type, tags) select guest. */
bool policy_selects(const struct policy_rule *r, const char *name, const char *type,
		    json_t *tags);
/* Whether minute-of-day m is inside the rule's time window. */
bool policy_in_window(const struct policy_rule *r, int m);

const char *policy_action_name(enum policy_action a);
const char *policy_metric_name(enum policy_metric m);
const char *policy_event_name(enum policy_event e);
/* Whether m is a rate in bytes/s (its above is not a percentage). */
bool policy_metric_is_rate(enum policy_metric m);
/* Whether url is "http://" or "https://" then a host (name, IPv4 or
 * [IPv6]), an optional :port and an optional path of printable ASCII
 * without spaces, under 512 bytes; why in err when not. */
bool policy_url_ok(const char *url, char *err, size_t errlen);
const char *policy_level_name(enum policy_level l);

#endif
