/* Routes of /v1/guests: the guest resource and its actions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cluster.h"
#include "guest_driver.h"
#include "guest_ops.h"
#include "parse.h"
#include "store.h"

/* What clients see of a guest: the stored record, its latest usage, and for
 * containers the command line that reaches them with kvz-ct exec. */
static json_t *guest_view(struct kvzd *d, json_t *g)
{
	const char *name = json_string_value(json_object_get(g, "name"));
	json_t *v = json_deep_copy(g);
	json_object_del(v, "pid_start");
	json_t *usage = stats_usage_json(name);
	if (usage && !strcmp(json_string_value(json_object_get(g, "state")), "running"))
		json_object_set_new(v, "usage", usage);
	else
		json_decref(usage);
	const struct guest_driver *drv = guest_driver_of(g);
	if (drv->view)
		drv->view(d, g, v);
	return v;
}

static void reply_guest(struct api_req *r, struct api_resp *resp, const char *name, int status)
{
	json_t *g = store_guest_get(r->d->store, name);
	if (!g) {
		api_error(resp, 404, "no guest named %s", name);
		return;
	}
	api_json(resp, status, guest_view(r->d, g));
	json_decref(g);
}

static void reply_op(struct api_req *r, struct api_resp *resp, const char *name, int rc,
		     const struct op_error *e, int ok_status)
{
	if (rc)
		api_error(resp, e->status, "%s", e->msg);
	else
		reply_guest(r, resp, name, ok_status);
}

static bool query_flag(struct api_req *r, const char *key);

static void list_guests(struct api_req *r, struct api_resp *resp)
{
	if (query_flag(r, "all")) {
		struct op_error e;
		json_t *all = cluster_guest_list(r->d, &e);
		if (all)
			api_json(resp, 200, all);
		else
			api_error(resp, e.status, "%s", e.msg);
		return;
	}
	json_t *list = store_guest_list(r->d->store);
	json_t *out = json_array();
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g)
		json_array_append_new(out, guest_view(r->d, g));
	json_decref(list);
	api_json(resp, 200, out);
}

/* "true"/"1" in the query string. */
static bool query_flag(struct api_req *r, const char *key)
{
	const char *v = api_query(r, key);
	return v && (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"));
}

static void stop_guest(struct api_req *r, struct api_resp *resp, const char *name)
{
	int timeout = 10;
	bool force = query_flag(r, "force");
	if (r->body) {
		json_t *t = json_object_get(r->body, "timeout");
		json_t *f = json_object_get(r->body, "force");
		if (!json_is_object(r->body) || (t && (!json_is_integer(t) ||
		    json_integer_value(t) < 0 || json_integer_value(t) > 3600)) ||
		    (f && !json_is_boolean(f))) {
			api_error(resp, 400, "stop takes {\"timeout\": 0..3600, \"force\": bool}");
			return;
		}
		if (t)
			timeout = (int)json_integer_value(t);
		force = force || json_is_true(f);
	}
	struct op_error e;
	int rc = guest_stop(r->d, name, timeout, force, &e);
	if (!rc)
		cluster_guest_state(r->d, name, "stopped");
	reply_op(r, resp, name, rc, &e, 200);
}

static void one_guest(struct api_req *r, struct api_resp *resp, const char *name,
		      const char *action)
{
	struct op_error e;
	const char *m = r->method;
	if (!kvz_valid_name(name)) {
		api_error(resp, 400, "bad guest name \"%s\"", name);
	} else if (!action && !strcmp(m, "GET")) {
		reply_guest(r, resp, name, 200);
	} else if (!action && !strcmp(m, "PATCH") && json_is_boolean(json_object_get(r->body, "ha")) &&
		   json_object_size(r->body) == 1) {
		int rc = cluster_guest_set_ha(r->d, name, json_is_true(json_object_get(r->body, "ha")), &e);
		reply_op(r, resp, name, rc, &e, 200);
	} else if (!action && !strcmp(m, "PATCH")) {
		int rc = guest_set(r->d, name, r->body, &e);
		reply_op(r, resp, name, rc, &e, 200);
	} else if (!action && !strcmp(m, "DELETE")) {
		if (guest_destroy(r->d, name, query_flag(r, "force"), &e)) {
			api_error(resp, e.status, "%s", e.msg);
		} else {
			cluster_guest_release(r->d, name);
			api_json(resp, 200, json_pack("{s:s}", "destroyed", name));
		}
	} else if (action && !strcmp(action, "start") && !strcmp(m, "POST")) {
		int rc = guest_start(r->d, name, &e);
		if (!rc)
			cluster_guest_state(r->d, name, "running");
		reply_op(r, resp, name, rc, &e, 200);
	} else if (action && !strcmp(action, "stop") && !strcmp(m, "POST")) {
		stop_guest(r, resp, name);
	} else if (action && !strcmp(action, "stats") && !strcmp(m, "GET")) {
		stats_guest(r, resp, name);
	} else if (action && strcmp(action, "start") && strcmp(action, "stop") &&
		   strcmp(action, "stats")) {
		api_error(resp, 404, "no such resource: %s", r->path);
	} else {
		api_error(resp, 405, "%s is not allowed on %s", m, r->path);
	}
}

/* In cluster mode the name is claimed cluster-wide first, and released
 * again when the local create fails. */
static void create_guest(struct api_req *r, struct api_resp *resp)
{
	struct op_error e;
	const char *name = json_string_value(json_object_get(r->body, "name"));
	json_t *job = NULL;
	if (!r->body) {
		api_error(resp, 400, "POST /v1/guests needs a JSON body");
	} else if (cluster_guest_claim(r->d, r->body, &e)) {
		api_error(resp, e.status, "%s", e.msg);
	} else if (guest_create(r->d, r->body, &job, &e)) {
		if (name)
			cluster_guest_release(r->d, name);
		api_error(resp, e.status, "%s", e.msg);
	} else if (job) {
		api_json(resp, 202, job);   /* a template or import: built by a job */
	} else {
		reply_guest(r, resp, name, 201);
	}
}

bool guests_route(struct api_req *r, struct api_resp *resp)
{
	static const char prefix[] = "/v1/guests";
	if (strncmp(r->path, prefix, sizeof(prefix) - 1))
		return false;
	const char *rest = r->path + sizeof(prefix) - 1;
	if (!*rest || !strcmp(rest, "/")) {
		if (!strcmp(r->method, "GET")) {
			list_guests(r, resp);
		} else if (!strcmp(r->method, "POST")) {
			create_guest(r, resp);
		} else {
			api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		}
		return true;
	}
	if (*rest != '/')
		return false;
	char name[128];
	const char *slash = strchr(rest + 1, '/');
	size_t len = slash ? (size_t)(slash - rest - 1) : strlen(rest + 1);
	if (len >= sizeof(name)) {
		api_error(resp, 400, "guest name too long");
		return true;
	}
	memcpy(name, rest + 1, len);
	name[len] = 0;
	const char *action = slash ? slash + 1 : NULL;
	/* A cluster guest another node owns is that node's to answer. */
	if (cluster_forward(r, resp, name))
		return true;
	if (action && !strncmp(action, "snapshots", 9) && (!action[9] || action[9] == '/')) {
		if (kvz_valid_name(name))
			snapshots_route(r, resp, name, action + 9);
		else
			api_error(resp, 400, "bad guest name \"%s\"", name);
		return true;
	}
	if (action && !strncmp(action, "backups", 7) && (!action[7] || action[7] == '/')) {
		if (kvz_valid_name(name))
			backups_route(r, resp, name, action + 7);
		else
			api_error(resp, 400, "bad guest name \"%s\"", name);
		return true;
	}
	if (action && !strcmp(action, "migrate")) {
		migrate_route(r, resp, name);
		return true;
	}
	if (action && (!*action || strchr(action, '/'))) {
		api_error(resp, 404, "no such resource: %s", r->path);
		return true;
	}
	one_guest(r, resp, name, action);
	return true;
}
