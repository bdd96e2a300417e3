/* Unit tests of kvzd's policy rules (parsing, conflicts, cron) and engine
 * decisions (policy_eval.h) with a fake clock, fake metrics, fake events and
 * fake actions: every trigger type, hysteresis, cooldowns, restart backoff,
 * the count per period, the global cap, levels and failing actions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "policy_cron.h"
#include "policy_eval.h"
#include "policy_metrics.h"
#include "policy_placement.h"
#include "policy_retention.h"
#include "policy_rules.h"

/* ---- rules ---- */

static int parse(const char *text, struct policy_rule *r, char *err, size_t len)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	assert_non_null(j);
	int rc = policy_rule_parse(j, r, err, len);
	json_decref(j);
	return rc;
}

static void expect_error(const char *text, const char *prefix)
{
	struct policy_rule r;
	char err[300] = "";
	assert_int_equal(parse(text, &r, err, sizeof(err)), -1);
	if (strncmp(err, prefix, strlen(prefix)))
		fail_msg("error \"%s\" does not start with \"%s\"", err, prefix);
}

static void test_rule_errors_name_the_field(void **state)
{
	(void)state;
	expect_error("[]", "(rule)");
	expect_error("{\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"restart\"}}", "name:");
	expect_error("{\"name\":\"a b\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"restart\"}}", "name:");
	expect_error("{\"name\":\"a\",\"action\":{\"type\":\"restart\"}}", "trigger:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"}}", "action:");
	expect_error("{\"name\":\"a\",\"bogus\":1,\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"restart\"}}", "bogus:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"exploded\"},\"action\":{\"type\":\"restart\"}}", "trigger.event:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\",\"metric\":\"cpu_pct\"},\"action\":{\"type\":\"restart\"}}", "trigger:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"cpu_pct\"},\"action\":{\"type\":\"notify\"}}", "trigger.above:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"cpu_pct\",\"above\":101},\"action\":{\"type\":\"notify\"}}", "trigger.above:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"cpu_pct\",\"above\":50,\"clear_below\":60},\"action\":{\"type\":\"notify\"}}", "trigger.clear_below:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"cpu_pct\",\"above\":50,\"for_s\":0},\"action\":{\"type\":\"notify\"}}", "trigger.for_s:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"schedule\":\"61 * * * *\"},\"action\":{\"type\":\"snapshot\"}}", "trigger.schedule:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\",\"for_s\":3},\"action\":{\"type\":\"restart\"}}", "trigger:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"guests\":[\"a/b\"]},\"action\":{\"type\":\"restart\"}}", "conditions.guests[0]:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"type\":\"pod\"},\"action\":{\"type\":\"restart\"}}", "conditions.type:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"from\":\"25:00\",\"to\":\"01:00\"},\"action\":{\"type\":\"restart\"}}", "conditions.from:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"from\":\"01:00\"},\"action\":{\"type\":\"restart\"}}", "conditions.to:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"reboot\"}}", "action.type:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"set_cpus\",\"delta\":0}}", "action.delta:");
	/* A parameter of another action (found by the fuzzer: it was kept but
	 * not shown). */
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"snapshot\",\"max\":4}}", "action.max:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"set_cpus\",\"min\":4,\"max\":2}}", "action.min:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"notify\",\"message\":\"a\\nb\"}}", "action.message:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"restart\"},\"limits\":{\"max_per_period\":0}}", "limits.max_per_period:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"host_cpu_pct\",\"above\":90},\"action\":{\"type\":\"stop\"}}", "conditions.guests:");
}

static void test_rule_round_trip(void **state)
{
	(void)state;
	struct policy_rule r, r2;
	char err[300];
	assert_int_equal(parse("{\"name\":\"hot\",\"level\":\"automatic\",\"trigger\":{\"metric\":\"cpu_pct\","
			       "\"above\":80,\"clear_below\":60,\"for_s\":10},\"conditions\":{\"guests\":"
			       "[\"web-*\"],\"type\":\"ct\",\"from\":\"22:00\",\"to\":\"06:00\"},"
			       "\"action\":{\"type\":\"set_cpus\",\"delta\":-1,\"min\":1,\"max\":4}}",
			       &r, err, sizeof(err)), 0);
	json_t *j = policy_rule_json(&r);
	assert_int_equal(policy_rule_parse(j, &r2, err, sizeof(err)), 0);
	json_decref(j);
	assert_memory_equal(&r, &r2, sizeof(r));
	assert_true(policy_in_window(&r, 23 * 60));
	assert_true(policy_in_window(&r, 5 * 60 + 59));
	assert_false(policy_in_window(&r, 6 * 60));
	assert_false(policy_in_window(&r, 12 * 60));
	json_t *tags = json_array();
	assert_true(policy_selects(&r, "web-1", "ct", tags));
	assert_false(policy_selects(&r, "web-1", "vm", tags));
	assert_false(policy_selects(&r, "db-1", "ct", tags));
	json_decref(tags);
}

static void test_conflicts(void **state)
{
	(void)state;
	struct policy_rule a, b, c, d;
	char err[300], msg[300];
	assert_int_equal(parse("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"guests\":[\"web-*\"]},\"action\":{\"type\":\"restart\"}}", &a, err, sizeof(err)), 0);
	assert_int_equal(parse("{\"name\":\"b\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"guests\":[\"web-1\"]},\"action\":{\"type\":\"stop\"}}", &b, err, sizeof(err)), 0);
	assert_int_equal(parse("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"guests\":[\"db-1\"]},\"action\":{\"type\":\"stop\"}}", &c, err, sizeof(err)), 0);
	assert_int_equal(parse("{\"name\":\"d\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"notify\"}}", &d, err, sizeof(err)), 0);
	assert_true(policy_rules_conflict(&a, &b, msg, sizeof(msg)));
	assert_non_null(strstr(msg, "rule a"));
	assert_false(policy_rules_conflict(&a, &c, msg, sizeof(msg)));   /* other guests */
	assert_false(policy_rules_conflict(&a, &d, msg, sizeof(msg)));   /* notify is harmless */
	struct policy_rule up, down;
	assert_int_equal(parse("{\"name\":\"up\",\"trigger\":{\"metric\":\"cpu_pct\",\"above\":80},\"action\":{\"type\":\"set_cpus\",\"delta\":1}}", &up, err, sizeof(err)), 0);
	assert_int_equal(parse("{\"name\":\"down\",\"trigger\":{\"metric\":\"cpu_pct\",\"above\":90},\"action\":{\"type\":\"set_cpus\",\"delta\":-1}}", &down, err, sizeof(err)), 0);
	assert_true(policy_rules_conflict(&up, &down, msg, sizeof(msg)));
}

/* ---- cron ---- */

static time_t utc(int y, int mo, int d, int h, int mi)
{
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
	return timegm(&tm);
}

static void test_cron_parse(void **state)
{
	(void)state;
	struct cron c;
	char err[200];
	const char *bad[] = {"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
			     "* * 32 * *", "* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *",
			     "1,,2 * * * *", ",1 * * * *", "a * * * *", "100 * * * *", "1- * * * *", NULL};
	for (int i = 0; bad[i]; i++)
		if (!cron_parse(bad[i], &c, err, sizeof(err)))
			fail_msg("\"%s\" was accepted", bad[i]);
	assert_int_equal(cron_parse("*/15 0-6/2 1,15 * 1-5", &c, err, sizeof(err)), 0);
	assert_int_equal(c.minute, (1ull << 0) | (1ull << 15) | (1ull << 30) | (1ull << 45));
	assert_int_equal(c.hour, (1u << 0) | (1u << 2) | (1u << 4) | (1u << 6));
	assert_int_equal(cron_parse("0 0 * * 7", &c, err, sizeof(err)), 0);
	assert_int_equal(c.wday, 1);   /* 7 is Sunday */
	assert_int_equal(cron_parse("5/20 * * * *", &c, err, sizeof(err)), 0);
	assert_int_equal(c.minute, (1ull << 5) | (1ull << 25) | (1ull << 45));
}

static void test_cron_next(void **state)
{
	(void)state;
	struct cron c;
	char err[200];
	assert_int_equal(cron_parse("30 2 * * *", &c, err, sizeof(err)), 0);
	assert_int_equal(cron_next(&c, utc(2026, 12, 31, 3, 0)), utc(2027, 1, 1, 2, 30));
	assert_int_equal(cron_next(&c, utc(2026, 5, 1, 2, 30)), utc(2026, 5, 2, 2, 30));   /* strictly after */
	assert_true(cron_matches(&c, utc(2026, 5, 1, 2, 30) + 59));
	assert_false(cron_matches(&c, utc(2026, 5, 1, 2, 31)));
	/* Leap day: only in leap years. */
	assert_int_equal(cron_parse("0 0 29 2 *", &c, err, sizeof(err)), 0);
	assert_int_equal(cron_next(&c, utc(2025, 3, 1, 0, 0)), utc(2028, 2, 29, 0, 0));
	/* Never: 31 February. */
	assert_int_equal(cron_parse("0 0 31 2 *", &c, err, sizeof(err)), 0);
	assert_int_equal(cron_next(&c, utc(2026, 1, 1, 0, 0)), -1);
	/* Day of month OR day of week when both are restricted: the 13th or a Friday. */
	assert_int_equal(cron_parse("0 12 13 * 5", &c, err, sizeof(err)), 0);
	assert_int_equal(cron_next(&c, utc(2026, 11, 1, 0, 0)), utc(2026, 11, 6, 12, 0));   /* Friday */
	assert_int_equal(cron_next(&c, utc(2026, 11, 6, 12, 0)), utc(2026, 11, 13, 12, 0)); /* the 13th, also a Friday */
	assert_int_equal(cron_next(&c, utc(2026, 11, 13, 12, 0)), utc(2026, 11, 20, 12, 0));
	/* Restricted day of week with day of month "*": only that weekday. */
	assert_int_equal(cron_parse("0 0 * * 0", &c, err, sizeof(err)), 0);
	assert_int_equal(cron_next(&c, utc(2026, 12, 1, 0, 0)), utc(2026, 12, 6, 0, 0));
	/* Every minute over a year end. */
	assert_int_equal(cron_parse("* * * * *", &c, err, sizeof(err)), 0);
	assert_int_equal(cron_next(&c, utc(2026, 12, 31, 23, 59) + 30), utc(2027, 1, 1, 0, 0));
}

/* ---- engine ---- */

struct fake {
	int64_t now;
	json_t *guests;
	double cpu[4];           /* per guest index */
	double host_cpu;
	json_t *events;          /* appended by tests */
	int64_t next_event;
	int acts;
	char last_act[128];
	char last_reason[256];
	bool act_fails;
	double other[8];         /* metrics beyond cpu_pct, any guest */
	bool has_other[8];
	const char *missing;     /* metric_missing's answer for every metric */
	const char *describe;    /* describe's text; NULL: -1 "no node fits" */
	char states[64][16];     /* recorded states, in order */
	int nrec;
};

static int64_t f_now(void *ctx) { return ((struct fake *)ctx)->now; }
static json_t *f_guests(void *ctx) { return json_incref(((struct fake *)ctx)->guests); }

static int f_metric(void *ctx, const char *guest, enum policy_metric m, double *out)
{
	struct fake *f = ctx;
	if (!guest) {
		*out = f->host_cpu;
		return 0;
	}
	if (m != MET_CPU_PCT) {
		*out = f->other[m];
		return f->has_other[m] ? 0 : -1;
	}
	size_t i;
	json_t *g;
	json_array_foreach(f->guests, i, g)
		if (!strcmp(json_string_value(json_object_get(g, "name")), guest)) {
			*out = f->cpu[i];
			return 0;
		}
	return -1;
}

static int64_t f_cursor(void *ctx) { return ((struct fake *)ctx)->next_event - 1; }

static json_t *f_events(void *ctx, int64_t since)
{
	struct fake *f = ctx;
	json_t *out = json_array();
	size_t i;
	json_t *e;
	json_array_foreach(f->events, i, e)
		if (json_integer_value(json_object_get(e, "id")) > since)
			json_array_append(out, e);
	return out;
}

static int f_act(void *ctx, const struct policy_rule *r, const char *guest, const char *reason,
		 char *res, size_t len)
{
	struct fake *f = ctx;
	f->acts++;
	snprintf(f->last_act, sizeof(f->last_act), "%s %s", policy_action_name(r->action), guest);
	snprintf(f->last_reason, sizeof(f->last_reason), "%s", reason);
	snprintf(res, len, f->act_fails ? "boom" : "ok");
	return f->act_fails ? -1 : 0;
}

static void f_record(void *ctx, const struct policy_rule *r, const char *guest, const char *state,
		     const char *reason, const char *result)
{
	(void)r; (void)guest; (void)reason; (void)result;
	struct fake *f = ctx;
	if (f->nrec < 64)
		snprintf(f->states[f->nrec++], sizeof(f->states[0]), "%s", state);
}

static void add_event(struct fake *f, const char *guest, const char *type, const char *detail)
{
	json_array_append_new(f->events, json_pack("{s:I, s:s, s:s, s:s}", "id",
						   (json_int_t)f->next_event++, "guest", guest,
						   "type", type, "detail", detail));
}

static const char *f_missing(void *ctx, enum policy_metric m)
{
	(void)m;
	return ((struct fake *)ctx)->missing;
}

static int f_describe(void *ctx, const struct policy_rule *r, const char *guest, char *out,
		      size_t len)
{
	struct fake *f = ctx;
	(void)guest;
	if (r->action != ACT_MIGRATE) {
		out[0] = 0;
		return 0;
	}
	snprintf(out, len, "%s", f->describe ? f->describe : "no reachable node has 1G available");
	return f->describe ? 0 : -1;
}

static struct policy_env env_of(struct fake *f)
{
	return (struct policy_env){.ctx = f, .now_ms = f_now, .guests = f_guests,
				   .metric = f_metric, .event_cursor = f_cursor,
				   .events = f_events, .act = f_act, .record = f_record,
				   .metric_missing = f_missing, .describe = f_describe};
}

static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	f->now = (int64_t)utc(2026, 12, 1, 12, 0) * 1000;
	f->guests = json_pack("[{s:s, s:s, s:s}, {s:s, s:s, s:s}]",
			      "name", "ct1", "type", "ct", "state", "running",
			      "name", "vm1", "type", "vm", "state", "running");
	f->events = json_array();
	f->next_event = 1;
}

static void fake_free(struct fake *f)
{
	json_decref(f->guests);
	json_decref(f->events);
}

static struct policy_eval *engine(int cap, const char *rule_json)
{
	struct policy_rule r;
	char err[300];
	if (parse(rule_json, &r, err, sizeof(err)))
		fail_msg("rule: %s", err);
	struct policy_eval *e = policy_eval_new(cap);
	assert_non_null(e);
	assert_int_equal(policy_eval_set_rules(e, &r, 1), 0);
	return e;
}

/* Advances the clock by step_s seconds n times, ticking each time. */
static void run(struct policy_eval *e, struct fake *f, int n, int step_s)
{
	struct policy_env env = env_of(f);
	for (int i = 0; i < n; i++) {
		policy_eval_tick(e, &env);
		f->now += step_s * 1000LL;
	}
}

static void test_metric_window_and_hysteresis(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"hot\",\"level\":\"automatic\",\"trigger\":{\"metric\":"
				       "\"cpu_pct\",\"above\":80,\"clear_below\":50,\"for_s\":10},\"conditions\":"
				       "{\"type\":\"ct\"},\"action\":{\"type\":\"set_cpus\"},\"limits\":"
				       "{\"guest_cooldown_s\":0,\"max_per_period\":100}}");
	f.cpu[0] = 95;
	run(e, &f, 10, 1);              /* 0..9 s above: not yet */
	assert_int_equal(f.acts, 0);
	f.cpu[0] = 70;                  /* a dip resets the window */
	run(e, &f, 1, 1);
	f.cpu[0] = 95;
	run(e, &f, 10, 1);
	assert_int_equal(f.acts, 0);
	run(e, &f, 2, 1);               /* 10 s above */
	assert_int_equal(f.acts, 1);
	assert_string_equal(f.last_act, "set_cpus ct1");
	/* Hysteresis: stays quiet while above clear_below, even over 80 again. */
	f.cpu[0] = 60;
	run(e, &f, 3, 1);
	f.cpu[0] = 95;
	run(e, &f, 20, 1);
	assert_int_equal(f.acts, 1);
	f.cpu[0] = 40;                  /* rearms */
	run(e, &f, 1, 1);
	/* A gap in evaluation (the guest stopped) starts the window again. */
	f.cpu[0] = 95;
	run(e, &f, 5, 1);
	json_object_set_new(json_array_get(f.guests, 0), "state", json_string("stopped"));
	run(e, &f, 60, 1);
	json_object_set_new(json_array_get(f.guests, 0), "state", json_string("running"));
	run(e, &f, 2, 1);
	assert_int_equal(f.acts, 1);
	f.cpu[0] = 40;
	run(e, &f, 1, 1);
	f.cpu[0] = 95;
	run(e, &f, 12, 1);
	assert_int_equal(f.acts, 2);
	policy_eval_free(e);
	fake_free(&f);
}

static void test_host_metric(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"host\",\"level\":\"automatic\",\"trigger\":{\"metric\":"
				       "\"host_cpu_pct\",\"above\":90,\"for_s\":5},\"action\":{\"type\":\"notify\","
				       "\"message\":\"busy\"}}");
	f.host_cpu = 99;
	run(e, &f, 7, 1);
	assert_int_equal(f.acts, 1);
	assert_string_equal(f.last_act, "notify @host");
	policy_eval_free(e);
	fake_free(&f);
}

static void test_crash_restart_backoff_and_max(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"crash\",\"level\":\"automatic\",\"trigger\":{\"event\":"
				       "\"crashed\"},\"action\":{\"type\":\"restart\",\"backoff_s\":10},"
				       "\"limits\":{\"guest_cooldown_s\":0,\"max_per_period\":3,\"period_s\":3600}}");
	run(e, &f, 1, 1);             /* first tick: takes the event cursor */
	add_event(&f, "ct1", "crashed", "killed");
	run(e, &f, 1, 1);
	assert_int_equal(f.acts, 1);
	add_event(&f, "ct1", "crashed", "killed");
	run(e, &f, 5, 1);             /* backoff 10 s after the first restart */
	assert_int_equal(f.acts, 1);
	run(e, &f, 6, 1);
	assert_int_equal(f.acts, 2);
	add_event(&f, "ct1", "crashed", "killed");
	run(e, &f, 15, 1);            /* backoff doubles: 20 s */
	assert_int_equal(f.acts, 2);
	run(e, &f, 6, 1);
	assert_int_equal(f.acts, 3);
	add_event(&f, "ct1", "crashed", "killed");
	run(e, &f, 100, 1);           /* at most 3 per hour: given up, recorded */
	assert_int_equal(f.acts, 3);
	assert_string_equal(f.states[f.nrec - 1], "skipped");
	/* Events of other types and of stops by request do nothing. */
	add_event(&f, "ct1", "stopped", "forced");
	add_event(&f, "ct1", "started", "");
	run(e, &f, 2, 1);
	assert_int_equal(f.acts, 3);
	policy_eval_free(e);
	fake_free(&f);
}

static void test_failing_action_retried_within_limits(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"down\",\"level\":\"automatic\",\"trigger\":{\"event\":"
				       "\"stopped_unexpectedly\"},\"action\":{\"type\":\"restart\",\"backoff_s\":0},"
				       "\"limits\":{\"guest_cooldown_s\":5,\"max_per_period\":3}}");
	run(e, &f, 1, 1);
	f.act_fails = true;
	add_event(&f, "vm1", "stopped", "guest shut down");
	run(e, &f, 30, 1);
	assert_int_equal(f.acts, 3);   /* 3 tries, 5 s apart, then given up */
	assert_string_equal(f.states[0], "failed");
	assert_string_equal(f.states[f.nrec - 1], "skipped");
	policy_eval_free(e);
	fake_free(&f);
}

static void test_kvzd_restart_trigger(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	add_event(&f, "ct1", "crashed", "old");   /* before kvzd started: ignored */
	struct policy_eval *e = engine(0, "{\"name\":\"boot\",\"level\":\"automatic\",\"trigger\":{\"event\":"
				       "\"kvzd_restart\"},\"conditions\":{\"type\":\"vm\"},\"action\":{\"type\":"
				       "\"snapshot\"}}");
	run(e, &f, 3, 1);
	assert_int_equal(f.acts, 1);
	assert_string_equal(f.last_act, "snapshot vm1");
	policy_eval_free(e);
	fake_free(&f);
}

static void test_schedule_and_plan_at(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	f.now = (int64_t)utc(2026, 12, 1, 2, 58) * 1000;
	struct policy_eval *e = engine(0, "{\"name\":\"nightly\",\"level\":\"automatic\",\"trigger\":"
				       "{\"schedule\":\"0 3 * * *\"},\"conditions\":{\"guests\":[\"vm*\"]},"
				       "\"action\":{\"type\":\"snapshot\",\"keep_last\":3},\"limits\":"
				       "{\"guest_cooldown_s\":0,\"max_per_period\":10}}");
	struct policy_env env = env_of(&f);
	json_t *plan = policy_eval_plan(e, &env, 0);
	assert_int_equal(json_array_size(plan), 0);
	json_decref(plan);
	plan = policy_eval_plan(e, &env, (int64_t)utc(2026, 12, 1, 3, 0) * 1000);
	assert_int_equal(json_array_size(plan), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(plan, 0), "would")), "act");
	json_decref(plan);
	assert_int_equal(f.acts, 0);    /* a plan does nothing */
	run(e, &f, 240, 1);             /* 02:58 .. 03:02: once at 03:00 */
	assert_int_equal(f.acts, 1);
	f.now = (int64_t)utc(2026, 12, 2, 3, 0) * 1000 + 30000;
	run(e, &f, 1, 1);
	assert_int_equal(f.acts, 2);
	policy_eval_free(e);
	fake_free(&f);
}

static void test_rule_cooldown(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"n\",\"level\":\"automatic\",\"trigger\":{\"event\":"
				       "\"crashed\"},\"action\":{\"type\":\"notify\"},\"limits\":{\"cooldown_s\":60,"
				       "\"guest_cooldown_s\":0,\"max_per_period\":100}}");
	run(e, &f, 1, 1);
	add_event(&f, "ct1", "crashed", "");
	add_event(&f, "vm1", "crashed", "");
	run(e, &f, 30, 1);
	assert_int_equal(f.acts, 1);    /* the rule cooldown holds vm1 back */
	struct policy_env env = env_of(&f);
	json_t *plan = policy_eval_plan(e, &env, 0);
	assert_int_equal(json_array_size(plan), 1);
	assert_non_null(strstr(json_string_value(json_object_get(json_array_get(plan, 0), "would")),
			       "rule cooldown"));
	json_decref(plan);
	run(e, &f, 31, 1);
	assert_int_equal(f.acts, 2);
	policy_eval_free(e);
	fake_free(&f);
}

static void test_global_cap(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	json_decref(f.guests);
	f.guests = json_array();
	for (int i = 0; i < 10; i++) {
		char n[16];
		snprintf(n, sizeof(n), "g%d", i);
		json_array_append_new(f.guests, json_pack("{s:s, s:s, s:s}", "name", n, "type", "ct",
							  "state", "stopped"));
	}
	struct policy_eval *e = engine(4, "{\"name\":\"n\",\"level\":\"automatic\",\"trigger\":{\"event\":"
				       "\"crashed\"},\"action\":{\"type\":\"restart\"},\"limits\":"
				       "{\"guest_cooldown_s\":0}}");
	run(e, &f, 1, 1);
	for (int i = 0; i < 10; i++) {
		char n[16];
		snprintf(n, sizeof(n), "g%d", i);
		add_event(&f, n, "crashed", "");
	}
	run(e, &f, 59, 1);
	assert_int_equal(f.acts, 4);
	run(e, &f, 2, 1);               /* a minute after the first four */
	assert_int_equal(f.acts, 8);
	run(e, &f, 60, 1);
	assert_int_equal(f.acts, 10);
	policy_eval_free(e);
	fake_free(&f);
}

static void test_levels(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"s\",\"level\":\"suggest\",\"trigger\":{\"event\":"
				       "\"crashed\"},\"action\":{\"type\":\"restart\"}}");
	run(e, &f, 1, 1);
	add_event(&f, "ct1", "crashed", "");
	run(e, &f, 5, 1);
	assert_int_equal(f.acts, 0);
	assert_int_equal(f.nrec, 1);
	assert_string_equal(f.states[0], "proposed");
	policy_eval_free(e);
	e = engine(0, "{\"name\":\"m\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"stop\"}}");
	run(e, &f, 1, 1);
	add_event(&f, "ct1", "crashed", "");
	run(e, &f, 5, 1);
	assert_int_equal(f.acts, 0);
	assert_string_equal(f.states[f.nrec - 1], "planned");
	policy_eval_free(e);
	fake_free(&f);
}

static const char *would(json_t *plan, size_t i)
{
	return json_string_value(json_object_get(json_array_get(plan, i), "would"));
}

/* The plan names the node and its figures, or says why none fits; a run
 * carries the action out (the daemon's act picks the node again). */
static void test_migrate_plan_names_node(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"mig\",\"level\":\"automatic\",\"trigger\":{\"metric\":"
				       "\"cpu_pct\",\"above\":50,\"for_s\":1},\"conditions\":{\"type\":\"vm\"},"
				       "\"action\":{\"type\":\"migrate\"}}");
	f.cpu[1] = 90;
	struct policy_env env = env_of(&f);
	run(e, &f, 1, 1);
	json_t *plan = policy_eval_plan(e, &env, 0);
	assert_int_equal(json_array_size(plan), 1);
	assert_string_equal(would(plan, 0), "unavailable: no reachable node has 1G available");
	json_decref(plan);
	f.describe = "to n2 (75% of 4 CPUs idle, 3G available, needs 1G)";
	plan = policy_eval_plan(e, &env, 0);
	assert_string_equal(would(plan, 0), "act: to n2 (75% of 4 CPUs idle, 3G available, needs 1G)");
	json_decref(plan);
	run(e, &f, 2, 1);
	assert_int_equal(f.acts, 1);
	assert_string_equal(f.last_act, "migrate vm1");
	assert_string_equal(f.states[0], "done");
	policy_eval_free(e);
	fake_free(&f);
}

static json_t *node(const char *name, bool up, int cpus, double idle, long long avail)
{
	return up ? json_pack("{s:s, s:b, s:i, s:f, s:I}", "name", name, "reachable", 1, "cpus",
			      cpus, "cpus_idle", idle, "mem_available", (json_int_t)avail)
		  : json_pack("{s:s, s:b}", "name", name, "reachable", 0);
}

static void test_pick_node(void **state)
{
	(void)state;
	char name[64], why[300];
	json_t *nodes = json_array();
	assert_int_equal(policy_pick_node(nodes, 1 << 30, name, sizeof(name), why, sizeof(why)), -1);
	assert_string_equal(why, "no node in the registry (kvz node add)");
	json_array_append_new(nodes, node("down", false, 0, 0, 0));
	assert_int_equal(policy_pick_node(nodes, 1 << 30, name, sizeof(name), why, sizeof(why)), -1);
	assert_string_equal(why, "none of 1 node(s) is reachable");
	json_array_append_new(nodes, node("busy", true, 8, 1.0, 8LL << 30));    /* 12% idle */
	json_array_append_new(nodes, node("idle-small", true, 4, 4.0, 512LL << 20));
	json_array_append_new(nodes, node("half", true, 2, 1.0, 4LL << 30));    /* 50% idle */
	/* The idlest node lacks the memory: the next idlest that fits. */
	assert_int_equal(policy_pick_node(nodes, 1 << 30, name, sizeof(name), why, sizeof(why)), 0);
	assert_string_equal(name, "half");
	assert_non_null(strstr(why, "to half (50% of 2 CPUs idle"));
	assert_non_null(strstr(why, "needs 1G"));
	assert_int_equal(policy_pick_node(nodes, 256 << 20, name, sizeof(name), why, sizeof(why)), 0);
	assert_string_equal(name, "idle-small");
	assert_int_equal(policy_pick_node(nodes, 16LL << 30, name, sizeof(name), why, sizeof(why)), -1);
	assert_string_equal(why, "no reachable node has 16G of memory available");
	json_decref(nodes);
	json_t *g = json_pack("{s:{s:I, s:I}}", "config", "memory_soft", (json_int_t)(64 << 20),
			      "memory_hard", (json_int_t)(128 << 20));
	assert_int_equal(policy_guest_need(g), 128 << 20);
	json_decref(g);
}

static void test_mem_pressure_and_net_rate_triggers(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"psi\",\"level\":\"automatic\",\"trigger\":{\"metric\":"
				       "\"mem_pressure\",\"above\":20,\"clear_below\":5,\"for_s\":3},"
				       "\"conditions\":{\"type\":\"ct\"},\"action\":{\"type\":\"raise_memory\"}}");
	f.other[MET_MEM_PRESSURE] = 35.5;
	f.has_other[MET_MEM_PRESSURE] = true;
	run(e, &f, 3, 1);
	assert_int_equal(f.acts, 0);     /* 2 s of 3 */
	run(e, &f, 2, 1);
	assert_int_equal(f.acts, 1);
	assert_string_equal(f.last_act, "raise_memory ct1");
	assert_non_null(strstr(f.last_reason, "mem_pressure 35.5 > 20.0"));
	f.other[MET_MEM_PRESSURE] = 10;  /* not below clear_below: stays quiet */
	run(e, &f, 2, 1);
	f.other[MET_MEM_PRESSURE] = 35;
	run(e, &f, 10, 1);
	assert_int_equal(f.acts, 1);
	/* A cgroup v1 host: the plan says so and nothing fires. */
	f.missing = "mem_pressure needs cgroup v2";
	struct policy_env env = env_of(&f);
	json_t *plan = policy_eval_plan(e, &env, 0);
	assert_int_equal(json_array_size(plan), 1);
	assert_string_equal(would(plan, 0), "unavailable: mem_pressure needs cgroup v2");
	json_decref(plan);
	policy_eval_free(e);

	f.missing = NULL;
	e = engine(0, "{\"name\":\"rx\",\"level\":\"automatic\",\"trigger\":{\"metric\":\"net_rx_rate\","
		      "\"above\":1000000,\"for_s\":2},\"conditions\":{\"guests\":[\"vm1\"]},"
		      "\"action\":{\"type\":\"notify\",\"message\":\"busy\"}}");
	f.other[MET_NET_RX_RATE] = 999999;
	f.has_other[MET_NET_RX_RATE] = true;
	run(e, &f, 5, 1);
	assert_int_equal(f.acts, 1);     /* the first rule's act only */
	f.other[MET_NET_RX_RATE] = 2.5e6;
	run(e, &f, 3, 1);
	assert_int_equal(f.acts, 2);
	assert_non_null(strstr(f.last_reason, "net_rx_rate 2500000.0 > 1000000.0"));
	policy_eval_free(e);
	fake_free(&f);
	/* Rates are bytes/s, not percentages. */
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"net_tx_rate\",\"above\":\"80%\"},\"action\":{\"type\":\"notify\"}}",
		     "trigger.above: net_tx_rate is in bytes per second");
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"net_tx_rate\",\"above\":2e11},\"action\":{\"type\":\"notify\"}}",
		     "trigger.above:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"metric\":\"mem_pressure\",\"above\":200},\"action\":{\"type\":\"notify\"}}",
		     "trigger.above: must be a number from 0 to 100");
}

static void test_metric_parsers(void **state)
{
	(void)state;
	double v = -1;
	assert_int_equal(policy_psi_some_avg10("some avg10=12.50 avg60=3.00 avg300=1.00 total=5\n"
					       "full avg10=1.00 avg60=0.00 avg300=0.00 total=1\n", &v), 0);
	assert_true(v == 12.5);
	assert_int_equal(policy_psi_some_avg10("full avg10=1.00\n", &v), -1);
	assert_int_equal(policy_psi_some_avg10("xsome avg10=1.00\n", &v), -1);
	assert_int_equal(policy_psi_some_avg10("some avg10=abc\n", &v), -1);
	char dir[256];
	assert_int_equal(policy_ct_cgroup_dir("12:memory:/x\n0::/system.slice/kvzd.service/kvz/_supervisors\n",
					      "web1", dir, sizeof(dir)), 0);
	assert_string_equal(dir, "/sys/fs/cgroup/system.slice/kvzd.service/kvz/web1");
	assert_int_equal(policy_ct_cgroup_dir("0::/\n", "web1", dir, sizeof(dir)), -1);
	assert_int_equal(policy_ct_cgroup_dir("3:cpu:/kvz/_supervisors\n", "web1", dir, sizeof(dir)), -1);
	assert_int_equal(policy_ct_cgroup_dir("0::/kvz/_supervisors", "web1", dir, 10), -1);
	json_t *s = json_pack("[{s:I, s:I, s:I}, {s:I, s:I, s:I}]", "ts_ms", (json_int_t)1000, "net_rx",
			      (json_int_t)5000, "net_tx", (json_int_t)0, "ts_ms", (json_int_t)3000,
			      "net_rx", (json_int_t)9000, "net_tx", (json_int_t)100);
	assert_int_equal(policy_net_rate(s, true, &v), 0);
	assert_true(v == 2000.0);
	assert_int_equal(policy_net_rate(s, false, &v), 0);
	assert_true(v == 50.0);
	/* A counter that went back (the guest restarted) gives no rate. */
	json_object_set_new(json_array_get(s, 1), "net_rx", json_integer(10));
	assert_int_equal(policy_net_rate(s, true, &v), -1);
	json_array_remove(s, 1);
	assert_int_equal(policy_net_rate(s, true, &v), -1);
	json_decref(s);
}

static void test_peer_unreachable_trigger(void **state)
{
	(void)state;
	struct fake f;
	fake_init(&f);
	struct policy_eval *e = engine(0, "{\"name\":\"peer\",\"level\":\"automatic\",\"trigger\":{\"event\":"
				       "\"peer_unreachable\",\"failures\":3},\"action\":{\"type\":\"notify\","
				       "\"message\":\"node down\"}}");
	run(e, &f, 1, 1);
	add_event(&f, "@nodes", "node-unreachable", "n1 1");
	add_event(&f, "@nodes", "node-unreachable", "n1 2");
	add_event(&f, "@nodes", "node-unreachable", "garbage");
	run(e, &f, 2, 1);
	assert_int_equal(f.acts, 0);
	add_event(&f, "@nodes", "node-unreachable", "n1 3");
	run(e, &f, 2, 1);
	assert_int_equal(f.acts, 1);
	assert_string_equal(f.last_act, "notify @host");
	assert_string_equal(f.last_reason, "event peer_unreachable (n1: 3 failed health checks)");
	policy_eval_free(e);
	fake_free(&f);
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"peer_unreachable\"},\"action\":{\"type\":\"restart\"}}",
		     "action.type: a peer_unreachable rule acts on the host");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"peer_unreachable\",\"failures\":0},\"action\":{\"type\":\"notify\"}}",
		     "trigger.failures:");
	expect_error("{\"name\":\"a\",\"trigger\":{\"event\":\"crashed\",\"failures\":2},\"action\":{\"type\":\"notify\"}}",
		     "trigger.failures: goes with peer_unreachable only");
}

static void test_webhook_and_command_rules(void **state)
{
	(void)state;
	static const char *const bad_urls[][2] = {
		{"ftp://x/", "must start with http:// or https://"},
		{"http://", "has no host"},
		{"http://a b/", "character ' ' after the host"},
		{"http://h:0/", "bad port"},
		{"http://h:99999/", "bad port"},
		{"https://h/p q", "the path may hold"},
		{"http://h/#frag", "the path may hold"},
		{"http://[zz]/", "bad [IPv6] host"},
	};
	char text[400], want[200];
	for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
		snprintf(text, sizeof(text), "{\"name\":\"w\",\"trigger\":{\"event\":\"crashed\"},"
			 "\"action\":{\"type\":\"webhook\",\"url\":\"%s\"}}", bad_urls[i][0]);
		snprintf(want, sizeof(want), "action.url: %s", bad_urls[i][1]);
		expect_error(text, want);
	}
	expect_error("{\"name\":\"w\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"webhook\"}}",
		     "action.url: is required");
	expect_error("{\"name\":\"w\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"webhook\",\"url\":\"http://h/\",\"timeout_s\":0}}",
		     "action.timeout_s:");
	expect_error("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"command\",\"argv\":[\"bin/x\"]}}",
		     "action.argv[0]: must be an absolute path");
	expect_error("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"command\",\"argv\":[\"/a/../b\"]}}",
		     "action.argv[0]: must be an absolute path");
	expect_error("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"command\",\"argv\":[]}}",
		     "action.argv: must be a list");
	expect_error("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"command\",\"argv\":\"/bin/true\"}}",
		     "action.argv: must be a list");
	expect_error("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"command\",\"argv\":[\"/bin/echo\",3]}}",
		     "action.argv[1]: must be a non-empty string");
	expect_error("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"command\",\"argv\":[\"/bin/echo\",\"a\\nb\"]}}",
		     "action.argv[1]: control characters");
	expect_error("{\"name\":\"c\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"command\",\"argv\":[\"/bin/true\"],\"url\":\"http://h/\"}}",
		     "action.url: unknown field of command");
	expect_error("{\"name\":\"b\",\"trigger\":{\"event\":\"crashed\"},\"conditions\":{\"type\":\"vm\"},\"action\":{\"type\":\"backup\"}}",
		     "action.type: backup acts on containers");
	/* Round trip, and a command on the host as a whole is allowed. */
	struct policy_rule r, r2;
	char err[300];
	assert_int_equal(parse("{\"name\":\"c\",\"trigger\":{\"metric\":\"host_cpu_pct\",\"above\":90},"
			       "\"action\":{\"type\":\"command\",\"argv\":[\"/usr/bin/logger\",\"-t\",\"kvz\"],"
			       "\"timeout_s\":5}}", &r, err, sizeof(err)), 0);
	assert_int_equal(r.nargv, 3);
	assert_string_equal(r.argv[2], "kvz");
	json_t *j = policy_rule_json(&r);
	assert_int_equal(policy_rule_parse(j, &r2, err, sizeof(err)), 0);
	json_decref(j);
	assert_memory_equal(&r, &r2, sizeof(r));
	assert_int_equal(parse("{\"name\":\"w\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":"
			       "\"webhook\",\"url\":\"https://[::1]:8443/hook?x=1\"}}", &r, err, sizeof(err)), 0);
	assert_int_equal(r.timeout_s, 10);
	/* Backups, webhooks and commands fight nothing. */
	assert_int_equal(parse("{\"name\":\"b\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"backup\","
			       "\"keep_last\":2,\"keep_daily\":7}}", &r2, err, sizeof(err)), 0);
	assert_int_equal(r2.keep_daily, 7);
	struct policy_rule stop;
	assert_int_equal(parse("{\"name\":\"s\",\"trigger\":{\"event\":\"crashed\"},\"action\":{\"type\":\"stop\"}}",
			       &stop, err, sizeof(err)), 0);
	assert_false(policy_rules_conflict(&r, &stop, err, sizeof(err)));
	assert_false(policy_rules_conflict(&r2, &stop, err, sizeof(err)));
}

static json_t *item(const char *name, int64_t ms)
{
	return json_pack("{s:s, s:I}", "name", name, "created_ms", (json_int_t)ms);
}

static char *names(json_t *a)
{
	static char buf[300];
	buf[0] = 0;
	size_t i;
	json_t *n;
	json_array_foreach(a, i, n)
		snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s", i ? " " : "",
			 json_string_value(n));
	return buf;
}

static void test_retention(void **state)
{
	(void)state;
	int64_t day = 86400000LL, now = (int64_t)utc(2026, 12, 10, 12, 0) * 1000;
	json_t *items = json_array();
	for (int i = 0; i < 5; i++) {
		char n[8];
		snprintf(n, sizeof(n), "b%d", i);
		json_array_append_new(items, item(n, now - (5 - i) * 60000));
	}
	json_t *drop = policy_retention_drop(items, 3, 0, now);
	assert_string_equal(names(drop), "b0 b1");
	json_decref(drop);
	json_decref(items);
	/* Two a day for five days (09:00 and 18:00 UTC), plus today's 06:00:
	 * keep_last 2 and keep_daily 3 keep today's newest two and the 18:00
	 * one of each of the two days before. */
	items = json_array();
	for (int d = 5; d >= 1; d--) {
		char n[16];
		snprintf(n, sizeof(n), "d%d-09", d);
		json_array_append_new(items, item(n, now - d * day - 3 * 3600000LL));
		snprintf(n, sizeof(n), "d%d-18", d);
		json_array_append_new(items, item(n, now - d * day + 6 * 3600000LL));
	}
	json_array_append_new(items, item("today-06", now - 6 * 3600000LL));
	json_array_append_new(items, item("today-11", now - 3600000LL));
	drop = policy_retention_drop(items, 2, 3, now);
	assert_string_equal(names(drop), "d5-09 d5-18 d4-09 d4-18 d3-09 d3-18 d2-09 d1-09");
	json_decref(drop);
	/* keep_last covers a day's newest: daily adds only older days. */
	drop = policy_retention_drop(items, 1, 2, now);
	assert_string_equal(names(drop), "d5-09 d5-18 d4-09 d4-18 d3-09 d3-18 d2-09 d2-18 d1-09 today-06");
	json_decref(drop);
	json_decref(items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_errors_name_the_field),
		cmocka_unit_test(test_rule_round_trip),
		cmocka_unit_test(test_conflicts),
		cmocka_unit_test(test_cron_parse),
		cmocka_unit_test(test_cron_next),
		cmocka_unit_test(test_metric_window_and_hysteresis),
		cmocka_unit_test(test_host_metric),
		cmocka_unit_test(test_crash_restart_backoff_and_max),
		cmocka_unit_test(test_failing_action_retried_within_limits),
		cmocka_unit_test(test_kvzd_restart_trigger),
		cmocka_unit_test(test_schedule_and_plan_at),
		cmocka_unit_test(test_rule_cooldown),
		cmocka_unit_test(test_global_cap),
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_migrate_plan_names_node),
		cmocka_unit_test(test_pick_node),
		cmocka_unit_test(test_mem_pressure_and_net_rate_triggers),
		cmocka_unit_test(test_metric_parsers),
		cmocka_unit_test(test_peer_unreachable_trigger),
		cmocka_unit_test(test_webhook_and_command_rules),
		cmocka_unit_test(test_retention),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
