/* Routes of /v1/nodes (nodes.h does the work). */
#include <string.h>

#include "api.h"
#include "cluster.h"
#include "nodes.h"

static void one_node(struct api_req *r, struct api_resp *resp, const char *name)
{
	struct op_error e;
	if (!strcmp(r->method, "GET")) {
		json_t *n = node_show(r->d, name, &e);
		if (n)
			api_json(resp, 200, n);
		else
			api_error(resp, e.status, "%s", e.msg);
	} else if (!strcmp(r->method, "DELETE")) {
		if (node_remove(r->d, name, &e))
			api_error(resp, e.status, "%s", e.msg);
		else
			api_json(resp, 200, json_pack("{s:s}", "removed", name));
	} else {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
	}
}

/* In cluster mode the members come first (state up/down from their
 * leases, facts from their last load report), then registered nodes that
 * are not members; otherwise the registered nodes. */
static json_t *list_nodes(struct kvzd *d)
{
	json_t *registered = node_list(d);
	struct op_error e;
	json_t *members = cluster_active(d) ? cluster_nodes(d, &e) : NULL;
	if (!members)
		return registered;
	size_t i, j;
	json_t *n, *m;
	json_array_foreach(registered, i, n) {
		bool dup = false;
		json_array_foreach(members, j, m)
			dup = dup || json_equal(json_object_get(m, "name"), json_object_get(n, "name"));
		if (!dup)
			json_array_append(members, n);
	}
	json_decref(registered);
	return members;
}

bool nodes_route(struct api_req *r, struct api_resp *resp)
{
	static const char prefix[] = "/v1/nodes";
	if (strncmp(r->path, prefix, sizeof(prefix) - 1))
		return false;
	const char *rest = r->path + sizeof(prefix) - 1;
	struct op_error e;
	if (!*rest || !strcmp(rest, "/")) {
		if (!strcmp(r->method, "GET")) {
			api_json(resp, 200, list_nodes(r->d));
		} else if (!strcmp(r->method, "POST")) {
			const char *name = json_string_value(json_object_get(r->body, "name"));
			if (node_add(r->d, r->body, &e))
				api_error(resp, e.status, "%s", e.msg);
			else
				api_json(resp, 201, node_show(r->d, name, &e));
		} else {
			api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		}
		return true;
	}
	if (*rest != '/')
		return false;
	if (strchr(rest + 1, '/'))
		api_error(resp, 404, "no such resource: %s", r->path);
	else
		one_node(r, resp, rest + 1);
	return true;
}
