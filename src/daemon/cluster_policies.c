/* Policy rules in cluster mode (docs/cluster.md): kept in etcd under
 * CK_POLICIES NAME, so every member lists the same rules and they outlive
 * any one node. Every change is one transaction that also rewrites
 * CK_POLICY_WRITES and holds only if that key's revision is the one read
 * with the rules: a conflict check made against that list holds
 * cluster-wide, as policy_write_lock makes it hold in one process.
 *
 * The rules run on one node: the HA manager (the holder of the
 * lease-guarded CK_LEADER key), while its lease is sure. It acts on a
 * guest another member owns by asking that member (POST
 * /v1/policies/RULE/act, naming the stored rule, never sending one), whose
 * guest operations keep their own checks; a start still passes the
 * ownership gate in guest_start. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "log.h"
#include "parse.h"
#include "peer_client.h"
#include "store.h"

enum cluster_policy_role cluster_policy_role(struct kvzd *d)
{
	struct cluster *c = d->cluster;
	if (!c)
		return CLUSTER_POLICY_LOCAL;
	if (!cluster_active(d))
		return atomic_load(&c->rejoining) ? CLUSTER_POLICY_WAIT : CLUSTER_POLICY_LOCAL;
	pthread_mutex_lock(&c->state_lock);
	bool lead = c->leader && kvzd_now_ms() - c->last_ok_ms < cluster_fence_ms(c);
	pthread_mutex_unlock(&c->state_lock);
	return lead ? CLUSTER_POLICY_LEADER : CLUSTER_POLICY_FOLLOWER;
}

static int unavailable(struct op_error *e, const char *what, const char *err)
{
	e->status = 503;
	snprintf(e->msg, sizeof(e->msg), "%s: %s", what, err);
	return -1;
}

/* A stored rule as the API shows it, checked (etcd is another writer). */
static json_t *policy_of(const struct etcd_kv *kv)
{
	json_t *v = cluster_kv_json(kv);
	const char *name = kv->key + strlen(CK_POLICIES);
	if (!v || !kvz_valid_name(name) || !json_is_object(json_object_get(v, "rule")) ||
	    !json_is_boolean(json_object_get(v, "enabled"))) {
		kvz_debug("cluster: ignoring bad policy record %s", kv->key);
		json_decref(v);
		return NULL;
	}
	json_object_set_new(v, "name", json_string(name));
	return v;
}

json_t *cluster_policy_list(struct kvzd *d, int64_t *rev, struct op_error *e)
{
	struct cluster *c = d->cluster;
	struct etcd_kvs g = {0}, k = {0};
	char err[300];
	pthread_rwlock_rdlock(&c->rw);
	int rc = -1;
	if (!c->joined)
		snprintf(err, sizeof(err), "not a cluster member");
	/* The guard first: a change committed between the two reads makes a
	 * commit at this revision fail, never pass on a stale list. */
	else if (!etcd_range(c->etcd, CK_POLICY_WRITES, false, &g, err, sizeof(err)))
		rc = etcd_range(c->etcd, CK_POLICIES, true, &k, err, sizeof(err));
	pthread_rwlock_unlock(&c->rw);
	*rev = g.n ? g.kv[0].mod_rev : 0;
	etcd_kvs_free(&g);
	if (rc) {
		unavailable(e, "cannot read the cluster's policies", err);
		return NULL;
	}
	json_t *out = json_array();
	for (size_t i = 0; i < k.n; i++) {
		json_t *p = policy_of(&k.kv[i]);
		if (p)
			json_array_append_new(out, p);
	}
	etcd_kvs_free(&k);
	return out;
}

int cluster_policy_commit(struct kvzd *d, int64_t rev, const char *name, json_t *value,
			  struct op_error *e)
{
	struct cluster *c = d->cluster;
	char key[ETCD_MAX_KEY], err[300];
	snprintf(key, sizeof(key), CK_POLICIES "%s", name);
	char *v = value ? json_dumps(value, JSON_COMPACT) : NULL;
	if (value && !v)
		return unavailable(e, "out of memory", name);
	struct etcd_op ops[2] = {{.key = CK_POLICY_WRITES, .value = name},
				 {.del = !value, .key = key, .value = v}};
	bool done = false;
	pthread_rwlock_rdlock(&c->rw);
	int rc = c->joined ? etcd_cas_multi(c->etcd, CK_POLICY_WRITES, rev, ops, 2, &done, err,
					    sizeof(err)) : -1;
	if (!c->joined)
		snprintf(err, sizeof(err), "not a cluster member");
	pthread_rwlock_unlock(&c->rw);
	free(v);
	if (rc)
		return unavailable(e, "cannot change the cluster's policies", err);
	if (!done) {
		e->status = 409;
		snprintf(e->msg, sizeof(e->msg),
			 "the cluster's policies changed meanwhile; try again");
		return -1;
	}
	return 0;
}

/* One guest record as the engine sees guests; the local state (which
 * knows "crashed") when this node owns it. */
static json_t *policy_guest(struct cluster *c, const char *name, json_t *rec)
{
	const char *owner = json_string_value(json_object_get(rec, "owner")) ?: "";
	json_t *def = json_object_get(rec, "def");
	json_t *tags = json_object_get(def, "tags");
	json_t *type = json_object_get(rec, "type") ?: json_object_get(def, "type");
	json_t *local = !strcmp(owner, c->o.name) ? store_guest_get(c->d->store, name) : NULL;
	json_t *state = json_object_get(local ? local : rec, "state");
	if (local)
		tags = json_object_get(json_object_get(local, "config"), "tags");
	json_t *g = json_pack("{s:s, s:s, s:s, s:o, s:s}", "name", name, "type",
			      json_string_value(type) ?: "ct", "state",
			      json_string_value(state) ?: "unknown", "tags",
			      json_is_array(tags) ? json_incref(tags) : json_array(), "owner", owner);
	json_decref(local);
	return g;
}

json_t *cluster_policy_guests(struct kvzd *d)
{
	struct cluster *c = d->cluster;
	json_t *out = json_array();
	struct etcd_kvs k = {0};
	char err[300];
	pthread_rwlock_rdlock(&c->rw);
	if (c->joined && !etcd_range(c->etcd, CK_GUESTS, true, &k, err, sizeof(err))) {
		for (size_t i = 0; i < k.n; i++) {
			const char *name = k.kv[i].key + strlen(CK_GUESTS);
			json_t *rec = cluster_kv_json(&k.kv[i]);
			json_t *g = rec && kvz_valid_name(name) ? policy_guest(c, name, rec) : NULL;
			if (g)
				json_array_append_new(out, g);
			json_decref(rec);
		}
		etcd_kvs_free(&k);
	}
	pthread_rwlock_unlock(&c->rw);
	return out;
}

int cluster_policy_forward(struct kvzd *d, const char *rule, const char *guest,
			   const char *reason, char *res, size_t len)
{
	struct cluster *c = d->cluster;
	if (!c || !kvz_valid_name(guest))
		return 1;
	char owner[64] = "", url[256], err[300];
	pthread_rwlock_rdlock(&c->rw);
	int rc = c->joined ? cluster_guest_owner(c, guest, owner, sizeof(owner), NULL) : 0;
	bool here = rc == 0 || (rc == 1 && !strcmp(owner, c->o.name));
	int urc = rc == 1 && !here ? cluster_member_url(c, owner, url, sizeof(url)) : 0;
	pthread_rwlock_unlock(&c->rw);
	if (rc < 0) {
		snprintf(res, len, "cannot find %s's node: etcd does not answer", guest);
		return -1;
	}
	if (here)
		return 1;
	if (urc) {
		snprintf(res, len, "%s belongs to node %s, whose address is unknown", guest, owner);
		return -1;
	}
	char path[200];
	snprintf(path, sizeof(path), "/v1/policies/%s/act", rule);
	json_t *body = json_pack("{s:s, s:s}", "guest", guest, "reason", reason);
	json_t *out = NULL;
	long st = cluster_peer_call(c, url, "POST", path, body, &out, err, sizeof(err));
	json_decref(body);
	const char *r = json_string_value(json_object_get(out, "result"));
	const char *msg = json_string_value(json_object_get(json_object_get(out, "error"), "message"));
	int ok = st == 200 && json_is_true(json_object_get(out, "ok"));
	if (st < 0)
		snprintf(res, len, "on %s: %s", owner, err);
	else
		snprintf(res, len, "on %s: %s", owner, r ? r : msg ? msg : "no answer");
	json_decref(out);
	return ok ? 0 : -1;
}

int cluster_policy_owned_here(struct kvzd *d, const char *guest, struct op_error *e)
{
	struct cluster *c = d->cluster;
	char owner[64] = "";
	int rc = -2;
	if (c) {
		pthread_rwlock_rdlock(&c->rw);
		rc = c->joined ? cluster_guest_owner(c, guest, owner, sizeof(owner), NULL) : -2;
		if (rc == 1 && strcmp(owner, c->o.name))
			rc = 2;
		pthread_rwlock_unlock(&c->rw);
	}
	if (rc == 1)
		return 0;
	e->status = rc == -1 ? 503 : 409;
	if (rc == -1)
		snprintf(e->msg, sizeof(e->msg), "cannot read %s's record from etcd", guest);
	else if (rc == 2)
		snprintf(e->msg, sizeof(e->msg), "%s belongs to node %s", guest, owner);
	else
		snprintf(e->msg, sizeof(e->msg), "%s is not a guest of this cluster node", guest);
	return -1;
}
