/* Routes of /v1/guests/NAME/snapshots (snapshots.h does the work). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "snapshots.h"
#include "store.h"

static void list_snapshots(struct api_req *r, struct api_resp *resp, const char *guest)
{
	json_t *g = store_guest_get(r->d->store, guest);
	if (!g) {
		api_error(resp, 404, "no guest named %s", guest);
		return;
	}
	json_decref(g);
	api_json(resp, 200, store_snapshot_list(r->d->store, guest));
}

static void create(struct api_req *r, struct api_resp *resp, const char *guest)
{
	const char *n;
	if (api_optional_name(r, &n)) {
		api_error(resp, 400, "a snapshot takes {\"name\": \"SNAP\"} or no body");
		return;
	}
	struct op_error e;
	api_job_reply(resp, snapshot_create(r->d, guest, n, &e), &e);
}

static void one_snapshot(struct api_req *r, struct api_resp *resp, const char *guest,
			 const char *snap, const char *action)
{
	const char *m = r->method;
	struct op_error e;
	if (!action && !strcmp(m, "GET")) {
		json_t *rec = store_snapshot_get(r->d->store, guest, snap);
		if (rec)
			api_json(resp, 200, rec);
		else
			api_error(resp, 404, "%s has no snapshot named %s", guest, snap);
	} else if (!action && !strcmp(m, "DELETE")) {
		if (snapshot_delete(r->d, guest, snap, &e))
			api_error(resp, e.status, "%s", e.msg);
		else
			api_json(resp, 200, json_pack("{s:s}", "deleted", snap));
	} else if (action && !strcmp(action, "restore") && !strcmp(m, "POST")) {
		api_job_reply(resp, snapshot_restore(r->d, guest, snap, &e), &e);
	} else if (action && strcmp(action, "restore")) {
		api_error(resp, 404, "no such resource: %s", r->path);
	} else {
		api_error(resp, 405, "%s is not allowed on %s", m, r->path);
	}
}

void snapshots_route(struct api_req *r, struct api_resp *resp, const char *guest,
		     const char *rest)
{
	if (!*rest || !strcmp(rest, "/")) {
		if (!strcmp(r->method, "GET"))
			list_snapshots(r, resp, guest);
		else if (!strcmp(r->method, "POST"))
			create(r, resp, guest);
		else
			api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return;
	}
	char snap[72];
	const char *action;
	if (!api_item_path(rest, snap, sizeof(snap), &action)) {
		api_error(resp, 404, "no such resource: %s", r->path);
		return;
	}
	one_snapshot(r, resp, guest, snap, action);
}
