/* /v1/cluster: init, join, leave, status (cluster_member.c does the work),
 * and the members' view for /v1/nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"

static int not_member(struct op_error *e)
{
	e->status = 409;
	snprintf(e->msg, sizeof(e->msg), "this node is not a cluster member");
	return -1;
}

json_t *cluster_nodes(struct kvzd *d, struct op_error *e)
{
	struct cluster *c = d->cluster;
	if (!cluster_active(d)) {
		not_member(e);
		return NULL;
	}
	pthread_rwlock_rdlock(&c->rw);
	struct etcd_kvs m, a;
	char err[300];
	json_t *out = NULL;
	if (etcd_range(c->etcd, CK_MEMBERS, true, &m, err, sizeof(err))) {
		e->status = 503;
		snprintf(e->msg, sizeof(e->msg), "cannot read the members: %s", err);
	} else if (etcd_range(c->etcd, CK_ALIVE, true, &a, err, sizeof(err))) {
		e->status = 503;
		snprintf(e->msg, sizeof(e->msg), "cannot read the members: %s", err);
		etcd_kvs_free(&m);
	} else {
		out = json_array();
		for (size_t i = 0; i < m.n; i++) {
			const char *name = m.kv[i].key + strlen(CK_MEMBERS);
			json_t *rec = cluster_kv_json(&m.kv[i]);
			json_t *n = json_pack("{s:s, s:b, s:s, s:b}", "name", name, "cluster", 1,
					      "state", "down", "self", !strcmp(name, c->o.name));
			json_t *url = json_object_get(rec, "url");
			if (json_is_string(url))
				json_object_set(n, "url", url);
			for (size_t j = 0; j < a.n; j++) {
				if (strcmp(a.kv[j].key + strlen(CK_ALIVE), name))
					continue;
				json_t *f = cluster_kv_json(&a.kv[j]);
				json_object_set_new(n, "state", json_string("up"));
				if (f)
					json_object_set_new(n, "facts", f);
			}
			json_decref(rec);
			json_array_append_new(out, n);
		}
		etcd_kvs_free(&m);
		etcd_kvs_free(&a);
	}
	pthread_rwlock_unlock(&c->rw);
	return out;
}

static json_t *etcd_health(struct cluster *c)
{
	struct etcd_member_status st[ETCD_MAX_ENDPOINTS];
	int n = etcd_status_all(c->etcd, st);
	json_t *out = json_array();
	for (int i = 0; i < n; i++) {
		char id[24];
		snprintf(id, sizeof(id), "%016llx", (unsigned long long)st[i].member);
		json_t *m = json_pack("{s:s, s:b}", "endpoint", st[i].endpoint, "healthy", st[i].healthy);
		if (st[i].healthy) {
			json_object_set_new(m, "member_id", json_string(id));
			json_object_set_new(m, "is_leader", json_boolean(st[i].member == st[i].leader));
			json_object_set_new(m, "version", json_string(st[i].version));
		} else {
			json_object_set_new(m, "error", json_string(st[i].error));
		}
		json_array_append_new(out, m);
	}
	return out;
}

json_t *cluster_status(struct kvzd *d, struct op_error *e)
{
	struct cluster *c = d->cluster;
	if (!cluster_active(d))
		return c && atomic_load(&c->rejoining) ? json_pack("{s:b, s:b}", "member", 0, "rejoining", 1)
						       : json_pack("{s:b}", "member", 0);
	json_t *members = cluster_nodes(d, e);
	if (!members)
		return NULL;
	pthread_rwlock_rdlock(&c->rw);
	struct etcd_kvs k;
	char err[300];
	json_t *out = json_pack("{s:b, s:s, s:o}", "member", 1, "node", c->o.name, "members", members);
	if (!etcd_range(c->etcd, CK_LEADER, false, &k, err, sizeof(err))) {
		if (k.n)
			json_object_set_new(out, "ha_manager", json_string(k.kv[0].value));
		etcd_kvs_free(&k);
	}
	pthread_mutex_lock(&c->state_lock);
	json_object_set_new(out, "lease_ok_ms_ago", c->last_ok_ms ?
			    json_integer(kvzd_now_ms() - c->last_ok_ms) : json_null());
	pthread_mutex_unlock(&c->state_lock);
	json_object_set_new(out, "etcd", etcd_health(c));
	json_object_set_new(out, "events_watch", json_boolean(atomic_load(&c->ev_watching)));
	pthread_rwlock_unlock(&c->rw);
	return out;
}

/* The answer to init and join: the status, and once, for init, the
 * secret the other nodes join with (also in STATE/cluster.key here). */
static json_t *joined_status(struct kvzd *d, bool init)
{
	struct op_error e;
	json_t *s = cluster_status(d, &e);
	if (!s)
		s = json_pack("{s:b}", "member", 1);
	if (init) {
		struct cluster *c = d->cluster;
		pthread_rwlock_rdlock(&c->rw);
		json_object_set_new(s, "secret", json_string(c->secret));
		pthread_rwlock_unlock(&c->rw);
	}
	return s;
}

bool cluster_route(struct api_req *r, struct api_resp *resp)
{
	static const char prefix[] = "/v1/cluster";
	if (strncmp(r->path, prefix, sizeof(prefix) - 1))
		return false;
	const char *rest = r->path + sizeof(prefix) - 1;
	struct op_error e;
	bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST");
	if ((!*rest || !strcmp(rest, "/")) && get) {
		json_t *s = cluster_status(r->d, &e);
		if (s)
			api_json(resp, 200, s);
		else
			api_error(resp, e.status, "%s", e.msg);
	} else if (post && (!strcmp(rest, "/init") || !strcmp(rest, "/join"))) {
		if (cluster_join(r->d, r->body, !strcmp(rest, "/init"), &e))
			api_error(resp, e.status, "%s", e.msg);
		else
			api_json(resp, 200, joined_status(r->d, !strcmp(rest, "/init")));
	} else if (post && !strcmp(rest, "/leave")) {
		if (cluster_leave(r->d, &e))
			api_error(resp, e.status, "%s", e.msg);
		else
			api_json(resp, 200, json_pack("{s:b}", "member", 0));
	} else if (!*rest || !strcmp(rest, "/") || !strcmp(rest, "/init") ||
		   !strcmp(rest, "/join") || !strcmp(rest, "/leave")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
	} else if (*rest == '/') {
		api_error(resp, 404, "no such resource: %s", r->path);
	} else {
		return false;
	}
	return true;
}
