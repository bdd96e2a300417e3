/* Routes of /v1/policies (docs/api.md, docs/policy.md): the rules, their
 * audit log, the dry-run plan and approvals. The engine (policy_engine.h)
 * reads the rules from the store. */
#include <pthread.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "parse.h"
#include "policy_engine.h"
#include "policy_metrics.h"
#include "policy_rules.h"
#include "store.h"

/* Makes "check for conflicts, then insert or enable" one step, so that two
 * clients adding opposing rules at once cannot both succeed. Global because
 * the API has no per-daemon policy state and one lock per process is what
 * is wanted. */
static pthread_mutex_t policy_write_lock = PTHREAD_MUTEX_INITIALIZER;

/* A stored rule other than `skip` that conflicts with r, explained in msg. */
static bool find_conflict(struct kvzd *d, const struct policy_rule *r, const char *skip,
			  char *msg, size_t msglen)
{
	json_t *list = store_policy_list(d->store);
	size_t i;
	json_t *p;
	bool found = false;
	json_array_foreach(list, i, p) {
		struct policy_rule other;
		char err[256];
		const char *name = json_string_value(json_object_get(p, "name"));
		if (!json_is_true(json_object_get(p, "enabled")) || !strcmp(name, skip))
			continue;
		if (policy_rule_parse(json_object_get(p, "rule"), &other, err, sizeof(err)))
			continue;   /* cannot happen: only parsed rules are stored */
		if (policy_rules_conflict(r, &other, msg, msglen)) {
			found = true;
			break;
		}
	}
	json_decref(list);
	return found;
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
	pthread_mutex_lock(&policy_write_lock);
	int rc = -1;
	if (find_conflict(r->d, &rule, rule.name, err, sizeof(err))) {
		api_error(resp, 409, "%s", err);
	} else {
		json_t *canon = policy_rule_json(&rule);
		rc = store_policy_insert(r->d->store, rule.name, canon, true);
		json_decref(canon);
		if (rc == 1)
			api_error(resp, 409, "policy %s exists", rule.name);
		else if (rc)
			api_error(resp, 500, "cannot store policy %s", rule.name);
	}
	pthread_mutex_unlock(&policy_write_lock);
	if (rc)
		return;
	store_event_add(r->d->store, POLICY_EVENTS, "policy-added", rule.name);
	policy_engine_reload(r->d);
	json_t *out = store_policy_get(r->d->store, rule.name);
	const char *missing = rule.trigger == TRIG_METRIC && rule.metric == MET_MEM_PRESSURE
				      ? policy_psi_missing() : NULL;
	if (missing && out)
		json_object_set_new(out, "warning", json_pack("s++", "trigger.metric: ", missing,
							      ": the rule never fires on this host"));
	api_json(resp, 201, out);
}

static void set_enabled(struct api_req *r, struct api_resp *resp, const char *name, bool on)
{
	json_t *p = store_policy_get(r->d->store, name);
	if (!p) {
		api_error(resp, 404, "no such policy: %s", name);
		return;
	}
	struct policy_rule rule;
	char err[300];
	int rc = 0;
	pthread_mutex_lock(&policy_write_lock);
	if (on && !policy_rule_parse(json_object_get(p, "rule"), &rule, err, sizeof(err)) &&
	    find_conflict(r->d, &rule, name, err, sizeof(err))) {
		api_error(resp, 409, "%s", err);
		rc = -1;
	} else if (store_policy_set_enabled(r->d->store, name, on)) {
		api_error(resp, 500, "cannot change policy %s", name);
		rc = -1;
	}
	pthread_mutex_unlock(&policy_write_lock);
	json_decref(p);
	if (rc)
		return;
	store_event_add(r->d->store, POLICY_EVENTS, on ? "policy-enabled" : "policy-disabled", name);
	policy_engine_reload(r->d);
	api_json(resp, 200, store_policy_get(r->d->store, name));
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
		else
			api_error(resp, 404, "no such resource: %s", r->path);
		return;
	}
	if (!strcmp(r->method, "GET")) {
		json_t *p = store_policy_get(r->d->store, name);
		if (p)
			api_json(resp, 200, p);
		else
			api_error(resp, 404, "no such policy: %s", name);
	} else if (!strcmp(r->method, "DELETE")) {
		int rc = store_policy_delete(r->d->store, name);
		if (rc == 1) {
			api_error(resp, 404, "no such policy: %s", name);
			return;
		}
		if (rc) {
			api_error(resp, 500, "cannot remove policy %s", name);
			return;
		}
		store_event_add(r->d->store, POLICY_EVENTS, "policy-removed", name);
		policy_engine_reload(r->d);
		api_json(resp, 200, json_pack("{s:s}", "removed", name));
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
		if (!strcmp(r->method, "GET"))
			api_json(resp, 200, store_policy_list(r->d->store));
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
