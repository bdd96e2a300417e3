#include "policy_engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "log.h"
#include "monitor.h"
#include "policy_eval.h"
#include "policy_metrics.h"
#include "policy_store.h"
#include "store.h"

/* One engine per kvzd process, like the monitor's thread: kept here rather
 * than in struct kvzd so that only this file knows its layout. lock guards
 * eval and reload; the thread and API requests (plan, approve) take it. */
static struct {
	struct kvzd *d;
	pthread_t thread;
	bool running, stop, reload;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct policy_eval *eval;
	int cap;
	/* Cluster mode: whether the evaluator last ran as the rules' leader,
	 * and the cluster-wide event id its event reading starts after. */
	bool led;
	int64_t cluster_cursor;
	/* Cluster mode, leader: every member's guests' metrics, read once a
	 * tick (cluster_metrics_read); NULL otherwise. */
	json_t *cluster_metrics;
} eng = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Rules, guests and events are the cluster's when this node is a member. */
static bool in_cluster(struct kvzd *d)
{
	enum cluster_policy_role role = cluster_policy_role(d);
	return role == CLUSTER_POLICY_LEADER || role == CLUSTER_POLICY_FOLLOWER;
}

static int64_t env_now(void *ctx)
{
	(void)ctx;
	return kvzd_now_ms();
}

/* {name, type, state, tags} of every guest; tags from the configuration. */
static json_t *env_guests(void *ctx)
{
	struct kvzd *d = ctx;
	if (in_cluster(d))
		return cluster_policy_guests(d);
	json_t *all = store_guest_list(d->store), *out = json_array();
	size_t i;
	json_t *g;
	json_array_foreach(all, i, g) {
		json_t *tags = json_object_get(json_object_get(g, "config"), "tags");
		json_array_append_new(out, json_pack("{s:O, s:O, s:O, s:o}", "name",
						     json_object_get(g, "name"), "type",
						     json_object_get(g, "type"), "state",
						     json_object_get(g, "state"), "tags",
						     json_is_array(tags) ? json_incref(tags) : json_array()));
	}
	json_decref(all);
	return out;
}

/* A container's memory pressure; -1 for a VM. */
static int ct_pressure(struct kvzd *d, const char *guest, double *out)
{
	json_t *g = store_guest_get(d->store, guest);
	const char *type = json_string_value(json_object_get(g, "type"));
	pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	int rc = type && !strcmp(type, "ct") ? policy_mem_pressure(guest, pid, out) : -1;
	json_decref(g);
	return rc;
}

/* A rate from the stored samples of the last three intervals. */
static int stored_rate(struct kvzd *d, const char *guest, bool rx, double *out)
{
	int64_t since = kvzd_now_ms() - 3000LL * d->sample_interval_s - 500;
	json_t *list = store_sample_list(d->store, guest, 0, since);
	int rc = policy_net_rate(list, rx, out);
	json_decref(list);
	return rc;
}

int policy_local_metric(struct kvzd *d, const char *guest, enum policy_metric m, double *out)
{
	struct sample s;
	if (m == MET_MEM_PRESSURE)
		return guest ? ct_pressure(d, guest, out) : -1;
	if (m == MET_NET_RX_RATE || m == MET_NET_TX_RATE)
		return stored_rate(d, guest ? guest : MONITOR_HOST, m == MET_NET_RX_RATE, out);
	if (!monitor_latest(guest ? guest : MONITOR_HOST, &s))
		return -1;
	/* A sample older than three intervals is of a guest the monitor lost. */
	if (kvzd_now_ms() - s.ts_ms > 3000LL * d->sample_interval_s)
		return -1;
	switch (m) {
	case MET_CPU_PCT:
	case MET_HOST_CPU_PCT:
		*out = s.cpu_pct;
		return 0;
	case MET_MEM_PCT:
		if (!s.mem_limit)
			return -1;
		*out = 100.0 * (double)s.mem_used / (double)s.mem_limit;
		return 0;
	case MET_DISK_PCT:
		if (!s.disk_size)
			return -1;
		*out = 100.0 * (double)s.disk_used / (double)s.disk_size;
		return 0;
	default:
		break;
	}
	return -1;
}

/* This host's monitor first; in cluster mode a guest it does not run is
 * looked up in what its node published. Host metrics stay this host's. */
static int env_metric(void *ctx, const char *guest, enum policy_metric m, double *out)
{
	struct kvzd *d = ctx;
	if (!policy_local_metric(d, guest, m, out))
		return 0;
	if (!guest || !eng.cluster_metrics)
		return -1;
	return cluster_metric_get(eng.cluster_metrics, guest, m, out);
}

static int64_t env_event_cursor(void *ctx)
{
	struct kvzd *d = ctx;
	return in_cluster(d) ? eng.cluster_cursor : store_event_last_id(d->store);
}

/* In cluster mode every member's events, by cluster-wide id. */
static json_t *env_events(void *ctx, int64_t since)
{
	struct kvzd *d = ctx;
	if (!in_cluster(d))
		return store_event_list(d->store, since, NULL, 1000);
	struct op_error e;
	json_t *list = cluster_events_list(d, since, NULL, 1000, &e);
	return list ? list : json_array();
}

/* A guest action goes to the node that owns the guest (cluster mode). */
static int act_anywhere(struct kvzd *d, const struct policy_rule *r, const char *guest,
			const char *reason, char *res, size_t len)
{
	if (policy_action_on_owner(r->action)) {
		int rc = cluster_policy_forward(d, r->name, guest, reason, res, len);
		if (rc != 1)
			return rc;
	}
	return policy_act(d, r, guest, reason, res, len);
}

static int env_act(void *ctx, const struct policy_rule *r, const char *guest,
		   const char *reason, char *res, size_t len)
{
	return act_anywhere(ctx, r, guest, reason, res, len);
}

static void env_record(void *ctx, const struct policy_rule *r, const char *guest,
		       const char *state, const char *reason, const char *result)
{
	struct kvzd *d = ctx;
	int64_t id = store_policy_log_add(d->store, r->name, guest, policy_action_name(r->action),
					  state, reason);
	if (id > 0 && *result)
		store_policy_log_update(d->store, id, NULL, state, result, NULL);
	char detail[600];
	snprintf(detail, sizeof(detail), "#%lld %s %s %s: %s%s%s", (long long)id, r->name,
		 policy_action_name(r->action), state, reason, *result ? " -> " : "", result);
	store_event_add(d->store, guest, "policy", detail);
	kvz_info("policy %s", detail);
}

static const char *env_metric_missing(void *ctx, enum policy_metric m)
{
	(void)ctx;
	return m == MET_MEM_PRESSURE ? policy_psi_missing() : NULL;
}

static int env_describe(void *ctx, const struct policy_rule *r, const char *guest, char *out,
			size_t len)
{
	return policy_describe(ctx, r, guest, out, len);
}

static const struct policy_env kvzd_env = {
	.now_ms = env_now, .guests = env_guests, .metric = env_metric,
	.event_cursor = env_event_cursor, .events = env_events, .act = env_act,
	.metric_missing = env_metric_missing, .describe = env_describe,
	.record = env_record,
};

/* The enabled rules from the store into the evaluator; lock held. */
static void load_rules(struct kvzd *d)
{
	struct op_error e;
	json_t *list = policy_store_list(d, &e);
	if (!list) {
		kvz_debug("policy: %s; the old rules stay", e.msg);
		return;
	}
	size_t n = json_array_size(list), k = 0, i;
	struct policy_rule *rules = calloc(n + 1, sizeof(*rules));
	json_t *p;
	json_array_foreach(list, i, p) {
		char err[256];
		if (!rules || !json_is_true(json_object_get(p, "enabled")))
			continue;
		if (policy_rule_parse(json_object_get(p, "rule"), &rules[k], err, sizeof(err)))
			kvz_warn("policy %s ignored: %s",
				 json_string_value(json_object_get(p, "name")), err);
		else
			k++;
	}
	if (!rules || policy_eval_set_rules(eng.eval, rules, (int)k))
		kvz_warn("policy: out of memory reloading rules; the old ones stay");
	free(rules);
	json_decref(list);
}

/* Whether this node evaluates now: always on a single host; in cluster
 * mode only as the rules' leader. A node that becomes the leader starts
 * afresh (new evaluator, events from now on, the rules from etcd each
 * tick: another member may have changed them); lock held. */
static bool my_turn(struct kvzd *d)
{
	enum cluster_policy_role role = cluster_policy_role(d);
	if (role == CLUSTER_POLICY_LOCAL) {
		if (eng.led) {
			/* Left the cluster: back to this host's own rules. */
			eng.led = false;
			eng.reload = true;
		}
		return true;
	}
	if (role != CLUSTER_POLICY_LEADER) {
		if (eng.led)
			kvz_info("policy: no longer the rules' leader");
		eng.led = false;
		return false;
	}
	if (!eng.led) {
		int64_t cur = cluster_events_cursor(d);
		struct policy_eval *fresh = cur >= 0 ? policy_eval_new(eng.cap) : NULL;
		if (!fresh)
			return false;
		policy_eval_free(eng.eval);
		eng.eval = fresh;
		eng.cluster_cursor = cur;
		eng.led = true;
		kvz_info("policy: this node runs the cluster's rules");
	}
	eng.reload = true;
	return true;
}

static void *engine_main(void *arg)
{
	struct kvzd *d = arg;
	struct policy_env env = kvzd_env;
	env.ctx = d;
	pthread_mutex_lock(&eng.lock);
	while (!eng.stop) {
		bool turn = my_turn(d);
		if (turn && eng.reload)
			load_rules(d);
		/* Cleared on a follower too: it has no rules to load (my_turn
		 * asks again when it leads), and a reload left set would skip
		 * the wait below, spinning with the lock held so that the next
		 * rule change on this node (policy_engine_reload) waited forever. */
		eng.reload = false;
		json_decref(eng.cluster_metrics);
		eng.cluster_metrics = turn && in_cluster(d) ? cluster_metrics_read(d) : NULL;
		if (turn)
			policy_eval_tick(eng.eval, &env);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 1;
		while (!eng.stop && !eng.reload &&
		       pthread_cond_timedwait(&eng.cond, &eng.lock, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&eng.lock);
	return NULL;
}

int policy_engine_start(struct kvzd *d, int cap, char *err, size_t errlen)
{
	eng.d = d;
	eng.cap = cap;
	eng.eval = policy_eval_new(cap);
	if (!eng.eval) {
		snprintf(err, errlen, "policy engine: out of memory");
		return -1;
	}
	eng.reload = true;
	int rc = pthread_create(&eng.thread, NULL, engine_main, d);
	if (rc) {
		snprintf(err, errlen, "policy engine thread: %s", strerror(rc));
		return -1;
	}
	eng.running = true;
	return 0;
}

void policy_engine_stop(void)
{
	if (!eng.running)
		return;
	pthread_mutex_lock(&eng.lock);
	eng.stop = true;
	pthread_cond_signal(&eng.cond);
	pthread_mutex_unlock(&eng.lock);
	pthread_join(eng.thread, NULL);
	policy_eval_free(eng.eval);
	eng.eval = NULL;
	json_decref(eng.cluster_metrics);
	eng.cluster_metrics = NULL;
	eng.running = false;
}

void policy_engine_reload(struct kvzd *d)
{
	(void)d;
	pthread_mutex_lock(&eng.lock);
	eng.reload = true;
	pthread_cond_signal(&eng.cond);
	pthread_mutex_unlock(&eng.lock);
}

json_t *policy_engine_plan(struct kvzd *d, int64_t at_ms)
{
	struct policy_env env = kvzd_env;
	env.ctx = d;
	pthread_mutex_lock(&eng.lock);
	if ((eng.reload || in_cluster(d)) && eng.eval) {
		load_rules(d);
		eng.reload = false;
	}
	json_t *plan = eng.eval ? policy_eval_plan(eng.eval, &env, at_ms) : json_array();
	pthread_mutex_unlock(&eng.lock);
	return plan;
}

/* The proposal id, checked; its rule copied into r. */
static int proposal(struct kvzd *d, int64_t id, struct policy_rule *r, json_t **row,
		    char *err, size_t len)
{
	*row = store_policy_log_get(d->store, id);
	if (!*row) {
		snprintf(err, len, "no such policy log entry: %lld", (long long)id);
		return 404;
	}
	const char *state = json_string_value(json_object_get(*row, "state"));
	if (strcmp(state, "proposed")) {
		snprintf(err, len, "entry %lld is %s, not proposed", (long long)id, state);
		return 409;
	}
	const char *name = json_string_value(json_object_get(*row, "rule"));
	json_t *p = policy_store_get(d, name);
	int rc = p ? policy_rule_parse(json_object_get(p, "rule"), r, err, len) : -1;
	json_decref(p);
	if (rc) {
		snprintf(err, len, "policy %s no longer exists", name);
		return 409;
	}
	return 0;
}

int policy_engine_approve(struct kvzd *d, int64_t id, const char *who, char *err, size_t len)
{
	struct policy_rule r;
	json_t *row;
	int status = proposal(d, id, &r, &row, err, len);
	if (status) {
		json_decref(row);
		return status;
	}
	/* Claims the entry first, so that two approvals run it once. */
	if (store_policy_log_update(d->store, id, "proposed", "approved", "", who)) {
		json_decref(row);
		snprintf(err, len, "entry %lld was decided meanwhile", (long long)id);
		return 409;
	}
	char guest[72], res[300], reason[300];
	snprintf(guest, sizeof(guest), "%s", json_string_value(json_object_get(row, "guest")));
	snprintf(reason, sizeof(reason), "%s", json_string_value(json_object_get(row, "reason")));
	json_decref(row);
	int rc = act_anywhere(d, &r, guest, reason, res, sizeof(res));
	store_policy_log_update(d->store, id, "approved", rc ? "failed" : "done", res, NULL);
	char detail[500];
	snprintf(detail, sizeof(detail), "#%lld %s approved by %s: %s", (long long)id, r.name, who,
		 res);
	store_event_add(d->store, guest, "policy", detail);
	kvz_info("policy %s", detail);
	return 0;
}

int policy_engine_reject(struct kvzd *d, int64_t id, const char *who, char *err, size_t len)
{
	struct policy_rule r;
	json_t *row;
	int status = proposal(d, id, &r, &row, err, len);
	json_decref(row);
	if (status)
		return status;
	if (store_policy_log_update(d->store, id, "proposed", "rejected", "", who)) {
		snprintf(err, len, "entry %lld was decided meanwhile", (long long)id);
		return 409;
	}
	return 0;
}
