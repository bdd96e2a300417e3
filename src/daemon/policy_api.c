/* Routes of /v1/policies (docs/api.md, docs/policy.md): the rules, their
 * audit log, the dry-run plan and approvals, and in cluster mode the
 * leader's requests to act on a guest here. The rules are where
 * policy_store.h keeps them (SQLite, or etcd in cluster mode). */
#include <string.h>

#include "api.h"
#include "cluster.h"
#include "log.h"
#include "parse.h"
#include "policy_engine.h"
#include "policy_metrics.h"
#include "policy_rules.h"
#include "policy_store.h"
#include "store.h"

/* A rule in the list other than `skip` that conflicts with r, explained
 * in msg. */
static bool find_conflict(json_t *list, const struct policy_rule *r, const char *skip,
			  char *msg, size_t msglen)
{
	size_t i;
	json_t *p;
	json_array_foreach(list, i, p) {
		struct policy_rule other;
		char err[256];
		const char *name = json_string_value(json_object_get(p, "name"));
		if (!json_is_true(json_object_get(p, "enabled")) || !strcmp(name, skip))
			continue;
		if (policy_rule_parse(json_object_get(p, "rule"), &other, err, sizeof(err)))
			continue;   /* cannot happen: only parsed rules are stored */
		if (policy_rules_conflict(r, &other, msg, msglen))
			return true;
	}
	return false;
}

static void add_rule(struct api_req *r, struct api_resp *resp)
{
	struct policy_rule rule;
	char err[300];
	if (!r->body) {
		api_error(resp, 400, "the body must be a policy rule (JSON object)");
		return;
	}
	if (policy_rule_parse(r->body, &rule, err, sizeof(err))) {
		api_error(resp, 400, "%s", err);
		return;
	}
	if (!strcmp(rule.name, "log") || !strcmp(rule.name, "plan")) {
		api_error(resp, 400, "name: \"%s\" is reserved", rule.name);
		return;
	}
	/* A command runs as kvzd's user: only who can reach the root-owned
	 * socket may make kvzd run one, not a holder of the TCP token. */
	if (rule.action == ACT_COMMAND && r->web) {
		api_error(resp, 403, "action.type: command rules can only be added through kvzd's "
			  "local socket (they run programs as kvzd's user)");
		return;
	}
	struct policy_txn t;
	struct op_error e;
	if (policy_store_begin(r->d, &t, &e)) {
		api_error(resp, e.status, "%s", e.msg);
		return;
	}
	int rc = -1;
	if (find_conflict(t.rules, &rule, rule.name, err, sizeof(err))) {
		api_error(resp, 409, "%s", err);
	} else {
		json_t *canon = policy_rule_json(&rule);
		rc = policy_store_insert(r->d, &t, rule.name, canon, &e);
		json_decref(canon);
		if (rc)
			api_error(resp, e.status, "%s", e.msg);
	}
	policy_store_end(&t);
	if (rc)
		return;
	store_event_add(r->d->store, POLICY_EVENTS, "policy-added", rule.name);
	policy_engine_reload(r->d);
	json_t *out = policy_store_get(r->d, rule.name);
	const char *missing = rule.trigger == TRIG_METRIC && rule.metric == MET_MEM_PRESSURE
				      ? policy_psi_missing() : NULL;
	if (missing && out)
		json_object_set_new(out, "warning", json_pack("s++", "trigger.metric: ", missing,
							      ": the rule never fires on this host"));
	api_json(resp, 201, out);
}

static void set_enabled(struct api_req *r, struct api_resp *resp, const char *name, bool on)
{
	struct policy_txn t;
	struct op_error e;
	if (policy_store_begin(r->d, &t, &e)) {
		api_error(resp, e.status, "%s", e.msg);
		return;
	}
	json_t *p = policy_txn_find(&t, name);
	struct policy_rule rule;
	char err[300];
	int rc = -1;
	if (!p)
		api_error(resp, 404, "no such policy: %s", name);
	else if (on && !policy_rule_parse(json_object_get(p, "rule"), &rule, err, sizeof(err)) &&
		 find_conflict(t.rules, &rule, name, err, sizeof(err)))
		api_error(resp, 409, "%s", err);
	else if ((rc = policy_store_enable(r->d, &t, name, on, &e)))
		api_error(resp, e.status, "%s", e.msg);
	policy_store_end(&t);
	if (rc)
		return;
	store_event_add(r->d->store, POLICY_EVENTS, on ? "policy-enabled" : "policy-disabled", name);
	policy_engine_reload(r->d);
	api_json(resp, 200, policy_store_get(r->d, name));
}

static void remove_rule(struct api_req *r, struct api_resp *resp, const char *name)
{
	struct policy_txn t;
	struct op_error e;
	if (policy_store_begin(r->d, &t, &e)) {
		api_error(resp, e.status, "%s", e.msg);
		return;
	}
	int rc = policy_store_delete(r->d, &t, name, &e);
	policy_store_end(&t);
	if (rc) {
		api_error(resp, e.status, "%s", e.msg);
		return;
	}
	store_event_add(r->d->store, POLICY_EVENTS, "policy-removed", name);
	policy_engine_reload(r->d);
	api_json(resp, 200, json_pack("{s:s}", "removed", name));
}

/* POST /v1/policies/NAME/act {"guest", "reason"}: the rules' leader has a
 * member carry out a stored rule's action on a guest it owns (cluster mode
 * only). Only a rule stored in the cluster, by name: a client cannot make
 * a node run an action it sends. */
static void act_route(struct api_req *r, struct api_resp *resp, const char *name)
{
	struct op_error e;
	const char *guest = json_string_value(json_object_get(r->body, "guest"));
	const char *reason = json_string_value(json_object_get(r->body, "reason"));
	if (cluster_policy_role(r->d) == CLUSTER_POLICY_LOCAL) {
		api_error(resp, 404, "act is for cluster members (kvz cluster init|join)");
		return;
	}
	if (!guest || !kvz_valid_name(guest) || !reason || strlen(reason) > 255) {
		api_error(resp, 400, "the body must be {\"guest\": NAME, \"reason\": TEXT}");
		return;
	}
	json_t *p = policy_store_get(r->d, name);
	struct policy_rule rule;
	char err[300], res[300];
	int rc = p ? policy_rule_parse(json_object_get(p, "rule"), &rule, err, sizeof(err)) : -1;
	bool on = json_is_true(json_object_get(p, "enabled"));
	json_decref(p);
	if (rc || !on) {
		api_error(resp, 404, "no enabled policy %s in the cluster", name);
		return;
	}
	if (!policy_action_on_owner(rule.action)) {
		api_error(resp, 400, "%s actions run on the rules' leader, not on a guest's node",
			  policy_action_name(rule.action));
		return;
	}
	if (cluster_policy_owned_here(r->d, guest, &e)) {
		api_error(resp, e.status, "%s", e.msg);
		return;
	}
	rc = policy_act(r->d, &rule, guest, reason, res, sizeof(res));
	char detail[400];
	snprintf(detail, sizeof(detail), "%s %s for the rules' leader: %s", rule.name,
		 policy_action_name(rule.action), res);
	store_event_add(r->d->store, guest, "policy-act", detail);
	api_json(resp, 200, json_pack("{s:b, s:s}", "ok", !rc, "result", res));
}

static void one_rule(struct api_req *r, struct api_resp *resp, const char *name,
		     const char *verb)
{
	if (!kvz_valid_name(name)) {
		api_error(resp, 400, "bad policy name");
		return;
	}
	if (verb) {
		if (strcmp(r->method, "POST"))
			api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		else if (!strcmp(verb, "enable") || !strcmp(verb, "disable"))
			set_enabled(r, resp, name, !strcmp(verb, "enable"));
		else if (!strcmp(verb, "act"))
			act_route(r, resp, name);
		else
			api_error(resp, 404, "no such resource: %s", r->path);
		return;
	}
	if (!strcmp(r->method, "GET")) {
		json_t *p = policy_store_get(r->d, name);
		if (p)
			api_json(resp, 200, p);
		else
			api_error(resp, 404, "no such policy: %s", name);
	} else if (!strcmp(r->method, "DELETE")) {
		remove_rule(r, resp, name);
	} else {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
	}
}

/* GET /v1/policies/log?since=ID&state=S&limit=N */
static void log_route(struct api_req *r, struct api_resp *resp)
{
	uint64_t since = 0, limit = 100;
	const char *s = api_query(r, "since"), *l = api_query(r, "limit");
	const char *state = api_query(r, "state");
	if (strcmp(r->method, "GET")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
	} else if (s && !kvz_parse_u64(s, 0, INT64_MAX, &since)) {
		api_error(resp, 400, "since must be a log id");
	} else if (l && !kvz_parse_u64(l, 1, 10000, &limit)) {
		api_error(resp, 400, "limit must be 1..10000");
	} else if (state && !kvz_valid_name(state)) {
		api_error(resp, 400, "bad state");
	} else {
		api_json(resp, 200, store_policy_log_list(r->d->store, (int64_t)since, state,
							  (int)limit));
	}
}

/* POST /v1/policies/log/ID/approve|reject */
static void decide(struct api_req *r, struct api_resp *resp, const char *rest)
{
	char idbuf[24];
	const char *slash = strchr(rest, '/');
	uint64_t id;
	if (!slash || (size_t)(slash - rest) >= sizeof(idbuf)) {
		api_error(resp, 404, "no such resource: %s", r->path);
		return;
	}
	memcpy(idbuf, rest, (size_t)(slash - rest));
	idbuf[slash - rest] = 0;
	bool approve = !strcmp(slash + 1, "approve");
	if (!approve && strcmp(slash + 1, "reject")) {
		api_error(resp, 404, "no such resource: %s", r->path);
		return;
	}
	if (!kvz_parse_u64(idbuf, 1, INT64_MAX, &id)) {
		api_error(resp, 400, "bad log id \"%s\"", idbuf);
		return;
	}
	if (strcmp(r->method, "POST")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return;
	}
	const char *who = r->web ? "tcp-client" : "local-socket";
	char err[300];
	int rc = approve ? policy_engine_approve(r->d, (int64_t)id, who, err, sizeof(err))
			 : policy_engine_reject(r->d, (int64_t)id, who, err, sizeof(err));
	if (rc)
		api_error(resp, rc, "%s", err);
	else
		api_json(resp, 200, store_policy_log_get(r->d->store, (int64_t)id));
}

/* GET /v1/policies/plan?at=EPOCH_SECONDS */
static void plan_route(struct api_req *r, struct api_resp *resp)
{
	uint64_t at = 0;
	const char *a = api_query(r, "at");
	if (strcmp(r->method, "GET")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return;
	}
	if (a && !kvz_parse_u64(a, 0, 253402300799ull, &at)) {
		api_error(resp, 400, "at must be seconds since the epoch");
		return;
	}
	api_json(resp, 200, policy_engine_plan(r->d, a ? (int64_t)at * 1000 : 0));
}

bool policies_route(struct api_req *r, struct api_resp *resp)
{
	static const char prefix[] = "/v1/policies";
	if (strncmp(r->path, prefix, sizeof(prefix) - 1))
		return false;
	const char *rest = r->path + sizeof(prefix) - 1;
	if (!*rest || !strcmp(rest, "/")) {
		struct op_error e;
		json_t *list = NULL;
		if (!strcmp(r->method, "GET") && (list = policy_store_list(r->d, &e)))
			api_json(resp, 200, list);
		else if (!strcmp(r->method, "GET"))
			api_error(resp, e.status, "%s", e.msg);
		else if (!strcmp(r->method, "POST"))
			add_rule(r, resp);
		else
			api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return true;
	}
	if (*rest != '/')
		return false;
	rest++;
	if (!strcmp(rest, "log")) {
		log_route(r, resp);
	} else if (!strncmp(rest, "log/", 4)) {
		decide(r, resp, rest + 4);
	} else if (!strcmp(rest, "plan")) {
		plan_route(r, resp);
	} else {
		char name[80];
		const char *slash = strchr(rest, '/');
		size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
		if (n >= sizeof(name) || (slash && strchr(slash + 1, '/'))) {
			api_error(resp, 404, "no such resource: %s", r->path);
			return true;
		}
		memcpy(name, rest, n);
		name[n] = 0;
		one_rule(r, resp, name, slash ? slash + 1 : NULL);
	}
	return true;
}
