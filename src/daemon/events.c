/* GET /v1/events: what happened to guests, oldest first; with all=1 on a
 * cluster member, what happened on every member (cluster_events.c). */
#include <string.h>

#include "api.h"
#include "cluster.h"
#include "parse.h"
#include "store.h"

bool events_route(struct api_req *r, struct api_resp *resp)
{
	if (strcmp(r->path, "/v1/events"))
		return false;
	if (strcmp(r->method, "GET")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return true;
	}
	uint64_t since = 0, limit = 100;
	const char *s = api_query(r, "since");
	const char *l = api_query(r, "limit");
	const char *guest = api_query(r, "guest");
	if (s && !kvz_parse_u64(s, 0, INT64_MAX, &since)) {
		api_error(resp, 400, "since must be an event id");
		return true;
	}
	if (l && !kvz_parse_u64(l, 1, 10000, &limit)) {
		api_error(resp, 400, "limit must be 1..10000");
		return true;
	}
	if (guest && !kvz_valid_name(guest)) {
		api_error(resp, 400, "bad guest name \"%s\"", guest);
		return true;
	}
	bool all;
	if (!events_all_param(r, resp, &all))
		return true;
	if (!all) {
		api_json(resp, 200, store_event_list(r->d->store, (int64_t)since, guest, (int)limit));
		return true;
	}
	struct op_error e;
	json_t *list = cluster_events_list(r->d, (int64_t)since, guest, (int)limit, &e);
	if (list)
		api_json(resp, 200, list);
	else
		api_error(resp, e.status, "%s", e.msg);
	return true;
}

bool events_all_param(struct api_req *r, struct api_resp *resp, bool *all)
{
	const char *a = api_query(r, "all");
	if (a && strcmp(a, "1") && strcmp(a, "0") && strcmp(a, "true") && strcmp(a, "false")) {
		api_error(resp, 400, "all must be 1 or 0");
		return false;
	}
	/* On a single host every event is this host's: all=1 is the local list. */
	*all = a && (!strcmp(a, "1") || !strcmp(a, "true")) &&
	       cluster_policy_role(r->d) != CLUSTER_POLICY_LOCAL;
	return true;
}
