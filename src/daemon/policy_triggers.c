/* The policy engine's decisions (policy_eval.h): triggers (events, metrics
 * held over a window with hysteresis, schedules), conditions and limits
 * (cooldowns, restart backoff, count per period, global cap). */
#include "policy_eval.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* What one rule remembers about one guest (or the host). */
struct gstate {
	char name[72];
	bool disarmed;        /* metric fired; waits to fall below clear_below */
	int64_t over_since;   /* metric above since (ms), 0 when not */
	int64_t seen;         /* last evaluated (ms): a gap (guest stopped,
			       * no samples) starts the window again */
	bool pending;         /* an event or schedule fired and awaits limits */
	char pending_reason[256];
	int64_t last_fire;
	int64_t *fires;       /* ring of max_per_period firing times */
	int nfires, next;
};

struct rstate {
	struct policy_rule rule;
	int64_t last_fire;
	int64_t last_sched_minute;   /* the minute a schedule last fired */
	struct gstate *g;            /* sorted by name */
	int ng, capg;
};

struct policy_eval {
	struct rstate *r;
	int nr;
	int cap;
	int64_t *global;    /* ring of cap action times */
	int nglobal, gnext;
	bool started;       /* first tick done (kvzd_restart fired) */
	int64_t event_id;
};

struct policy_eval *policy_eval_new(int cap)
{
	struct policy_eval *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->cap = cap;
	if (cap > 0 && !(e->global = calloc((size_t)cap, sizeof(int64_t)))) {
		free(e);
		return NULL;
	}
	return e;
}

static void rstate_clear(struct rstate *rs)
{
	for (int i = 0; i < rs->ng; i++)
		free(rs->g[i].fires);
	free(rs->g);
}

void policy_eval_free(struct policy_eval *e)
{
	if (!e)
		return;
	for (int i = 0; i < e->nr; i++)
		rstate_clear(&e->r[i]);
	free(e->r);
	free(e->global);
	free(e);
}

int policy_eval_set_rules(struct policy_eval *e, const struct policy_rule *rules, int n)
{
	struct rstate *nr = calloc((size_t)n + 1, sizeof(*nr));
	if (!nr)
		return -1;
	for (int i = 0; i < n; i++) {
		nr[i].rule = rules[i];
		for (int j = 0; j < e->nr; j++) {
			if (e->r[j].g && !memcmp(&e->r[j].rule, &rules[i], sizeof(rules[i]))) {
				nr[i] = e->r[j];   /* takes over its state */
				e->r[j].g = NULL;
				e->r[j].ng = 0;
				break;
			}
		}
	}
	for (int j = 0; j < e->nr; j++)
		rstate_clear(&e->r[j]);
	free(e->r);
	e->r = nr;
	e->nr = n;
	return 0;
}

const struct policy_rule *policy_eval_rule(struct policy_eval *e, const char *name)
{
	for (int i = 0; i < e->nr; i++)
		if (!strcmp(e->r[i].rule.name, name))
			return &e->r[i].rule;
	return NULL;
}

static int gcmp(const void *k, const void *m)
{
	return strcmp(k, ((const struct gstate *)m)->name);
}

/* The state of rs for guest, made when create. NULL when absent or out of
 * memory. */
static struct gstate *gstate_of(struct rstate *rs, const char *guest, bool create)
{
	struct gstate *g = rs->ng ? bsearch(guest, rs->g, (size_t)rs->ng, sizeof(*g), gcmp) : NULL;
	if (g || !create)
		return g;
	if (rs->ng == rs->capg) {
		int cap = rs->capg ? 2 * rs->capg : 8;
		struct gstate *ng = realloc(rs->g, (size_t)cap * sizeof(*ng));
		if (!ng)
			return NULL;
		rs->g = ng;
		rs->capg = cap;
	}
	int at = 0;
	while (at < rs->ng && strcmp(rs->g[at].name, guest) < 0)
		at++;
	memmove(&rs->g[at + 1], &rs->g[at], (size_t)(rs->ng - at) * sizeof(*g));
	g = &rs->g[at];
	memset(g, 0, sizeof(*g));
	snprintf(g->name, sizeof(g->name), "%s", guest);
	g->fires = calloc((size_t)rs->rule.max_per_period, sizeof(int64_t));
	if (!g->fires) {
		memmove(&rs->g[at], &rs->g[at + 1], (size_t)(rs->ng - at) * sizeof(*g));
		return NULL;
	}
	rs->ng++;
	return g;
}

static int count_since(const int64_t *ring, int n, int64_t since)
{
	int c = 0;
	for (int i = 0; i < n; i++)
		c += ring[i] > since;
	return c;
}

/* Why the limits hold the rule back on g at now, in why; *exhausted when
 * only the count per period does (which a later tick may lift, but an
 * event's action should then be given up). */
static bool held_back(const struct policy_eval *e, const struct rstate *rs,
		      const struct gstate *g, int64_t now, char *why, size_t len,
		      bool *exhausted)
{
	const struct policy_rule *r = &rs->rule;
	time_t t = (time_t)(now / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	*exhausted = false;
	if (!policy_in_window(r, tm.tm_hour * 60 + tm.tm_min)) {
		snprintf(why, len, "outside the time window");
		return true;
	}
	if (rs->last_fire && now - rs->last_fire < r->cooldown_s * 1000LL) {
		snprintf(why, len, "rule cooldown, %llds left",
			 (long long)((rs->last_fire + r->cooldown_s * 1000LL - now + 999) / 1000));
		return true;
	}
	int n = count_since(g->fires, g->nfires, now - r->period_s * 1000LL);
	if (n >= r->max_per_period) {
		snprintf(why, len, "at most %d per %ds reached", r->max_per_period, r->period_s);
		*exhausted = true;
		return true;
	}
	int64_t wait = r->guest_cooldown_s * 1000LL;
	if (r->action == ACT_RESTART && n > 0) {
		int64_t b = (int64_t)r->backoff_s * 1000LL << (n - 1 > 20 ? 20 : n - 1);
		wait = b > wait ? b : wait;
	}
	if (g->last_fire && now - g->last_fire < wait) {
		snprintf(why, len, "%s on this guest, %llds left",
			 r->action == ACT_RESTART && n ? "restart backoff" : "guest cooldown",
			 (long long)((g->last_fire + wait - now + 999) / 1000));
		return true;
	}
	if (r->level == POLICY_AUTOMATIC && e->cap > 0 &&
	    count_since(e->global, e->nglobal, now - 60000) >= e->cap) {
		snprintf(why, len, "global cap of %d actions per minute reached", e->cap);
		return true;
	}
	return false;
}

/* What a plan says the rule would do on guest, in buf. */
static const char *would_do(const struct policy_env *env, const struct policy_rule *r,
			    const char *guest, char *buf, size_t len)
{
	const char *verb = r->level == POLICY_AUTOMATIC ? "act" : r->level == POLICY_SUGGEST
									? "propose" : "record";
	char what[300];
	if (!env->describe)
		return verb;
	if (env->describe(env->ctx, r, guest, what, sizeof(what)))
		snprintf(buf, len, "unavailable: %s", what);
	else if (*what)
		snprintf(buf, len, "%s: %s", verb, what);
	else
		return verb;
	return buf;
}

static json_t *plan_entry(const struct policy_rule *r, const char *guest, const char *reason,
			  const char *would)
{
	const char *trig = r->trigger == TRIG_EVENT ? policy_event_name(r->event) :
			   r->trigger == TRIG_METRIC ? policy_metric_name(r->metric) : r->schedule;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "rule", r->name, "guest", guest,
			 "action", policy_action_name(r->action), "level",
			 policy_level_name(r->level), "trigger", trig, "reason", reason,
			 "would", would);
}

/* A trigger fired for g: carries out (or records) the action unless limits
 * hold it back. With plan, only says what would happen. True when it was
 * dealt with (done, recorded or given up), false when it should be tried
 * again on a later tick. */
static bool fire(struct policy_eval *e, const struct policy_env *env, struct rstate *rs,
		 struct gstate *g, int64_t now, const char *reason, json_t *plan)
{
	const struct policy_rule *r = &rs->rule;
	char why[160], result[300] = "";
	bool exhausted;
	bool held = held_back(e, rs, g, now, why, sizeof(why), &exhausted);
	if (plan) {
		char w[400];
		if (held)
			snprintf(w, sizeof(w), "held back: %s", why);
		json_array_append_new(plan, plan_entry(r, g->name, reason,
						       held ? w : would_do(env, r, g->name, w, sizeof(w))));
		return true;
	}
	if (held) {
		if (!exhausted || r->trigger == TRIG_METRIC)
			return false;
		env->record(env->ctx, r, g->name, "skipped", reason, why);
		return true;
	}
	rs->last_fire = g->last_fire = now;
	g->fires[g->next] = now;
	g->next = (g->next + 1) % r->max_per_period;
	if (g->nfires < r->max_per_period)
		g->nfires++;
	if (r->level != POLICY_AUTOMATIC) {
		env->record(env->ctx, r, g->name, r->level == POLICY_SUGGEST ? "proposed" : "planned",
			    reason, "");
		return true;
	}
	if (e->cap > 0) {
		e->global[e->gnext] = now;
		e->gnext = (e->gnext + 1) % e->cap;
		if (e->nglobal < e->cap)
			e->nglobal++;
	}
	int rc = env->act(env->ctx, r, g->name, reason, result, sizeof(result));
	env->record(env->ctx, r, g->name, rc ? "failed" : "done", reason, result);
	/* A failed action of an event stays pending: retried within limits. */
	return rc == 0 || r->trigger != TRIG_EVENT;
}

static bool is_running(json_t *g)
{
	const char *s = json_string_value(json_object_get(g, "state"));
	return s && !strcmp(s, "running");
}

static bool selects(const struct policy_rule *r, json_t *g)
{
	const char *name = json_string_value(json_object_get(g, "name"));
	const char *type = json_string_value(json_object_get(g, "type"));
	return name && type && policy_selects(r, name, type, json_object_get(g, "tags"));
}

/* A metric of one target (guest or host) against the rule. */
static void eval_metric(struct policy_eval *e, const struct policy_env *env, struct rstate *rs,
			const char *target, const char *source, int64_t now, json_t *plan)
{
	const struct policy_rule *r = &rs->rule;
	double v;
	if (env->metric(env->ctx, source, r->metric, &v))
		return;
	struct gstate *g = gstate_of(rs, target, !plan);
	struct gstate scratch = {0};
	if (!g) {
		if (!plan)
			return;
		g = &scratch;   /* a plan of a target never seen: fresh state */
		snprintf(g->name, sizeof(g->name), "%s", target);
	}
	int64_t over = g->over_since;
	if (g->seen && now - g->seen > 5000)
		over = 0;
	if (!plan) {
		g->seen = now;
		g->over_since = over;
	}
	if (g->disarmed) {
		if (v < r->clear_below && !plan)
			g->disarmed = false;
		return;
	}
	if (v <= r->above) {
		if (!plan)
			g->over_since = 0;
		return;
	}
	int64_t since = over ? over : now;
	if (!plan)
		g->over_since = since;
	char reason[256];
	int64_t held = now - since;
	snprintf(reason, sizeof(reason), "%s %.1f > %.1f for %llds of %ds", policy_metric_name(r->metric),
		 v, r->above, (long long)(held / 1000), r->for_s);
	if (held < r->for_s * 1000LL) {
		if (plan)
			json_array_append_new(plan, plan_entry(r, target, reason, "waiting for the window"));
		return;
	}
	if (fire(e, env, rs, g, now, reason, plan) && !plan) {
		g->disarmed = true;   /* hysteresis: rearms below clear_below */
		g->over_since = 0;
	}
}

static void eval_rule_metric(struct policy_eval *e, const struct policy_env *env,
			     struct rstate *rs, json_t *guests, int64_t now, json_t *plan)
{
	const struct policy_rule *r = &rs->rule;
	bool host = r->metric == MET_HOST_CPU_PCT;
	const char *missing = env->metric_missing ? env->metric_missing(env->ctx, r->metric) : NULL;
	if (missing) {
		char w[300];
		snprintf(w, sizeof(w), "unavailable: %s", missing);
		if (plan)
			json_array_append_new(plan, plan_entry(r, "*", policy_metric_name(r->metric),
							       w));
		return;
	}
	if (host && !r->nguests) {
		eval_metric(e, env, rs, POLICY_HOST, NULL, now, plan);
		return;
	}
	size_t i;
	json_t *g;
	json_array_foreach(guests, i, g) {
		if (!is_running(g) || !selects(r, g))
			continue;
		const char *name = json_string_value(json_object_get(g, "name"));
		eval_metric(e, env, rs, name, host ? NULL : name, now, plan);
	}
}

/* Marks every selected guest pending (an event or a schedule). */
static void mark_pending(struct rstate *rs, json_t *guests, const char *only, const char *reason)
{
	size_t i;
	json_t *j;
	json_array_foreach(guests, i, j) {
		const char *name = json_string_value(json_object_get(j, "name"));
		if ((only && strcmp(only, name)) || !selects(&rs->rule, j))
			continue;
		struct gstate *g = gstate_of(rs, name, true);
		if (g && !g->pending) {
			g->pending = true;
			snprintf(g->pending_reason, sizeof(g->pending_reason), "%s", reason);
		}
	}
}

/* Marks the host pending (a rule of the host as a whole). */
static void mark_host_pending(struct rstate *rs, const char *reason)
{
	struct gstate *g = gstate_of(rs, POLICY_HOST, true);
	if (g && !g->pending) {
		g->pending = true;
		snprintf(g->pending_reason, sizeof(g->pending_reason), "%s", reason);
	}
}

/* nodes.c's "node-unreachable" event (detail "NODE N", N failed health
 * checks in a row) to the rules waiting for that many. */
static void peer_event(struct policy_eval *e, json_t *ev)
{
	const char *detail = json_string_value(json_object_get(ev, "detail"));
	char node[64];
	int n;
	if (!detail || sscanf(detail, "%63s %d", node, &n) != 2)
		return;
	char reason[256];
	snprintf(reason, sizeof(reason), "event peer_unreachable (%s: %d failed health checks)",
		 node, n);
	for (int i = 0; i < e->nr; i++) {
		const struct policy_rule *r = &e->r[i].rule;
		if (r->trigger == TRIG_EVENT && r->event == EV_PEER_UNREACHABLE && r->failures == n)
			mark_host_pending(&e->r[i], reason);
	}
}

static int event_kind(json_t *ev)
{
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *detail = json_string_value(json_object_get(ev, "detail"));
	if (type && !strcmp(type, "crashed"))
		return EV_CRASHED;
	/* The monitor's "stopped" after the guest shut itself down; stops by
	 * request say how ("forced", NULL) instead. */
	if (type && !strcmp(type, "stopped") && detail && !strcmp(detail, "guest shut down"))
		return EV_STOPPED_UNEXPECTEDLY;
	return -1;
}

static void take_events(struct policy_eval *e, const struct policy_env *env, json_t *guests)
{
	if (!e->started) {
		e->event_id = env->event_cursor(env->ctx);
		for (int i = 0; i < e->nr; i++)
			if (e->r[i].rule.trigger == TRIG_EVENT && e->r[i].rule.event == EV_KVZD_RESTART)
				mark_pending(&e->r[i], guests, NULL, "kvzd started");
		e->started = true;
		return;
	}
	json_t *evs = env->events(env->ctx, e->event_id);
	size_t k;
	json_t *ev;
	json_array_foreach(evs, k, ev) {
		e->event_id = json_integer_value(json_object_get(ev, "id"));
		const char *type = json_string_value(json_object_get(ev, "type"));
		if (type && !strcmp(type, POLICY_PEER_EVENT)) {
			peer_event(e, ev);
			continue;
		}
		int kind = event_kind(ev);
		const char *guest = json_string_value(json_object_get(ev, "guest"));
		if (kind < 0 || !guest)
			continue;
		char reason[256];
		const char *detail = json_string_value(json_object_get(ev, "detail"));
		snprintf(reason, sizeof(reason), "event %s (%s)", policy_event_name(kind),
			 detail ? detail : "");
		for (int i = 0; i < e->nr; i++)
			if (e->r[i].rule.trigger == TRIG_EVENT && (int)e->r[i].rule.event == kind)
				mark_pending(&e->r[i], guests, guest, reason);
	}
	json_decref(evs);
}

static void eval_pending(struct policy_eval *e, const struct policy_env *env, struct rstate *rs,
			 int64_t now, json_t *plan)
{
	for (int i = 0; i < rs->ng; i++) {
		struct gstate *g = &rs->g[i];
		if (g->pending && fire(e, env, rs, g, now, g->pending_reason, plan) && !plan)
			g->pending = false;
	}
}

static void eval_schedule(struct policy_eval *e, const struct policy_env *env, struct rstate *rs,
			  json_t *guests, int64_t now, json_t *plan)
{
	int64_t minute = now / 60000;
	if (!cron_matches(&rs->rule.cron, (time_t)(now / 1000)) ||
	    (!plan && rs->last_sched_minute == minute))
		return;
	char reason[200];
	snprintf(reason, sizeof(reason), "schedule \"%s\"", rs->rule.schedule);
	if (plan) {
		size_t i;
		json_t *j;
		json_array_foreach(guests, i, j) {
			if (!selects(&rs->rule, j))
				continue;
			const char *name = json_string_value(json_object_get(j, "name"));
			struct gstate *g = gstate_of(rs, name, false), scratch = {0};
			if (!g) {
				g = &scratch;
				snprintf(g->name, sizeof(g->name), "%s", name);
			}
			fire(e, env, rs, g, now, reason, plan);
		}
		return;
	}
	rs->last_sched_minute = minute;
	mark_pending(rs, guests, NULL, reason);
}

static void evaluate(struct policy_eval *e, const struct policy_env *env, int64_t now,
		     json_t *plan)
{
	json_t *guests = env->guests(env->ctx);
	if (!guests)
		return;
	if (!plan)
		take_events(e, env, guests);
	for (int i = 0; i < e->nr; i++) {
		struct rstate *rs = &e->r[i];
		if (rs->rule.trigger == TRIG_METRIC)
			eval_rule_metric(e, env, rs, guests, now, plan);
		else if (rs->rule.trigger == TRIG_SCHEDULE)
			eval_schedule(e, env, rs, guests, now, plan);
		/* Schedules do their work through pending too, so that a
		 * minute's run held back by a cooldown still happens. */
		if (rs->rule.trigger != TRIG_METRIC && !(plan && rs->rule.trigger == TRIG_SCHEDULE))
			eval_pending(e, env, rs, now, plan);
	}
	json_decref(guests);
}

void policy_eval_tick(struct policy_eval *e, const struct policy_env *env)
{
	evaluate(e, env, env->now_ms(env->ctx), NULL);
}

json_t *policy_eval_plan(struct policy_eval *e, const struct policy_env *env, int64_t at_ms)
{
	json_t *plan = json_array();
	evaluate(e, env, at_ms ? at_ms : env->now_ms(env->ctx), plan);
	return plan;
}
