#include "policy_rules.h"

#include <ctype.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"

static const char *const levels[] = {"manual", "suggest", "automatic", NULL};
static const char *const events[] = {"crashed", "stopped_unexpectedly", "kvzd_restart",
				     "peer_unreachable", NULL};
static const char *const metrics[] = {"cpu_pct", "mem_pct", "disk_pct", "host_cpu_pct",
				      "mem_pressure", "net_rx_rate", "net_tx_rate", NULL};
static const char *const actions[] = {"restart", "set_cpus", "raise_memory", "balloon",
				      "snapshot", "stop", "notify", "migrate", "backup",
				      "webhook", "command", NULL};
/* The highest rate a rule may name: 100 GB/s. */
#define MAX_RATE 1e11
static const char *const types[] = {"any", "vm", "ct", NULL};

const char *policy_action_name(enum policy_action a)
{
	return actions[a];
}

const char *policy_event_name(enum policy_event e)
{
	return events[e];
}

const char *policy_metric_name(enum policy_metric m)
{
	return metrics[m];
}

bool policy_metric_is_rate(enum policy_metric m)
{
	return m == MET_NET_RX_RATE || m == MET_NET_TX_RATE;
}

static bool host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.';
}

bool policy_url_ok(const char *url, char *err, size_t errlen)
{
	const char *p = !strncmp(url, "http://", 7) ? url + 7 : !strncmp(url, "https://", 8) ? url + 8
											   : NULL;
	if (!p) {
		snprintf(err, errlen, "must start with http:// or https://");
		return false;
	}
	if (strlen(url) >= 512) {
		snprintf(err, errlen, "must be under 512 bytes");
		return false;
	}
	const char *h = p;
	if (*p == '[') {
		while (*++p && (isxdigit((unsigned char)*p) || *p == ':'))
			;
		if (*p++ != ']' || p - h < 4) {
			snprintf(err, errlen, "bad [IPv6] host");
			return false;
		}
	} else {
		while (host_char(*p))
			p++;
	}
	if (p == h) {
		snprintf(err, errlen, "has no host");
		return false;
	}
	if (*p == ':') {
		char *end;
		long port = strtol(p + 1, &end, 10);
		if (end == p + 1 || port < 1 || port > 65535) {
			snprintf(err, errlen, "bad port");
			return false;
		}
		p = end;
	}
	if (*p && *p != '/') {
		snprintf(err, errlen, "character '%c' after the host is not allowed", *p);
		return false;
	}
	for (; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '#') {
			snprintf(err, errlen, "the path may hold printable ASCII without spaces or '#'");
			return false;
		}
	}
	return true;
}

const char *policy_level_name(enum policy_level l)
{
	return levels[l];
}

static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
	char msg[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s: %s", path, msg);
	return -1;
}

/* Every key of obj must be in allowed. */
static int only_keys(json_t *obj, const char *path, const char *const *allowed,
		     char *err, size_t errlen)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v) {
		bool ok = false;
		for (int i = 0; allowed[i] && !ok; i++)
			ok = !strcmp(key, allowed[i]);
		if (!ok) {
			char p[160];
			snprintf(p, sizeof(p), "%s%s%.64s", path, *path ? "." : "", key);
			return fail(err, errlen, p, "unknown field");
		}
	}
	return 0;
}

/* An optional string among names; *out is left alone when absent. */
static int get_enum(json_t *obj, const char *key, const char *path, const char *const *names,
		    int *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	const char *s = json_string_value(v);
	for (int i = 0; s && names[i]; i++) {
		if (!strcmp(s, names[i])) {
			*out = i;
			return 0;
		}
	}
	char list[200] = "";
	for (int i = 0; names[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
			 i ? ", " : "", names[i]);
	return fail(err, errlen, path, "must be one of %s", list);
}

/* An optional integer in [min, max]. */
static int get_int(json_t *obj, const char *key, const char *path, int min, int max,
		   int *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return fail(err, errlen, path, "must be an integer from %d to %d", min, max);
	*out = (int)json_integer_value(v);
	return 0;
}

static int get_pct(json_t *obj, const char *key, const char *path, double *out,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	double d = json_number_value(v);
	if (!json_is_number(v) || !isfinite(d) || d < 0 || d > 100)
		return fail(err, errlen, path, "must be a number from 0 to 100");
	*out = d;
	return 0;
}

/* A metric's level: a percentage, or bytes/s for a rate. */
static int get_level(json_t *obj, const char *key, const char *path, enum policy_metric m,
		     double *out, char *err, size_t errlen)
{
	if (!policy_metric_is_rate(m))
		return get_pct(obj, key, path, out, err, errlen);
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	double d = json_number_value(v);
	if (!json_is_number(v) || !isfinite(d) || d < 0 || d > MAX_RATE)
		return fail(err, errlen, path,
			    "%s is in bytes per second: a number from 0 to 1e11 (not a percentage)",
			    metrics[m]);
	*out = d;
	return 0;
}

/* A string of at most cap-1 bytes without control characters. */
static int get_str(json_t *obj, const char *key, const char *path, char *out, size_t cap,
		   char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	const char *s = json_string_value(v);
	if (!s || json_string_length(v) >= cap || strlen(s) != json_string_length(v))
		return fail(err, errlen, path, "must be a string of at most %zu bytes", cap - 1);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return fail(err, errlen, path, "control characters are not allowed");
	snprintf(out, cap, "%s", s);
	return 0;
}

static int parse_trigger(json_t *t, struct policy_rule *r, char *err, size_t errlen)
{
	static const char *const keys[] = {"event", "metric", "above", "clear_below", "for_s",
					   "schedule", "failures", NULL};
	if (!json_is_object(t))
		return fail(err, errlen, "trigger", "must be an object");
	if (only_keys(t, "trigger", keys, err, errlen))
		return -1;
	int kinds = !!json_object_get(t, "event") + !!json_object_get(t, "metric") +
		    !!json_object_get(t, "schedule");
	if (kinds != 1)
		return fail(err, errlen, "trigger", "needs exactly one of event, metric, schedule");
	if (json_object_get(t, "event")) {
		r->trigger = TRIG_EVENT;
		int e = 0;
		if (get_enum(t, "event", "trigger.event", events, &e, err, errlen))
			return -1;
		r->event = (enum policy_event)e;
		r->failures = 3;
		if (get_int(t, "failures", "trigger.failures", 1, 10, &r->failures, err, errlen))
			return -1;
		if (r->event != EV_PEER_UNREACHABLE && json_object_get(t, "failures"))
			return fail(err, errlen, "trigger.failures", "goes with peer_unreachable only");
	} else if (json_object_get(t, "metric")) {
		r->trigger = TRIG_METRIC;
		int m = 0;
		if (get_enum(t, "metric", "trigger.metric", metrics, &m, err, errlen))
			return -1;
		r->metric = (enum policy_metric)m;
		if (!json_object_get(t, "above"))
			return fail(err, errlen, "trigger.above", "is required with metric");
		if (get_level(t, "above", "trigger.above", r->metric, &r->above, err, errlen))
			return -1;
		r->clear_below = r->above;
		r->for_s = 60;
		if (get_level(t, "clear_below", "trigger.clear_below", r->metric, &r->clear_below,
			      err, errlen) ||
		    get_int(t, "for_s", "trigger.for_s", 1, 86400, &r->for_s, err, errlen))
			return -1;
		if (r->clear_below > r->above)
			return fail(err, errlen, "trigger.clear_below", "must not be above trigger.above");
	} else {
		r->trigger = TRIG_SCHEDULE;
		char cerr[160];
		if (get_str(t, "schedule", "trigger.schedule", r->schedule, sizeof(r->schedule),
			    err, errlen))
			return -1;
		if (cron_parse(r->schedule, &r->cron, cerr, sizeof(cerr)))
			return fail(err, errlen, "trigger.schedule", "%s", cerr);
	}
	if (r->trigger != TRIG_METRIC && (json_object_get(t, "above") ||
					  json_object_get(t, "clear_below") ||
					  json_object_get(t, "for_s")))
		return fail(err, errlen, "trigger", "above, clear_below and for_s go with metric only");
	return 0;
}

/* "HH:MM" as minutes of the day. */
static int parse_hhmm(json_t *v, const char *path, int *out, char *err, size_t errlen)
{
	const char *s = json_string_value(v);
	unsigned h, m;
	char end;
	if (!s || strlen(s) != 5 || sscanf(s, "%2u:%2u%c", &h, &m, &end) != 2 || h > 23 || m > 59)
		return fail(err, errlen, path, "must be \"HH:MM\" (UTC)");
	*out = (int)(h * 60 + m);
	return 0;
}

static int parse_string_list(json_t *a, const char *path, char *out, size_t each, int cap,
			     int *n, bool names, char *err, size_t errlen)
{
	if (!json_is_array(a))
		return fail(err, errlen, path, "must be an array of strings");
	if ((int)json_array_size(a) > cap)
		return fail(err, errlen, path, "at most %d entries", cap);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) {
		char p[64];
		snprintf(p, sizeof(p), "%s[%zu]", path, i);
		const char *s = json_string_value(v);
		if (!s || !*s || json_string_length(v) >= each || strlen(s) != json_string_length(v))
			return fail(err, errlen, p, "must be a non-empty string under %zu bytes", each);
		for (const char *c = s; *c; c++) {
			bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
				  (*c >= '0' && *c <= '9') || strchr("-_.", *c) ||
				  (names && strchr("*?[]!", *c));
			if (!ok)
				return fail(err, errlen, p, "character '%c' is not allowed", *c);
		}
		snprintf(out + i * each, each, "%s", s);
	}
	*n = (int)json_array_size(a);
	return 0;
}

static int parse_conditions(json_t *c, struct policy_rule *r, char *err, size_t errlen)
{
	static const char *const keys[] = {"guests", "type", "tags", "from", "to", NULL};
	if (!c)
		return 0;
	if (!json_is_object(c))
		return fail(err, errlen, "conditions", "must be an object");
	if (only_keys(c, "conditions", keys, err, errlen))
		return -1;
	json_t *g = json_object_get(c, "guests"), *t = json_object_get(c, "tags");
	if (g && parse_string_list(g, "conditions.guests", &r->guests[0][0], sizeof(r->guests[0]),
				   POLICY_MAX_GUEST_PATTERNS, &r->nguests, true, err, errlen))
		return -1;
	if (t && parse_string_list(t, "conditions.tags", &r->tags[0][0], sizeof(r->tags[0]),
				   POLICY_MAX_TAGS, &r->ntags, false, err, errlen))
		return -1;
	int type = GT_ANY;
	if (get_enum(c, "type", "conditions.type", types, &type, err, errlen))
		return -1;
	r->type = (enum policy_guest_type)type;
	json_t *from = json_object_get(c, "from"), *to = json_object_get(c, "to");
	if (!from != !to)
		return fail(err, errlen, from ? "conditions.to" : "conditions.from",
			    "from and to go together");
	if (from && (parse_hhmm(from, "conditions.from", &r->from_min, err, errlen) ||
		     parse_hhmm(to, "conditions.to", &r->to_min, err, errlen)))
		return -1;
	return 0;
}

static int parse_webhook(json_t *a, struct policy_rule *r, char *err, size_t errlen)
{
	if (r->action != ACT_WEBHOOK)
		return 0;
	char why[160];
	if (!json_object_get(a, "url"))
		return fail(err, errlen, "action.url", "is required with webhook");
	if (get_str(a, "url", "action.url", r->url, sizeof(r->url), err, errlen))
		return -1;
	if (!policy_url_ok(r->url, why, sizeof(why)))
		return fail(err, errlen, "action.url", "%s", why);
	return 0;
}

/* argv: a list of strings, the first an absolute path; run without a
 * shell. */
static int parse_argv(json_t *a, struct policy_rule *r, char *err, size_t errlen)
{
	if (r->action != ACT_COMMAND)
		return 0;
	json_t *v = json_object_get(a, "argv");
	if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > POLICY_MAX_ARGV)
		return fail(err, errlen, "action.argv", "must be a list of 1 to %d strings",
			    POLICY_MAX_ARGV);
	size_t i;
	json_t *s;
	json_array_foreach(v, i, s) {
		char path[48];
		snprintf(path, sizeof(path), "action.argv[%zu]", i);
		json_t *one = json_pack("{s:O}", "x", s);
		int rc = json_is_string(s) && json_string_length(s)
				 ? get_str(one, "x", path, r->argv[i], sizeof(r->argv[i]), err, errlen)
				 : fail(err, errlen, path, "must be a non-empty string");
		json_decref(one);
		if (rc)
			return -1;
	}
	r->nargv = (int)json_array_size(v);
	if (r->argv[0][0] != '/' || strstr(r->argv[0], "/../") ||
	    (strlen(r->argv[0]) >= 3 && !strcmp(r->argv[0] + strlen(r->argv[0]) - 3, "/..")))
		return fail(err, errlen, "action.argv[0]", "must be an absolute path without ..");
	return 0;
}

static int parse_action(json_t *a, struct policy_rule *r, char *err, size_t errlen)
{
	static const char *const keys[] = {"type", "delta", "min", "max", "step_pct",
					   "keep_last", "keep_daily", "backoff_s", "message",
					   "url", "argv", "timeout_s", NULL};
	if (!json_is_object(a))
		return fail(err, errlen, "action", "must be an object");
	if (only_keys(a, "action", keys, err, errlen))
		return -1;
	if (!json_object_get(a, "type"))
		return fail(err, errlen, "action.type", "is required");
	int t = 0;
	if (get_enum(a, "type", "action.type", actions, &t, err, errlen))
		return -1;
	r->action = (enum policy_action)t;
	/* Each action takes only its own parameters (docs/policy.md). */
	static const char *const params[][4] = {
		[ACT_RESTART] = {"type", "backoff_s"},
		[ACT_SET_CPUS] = {"type", "delta", "min", "max"},
		[ACT_RAISE_MEMORY] = {"type", "step_pct"},
		[ACT_BALLOON] = {"type", "step_pct"},
		[ACT_SNAPSHOT] = {"type", "keep_last", "keep_daily"},
		[ACT_STOP] = {"type"},
		[ACT_NOTIFY] = {"type", "message"},
		[ACT_MIGRATE] = {"type"},
		[ACT_BACKUP] = {"type", "keep_last", "keep_daily"},
		[ACT_WEBHOOK] = {"type", "url", "timeout_s"},
		[ACT_COMMAND] = {"type", "argv", "timeout_s"},
	};
	const char *own[5] = {0};
	memcpy(own, params[t], sizeof(params[t]));
	if (only_keys(a, "action", own, err, errlen)) {
		size_t l = strlen(err);
		snprintf(err + l, errlen - l, " of %s", actions[t]);
		return -1;
	}
	r->cpus_delta = -1;
	r->cpus_min = 1;
	r->cpus_max = 256;
	r->step_pct = 10;
	r->keep_last = 3;
	r->backoff_s = 10;
	r->timeout_s = 10;
	if (get_int(a, "keep_daily", "action.keep_daily", 0, 366, &r->keep_daily, err, errlen) ||
	    get_int(a, "timeout_s", "action.timeout_s", 1, 60, &r->timeout_s, err, errlen) ||
	    parse_webhook(a, r, err, errlen) || parse_argv(a, r, err, errlen))
		return -1;
	if (get_int(a, "delta", "action.delta", -256, 256, &r->cpus_delta, err, errlen) ||
	    get_int(a, "min", "action.min", 1, 256, &r->cpus_min, err, errlen) ||
	    get_int(a, "max", "action.max", 1, 256, &r->cpus_max, err, errlen) ||
	    get_int(a, "step_pct", "action.step_pct", 1, 100, &r->step_pct, err, errlen) ||
	    get_int(a, "keep_last", "action.keep_last", 1, 1000, &r->keep_last, err, errlen) ||
	    get_int(a, "backoff_s", "action.backoff_s", 0, 86400, &r->backoff_s, err, errlen) ||
	    get_str(a, "message", "action.message", r->message, sizeof(r->message), err, errlen))
		return -1;
	if (r->action == ACT_SET_CPUS && r->cpus_delta == 0)
		return fail(err, errlen, "action.delta", "must not be 0");
	if (r->cpus_min > r->cpus_max)
		return fail(err, errlen, "action.min", "must not be above action.max");
	return 0;
}

static int parse_limits(json_t *l, struct policy_rule *r, char *err, size_t errlen)
{
	static const char *const keys[] = {"cooldown_s", "guest_cooldown_s", "max_per_period",
					   "period_s", NULL};
	r->cooldown_s = 0;
	r->guest_cooldown_s = 300;
	r->max_per_period = 3;
	r->period_s = 3600;
	if (!l)
		return 0;
	if (!json_is_object(l))
		return fail(err, errlen, "limits", "must be an object");
	return only_keys(l, "limits", keys, err, errlen) ||
	       get_int(l, "cooldown_s", "limits.cooldown_s", 0, 7 * 86400, &r->cooldown_s, err, errlen) ||
	       get_int(l, "guest_cooldown_s", "limits.guest_cooldown_s", 0, 7 * 86400,
		       &r->guest_cooldown_s, err, errlen) ||
	       get_int(l, "max_per_period", "limits.max_per_period", 1, 10000, &r->max_per_period,
		       err, errlen) ||
	       get_int(l, "period_s", "limits.period_s", 1, 30 * 86400, &r->period_s, err, errlen)
		       ? -1 : 0;
}

/* Actions that a rule of the host as a whole cannot take. */
static int check_fit(const struct policy_rule *r, char *err, size_t errlen)
{
	bool host = r->trigger == TRIG_METRIC && r->metric == MET_HOST_CPU_PCT;
	bool outside = r->action == ACT_NOTIFY || r->action == ACT_WEBHOOK ||
		       r->action == ACT_COMMAND;
	if (host && !outside && r->action != ACT_MIGRATE && !r->nguests)
		return fail(err, errlen, "conditions.guests",
			    "a host_cpu_pct rule acting on guests must name them");
	if (r->trigger == TRIG_EVENT && r->event == EV_PEER_UNREACHABLE && !outside)
		return fail(err, errlen, "action.type",
			    "a peer_unreachable rule acts on the host (@host): notify, webhook or "
			    "command");
	if (r->action == ACT_BACKUP && r->type == GT_VM)
		return fail(err, errlen, "action.type", "backup acts on containers (type ct)");
	if (r->action == ACT_SET_CPUS && r->type == GT_VM)
		return fail(err, errlen, "action.type", "set_cpus acts on containers (type ct)");
	if (r->action == ACT_BALLOON && r->type == GT_CT)
		return fail(err, errlen, "action.type", "balloon acts on VMs (type vm)");
	return 0;
}

int policy_rule_parse(json_t *in, struct policy_rule *r, char *err, size_t errlen)
{
	static const char *const keys[] = {"name", "level", "description", "trigger",
					   "conditions", "action", "limits", NULL};
	memset(r, 0, sizeof(*r));
	r->from_min = r->to_min = -1;
	if (!json_is_object(in))
		return fail(err, errlen, "(rule)", "must be a JSON object");
	if (only_keys(in, "", keys, err, errlen))
		return -1;
	const char *name = json_string_value(json_object_get(in, "name"));
	if (!name || strlen(name) >= sizeof(r->name) || !kvz_valid_name(name))
		return fail(err, errlen, "name", "is required: letters, digits, '-', '_', '.' (under %zu)",
			    sizeof(r->name));
	snprintf(r->name, sizeof(r->name), "%s", name);
	int level = POLICY_MANUAL;
	if (get_enum(in, "level", "level", levels, &level, err, errlen))
		return -1;
	r->level = (enum policy_level)level;
	json_t *d = json_object_get(in, "description");
	if (d && (!json_is_string(d) || json_string_length(d) > 1024))
		return fail(err, errlen, "description", "must be a string of at most 1024 bytes");
	if (!json_object_get(in, "trigger"))
		return fail(err, errlen, "trigger", "is required");
	if (!json_object_get(in, "action"))
		return fail(err, errlen, "action", "is required");
	if (parse_trigger(json_object_get(in, "trigger"), r, err, errlen) ||
	    parse_conditions(json_object_get(in, "conditions"), r, err, errlen) ||
	    parse_action(json_object_get(in, "action"), r, err, errlen) ||
	    parse_limits(json_object_get(in, "limits"), r, err, errlen))
		return -1;
	return check_fit(r, err, errlen);
}

static json_t *trigger_json(const struct policy_rule *r)
{
	switch (r->trigger) {
	case TRIG_EVENT:
		if (r->event == EV_PEER_UNREACHABLE)
			return json_pack("{s:s, s:i}", "event", events[r->event], "failures",
					 r->failures);
		return json_pack("{s:s}", "event", events[r->event]);
	case TRIG_METRIC:
		return json_pack("{s:s, s:f, s:f, s:i}", "metric", metrics[r->metric],
				 "above", r->above, "clear_below", r->clear_below, "for_s", r->for_s);
	case TRIG_SCHEDULE:
		break;
	}
	return json_pack("{s:s}", "schedule", r->schedule);
}

static json_t *conditions_json(const struct policy_rule *r)
{
	json_t *g = json_array(), *t = json_array();
	for (int i = 0; i < r->nguests; i++)
		json_array_append_new(g, json_string(r->guests[i]));
	for (int i = 0; i < r->ntags; i++)
		json_array_append_new(t, json_string(r->tags[i]));
	json_t *c = json_pack("{s:o, s:s, s:o}", "guests", g, "type", types[r->type], "tags", t);
	if (r->from_min >= 0) {
		char f[32], to[32];
		snprintf(f, sizeof(f), "%02d:%02d", r->from_min / 60, r->from_min % 60);
		snprintf(to, sizeof(to), "%02d:%02d", r->to_min / 60, r->to_min % 60);
		json_object_set_new(c, "from", json_string(f));
		json_object_set_new(c, "to", json_string(to));
	}
	return c;
}

static json_t *action_json(const struct policy_rule *r)
{
	json_t *a = json_pack("{s:s}", "type", actions[r->action]);
	switch (r->action) {
	case ACT_SET_CPUS:
		json_object_set_new(a, "delta", json_integer(r->cpus_delta));
		json_object_set_new(a, "min", json_integer(r->cpus_min));
		json_object_set_new(a, "max", json_integer(r->cpus_max));
		break;
	case ACT_RAISE_MEMORY:
	case ACT_BALLOON:
		json_object_set_new(a, "step_pct", json_integer(r->step_pct));
		break;
	case ACT_SNAPSHOT:
	case ACT_BACKUP:
		json_object_set_new(a, "keep_last", json_integer(r->keep_last));
		json_object_set_new(a, "keep_daily", json_integer(r->keep_daily));
		break;
	case ACT_WEBHOOK:
		json_object_set_new(a, "url", json_string(r->url));
		json_object_set_new(a, "timeout_s", json_integer(r->timeout_s));
		break;
	case ACT_COMMAND: {
		json_t *v = json_array();
		for (int i = 0; i < r->nargv; i++)
			json_array_append_new(v, json_string(r->argv[i]));
		json_object_set_new(a, "argv", v);
		json_object_set_new(a, "timeout_s", json_integer(r->timeout_s));
		break;
	}
	case ACT_RESTART:
		json_object_set_new(a, "backoff_s", json_integer(r->backoff_s));
		break;
	case ACT_NOTIFY:
		json_object_set_new(a, "message", json_string(r->message));
		break;
	case ACT_STOP:
	case ACT_MIGRATE:
		break;
	}
	return a;
}

json_t *policy_rule_json(const struct policy_rule *r)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:o, s:{s:i, s:i, s:i, s:i}}",
			 "name", r->name, "level", levels[r->level],
			 "trigger", trigger_json(r), "conditions", conditions_json(r),
			 "action", action_json(r), "limits",
			 "cooldown_s", r->cooldown_s, "guest_cooldown_s", r->guest_cooldown_s,
			 "max_per_period", r->max_per_period, "period_s", r->period_s);
}

/* Whether some guest name may match a pattern of both rules: a pattern of
 * one matches the other literally, or either rule selects every guest.
 * Errs towards "yes": a reported conflict can be resolved by renaming. */
static bool names_overlap(const struct policy_rule *a, const struct policy_rule *b)
{
	if (!a->nguests || !b->nguests)
		return true;
	for (int i = 0; i < a->nguests; i++)
		for (int j = 0; j < b->nguests; j++)
			if (!fnmatch(a->guests[i], b->guests[j], 0) ||
			    !fnmatch(b->guests[j], a->guests[i], 0))
				return true;
	return false;
}

static bool same_trigger(const struct policy_rule *a, const struct policy_rule *b)
{
	if (a->trigger != b->trigger)
		return false;
	if (a->trigger == TRIG_EVENT)
		return a->event == b->event;
	if (a->trigger == TRIG_METRIC)
		return a->metric == b->metric;
	return true;   /* two schedules may coincide */
}

/* Actions that change nothing of the guest's running (they record, copy
 * or tell the outside), so conflict with nothing. */
static bool side_effect_free(enum policy_action a)
{
	return a == ACT_NOTIFY || a == ACT_SNAPSHOT || a == ACT_BACKUP || a == ACT_WEBHOOK ||
	       a == ACT_COMMAND;
}

/* Actions that undo each other. */
static bool opposed(const struct policy_rule *a, const struct policy_rule *b)
{
	enum policy_action x = a->action, y = b->action;
	if ((x == ACT_RESTART && y == ACT_STOP) || (x == ACT_STOP && y == ACT_RESTART))
		return true;
	if (x == ACT_SET_CPUS && y == ACT_SET_CPUS)
		return (a->cpus_delta > 0) != (b->cpus_delta > 0);
	if ((x == ACT_RAISE_MEMORY && y == ACT_BALLOON) || (x == ACT_BALLOON && y == ACT_RAISE_MEMORY))
		return true;
	/* Two different changes to one guest on one trigger: which wins
	 * depends on order. */
	return x == y ? false : !side_effect_free(x) && !side_effect_free(y);
}

bool policy_rules_conflict(const struct policy_rule *a, const struct policy_rule *b,
			   char *msg, size_t msglen)
{
	bool types_overlap = a->type == GT_ANY || b->type == GT_ANY || a->type == b->type;
	if (!same_trigger(a, b) || !types_overlap || !names_overlap(a, b) || !opposed(a, b))
		return false;
	snprintf(msg, msglen, "rule %s (%s) and rule %s (%s) act on the same trigger and guests"
		 " in opposite ways", a->name, actions[a->action], b->name, actions[b->action]);
	return true;
}

bool policy_selects(const struct policy_rule *r, const char *name, const char *type,
		    json_t *tags)
{
	if (r->type != GT_ANY && strcmp(type, types[r->type]))
		return false;
	bool named = !r->nguests;
	for (int i = 0; i < r->nguests && !named; i++)
		named = !fnmatch(r->guests[i], name, 0);
	if (!named)
		return false;
	for (int i = 0; i < r->ntags; i++) {
		bool has = false;
		size_t k;
		json_t *t;
		json_array_foreach(tags, k, t)
			has = has || (json_is_string(t) && !strcmp(json_string_value(t), r->tags[i]));
		if (!has)
			return false;
	}
	return true;
}

bool policy_in_window(const struct policy_rule *r, int m)
{
	if (r->from_min < 0)
		return true;
	if (r->from_min <= r->to_min)
		return m >= r->from_min && m < r->to_min;
	return m >= r->from_min || m < r->to_min;
}
