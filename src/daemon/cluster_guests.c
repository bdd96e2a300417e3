/* Guest records in etcd, CK_GUESTS + NAME: {"owner", "state", "ha",
 * "type", "def" (the create request: definitions are cluster-wide),
 * "restarts", "relocations"}. Every change is a compare-and-swap on the
 * record's mod_revision, and only the owner starts a guest: the owner
 * changes only when the HA manager moves a guest off a node whose lease
 * expired, after that node's watchdog has stopped it (cluster_fence.c),
 * so a guest never runs on two nodes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "log.h"
#include "parse.h"
#include "peer_client.h"
#include "store.h"

static void guest_key(const char *name, char *buf, size_t len)
{
	snprintf(buf, len, CK_GUESTS "%s", name);
}

/* The record of name: 1 found (*rec new reference), 0 none, -1 etcd error.
 * Caller holds c->rw for reading with c->joined. */
static int get_record(struct cluster *c, const char *name, json_t **rec, int64_t *rev,
		      char *err, size_t errlen)
{
	char key[ETCD_MAX_KEY];
	struct etcd_kvs k;
	*rec = NULL;
	guest_key(name, key, sizeof(key));
	if (etcd_range(c->etcd, key, false, &k, err, errlen))
		return -1;
	if (k.n) {
		*rec = cluster_kv_json(&k.kv[0]);
		*rev = k.kv[0].mod_rev;
	}
	etcd_kvs_free(&k);
	if (k.n && !*rec) {
		snprintf(err, errlen, "the cluster record of %s is not JSON", name);
		return -1;
	}
	return *rec != NULL;
}

static void owned_key(const char *node, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, CK_OWNED "%s/%s", node, name);
}

int cluster_record_write(struct cluster *c, const char *name, json_t *rec, int64_t rev,
			 const char *old_owner, bool *done, char *err, size_t errlen)
{
	char key[ETCD_MAX_KEY], newk[ETCD_MAX_KEY], oldk[ETCD_MAX_KEY];
	const char *owner = json_string_value(json_object_get(rec, "owner")) ?: "";
	guest_key(name, key, sizeof(key));
	owned_key(owner, name, newk, sizeof(newk));
	char *s = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	struct etcd_op ops[3] = {{.key = key, .value = s}, {.key = newk, .value = ""}};
	int n = 2;
	if (old_owner && strcmp(old_owner, owner)) {
		owned_key(old_owner, name, oldk, sizeof(oldk));
		ops[n++] = (struct etcd_op){.del = true, .key = oldk};
	}
	int rc = etcd_cas_multi(c->etcd, key, rev, ops, n, done, err, errlen);
	free(s);
	return rc;
}

static int put_record(struct cluster *c, const char *name, json_t *rec, int64_t rev, bool *done,
		      char *err, size_t errlen)
{
	/* The owner stays: the index entry is rewritten as it is. */
	return cluster_record_write(c, name, rec, rev, NULL, done, err, errlen);
}

static bool owned_by(json_t *rec, const char *node)
{
	const char *o = json_string_value(json_object_get(rec, "owner"));
	return o && !strcmp(o, node);
}

/* Runs fn under the read lock when this node is a member; 0 otherwise. */
#define WITH_CLUSTER(d, c) \
	struct cluster *c = (d)->cluster; \
	if (!c) \
		return 0; \
	pthread_rwlock_rdlock(&c->rw); \
	if (!c->joined) { \
		pthread_rwlock_unlock(&c->rw); \
		return 0; \
	}

int cluster_guest_claim(struct kvzd *d, json_t *def, struct op_error *e)
{
	WITH_CLUSTER(d, c);
	const char *name = json_string_value(json_object_get(def, "name"));
	char err[300];
	int rc = 0;
	if (!name || !kvz_valid_name(name)) {
		pthread_rwlock_unlock(&c->rw);
		return 0; /* guest_create says what is wrong */
	}
	json_t *rec = json_pack("{s:s, s:s, s:b, s:O, s:i, s:i}", "owner", c->o.name, "state", "stopped",
				"ha", 0, "def", def, "restarts", 0, "relocations", 0);
	const char *type = json_string_value(json_object_get(def, "type"));
	if (type)
		json_object_set_new(rec, "type", json_string(type));
	bool done = false;
	if (put_record(c, name, rec, 0, &done, err, sizeof(err))) {
		e->status = 503;
		snprintf(e->msg, sizeof(e->msg), "cannot record %s in the cluster: %s", name, err);
		rc = -1;
	} else if (!done) {
		json_t *old = NULL;
		int64_t rev;
		get_record(c, name, &old, &rev, err, sizeof(err));
		/* The HA manager's own record when it hands the guest here. */
		if (!owned_by(old, c->o.name) || strcmp(json_string_value(json_object_get(old, "state")) ?: "", "relocating")) {
			e->status = 409;
			snprintf(e->msg, sizeof(e->msg), "a guest named %s exists in the cluster (node %s)",
				 name, json_string_value(json_object_get(old, "owner")) ?: "?");
			rc = -1;
		}
		json_decref(old);
	}
	json_decref(rec);
	pthread_rwlock_unlock(&c->rw);
	return rc;
}

void cluster_guest_release(struct kvzd *d, const char *name)
{
	struct cluster *c = d->cluster;
	if (!c)
		return;
	pthread_rwlock_rdlock(&c->rw);
	json_t *rec = NULL;
	int64_t rev;
	char err[300];
	bool done;
	if (c->joined && get_record(c, name, &rec, &rev, err, sizeof(err)) == 1 &&
	    owned_by(rec, c->o.name)) {
		char key[ETCD_MAX_KEY], idx[ETCD_MAX_KEY];
		guest_key(name, key, sizeof(key));
		owned_key(c->o.name, name, idx, sizeof(idx));
		const struct etcd_op ops[] = {{.del = true, .key = key}, {.del = true, .key = idx}};
		etcd_cas_multi(c->etcd, key, rev, ops, 2, &done, err, sizeof(err));
	}
	json_decref(rec);
	pthread_rwlock_unlock(&c->rw);
}

int cluster_guest_may_start(struct kvzd *d, const char *name, struct op_error *e)
{
	if (d->cluster && atomic_load(&d->cluster->rejoining)) {
		e->status = 503;
		snprintf(e->msg, sizeof(e->msg), "this node has not rejoined its cluster yet (etcd "
			 "unreachable): not starting %s, which may run elsewhere", name);
		return -1;
	}
	WITH_CLUSTER(d, c);
	json_t *rec;
	int64_t rev;
	char err[300];
	int rc = get_record(c, name, &rec, &rev, err, sizeof(err));
	if (rc < 0) {
		e->status = 503;
		snprintf(e->msg, sizeof(e->msg), "cannot prove this node owns %s (%s): not starting it",
			 name, err);
	} else if (rc == 1 && !owned_by(rec, c->o.name)) {
		e->status = 409;
		snprintf(e->msg, sizeof(e->msg), "%s belongs to node %s", name,
			 json_string_value(json_object_get(rec, "owner")) ?: "?");
		rc = -1;
	} else {
		rc = 0;
	}
	json_decref(rec);
	pthread_rwlock_unlock(&c->rw);
	return rc;
}

/* Read, change, compare-and-swap; a few tries when another writer won. */
static int update(struct cluster *c, const char *name, const char *state, int ha, bool *is_ha)
{
	char err[300];
	for (int tries = 0; tries < 5; tries++) {
		json_t *rec;
		int64_t rev;
		bool done = false;
		if (get_record(c, name, &rec, &rev, err, sizeof(err)) != 1)
			return -1;
		if (!owned_by(rec, c->o.name)) {
			json_decref(rec);
			return -1;
		}
		if (state)
			json_object_set_new(rec, "state", json_string(state));
		*is_ha = ha > 0 || (ha < 0 && json_is_true(json_object_get(rec, "ha")));
		if (ha >= 0) {
			json_object_set_new(rec, "ha", json_boolean(ha));
			json_object_set_new(rec, "restarts", json_integer(0));
			json_object_set_new(rec, "relocations", json_integer(0));
		}
		int rc = put_record(c, name, rec, rev, &done, err, sizeof(err));
		json_decref(rec);
		if (rc)
			return -1;
		if (done)
			return 0;
	}
	return -1;
}

void cluster_guest_state(struct kvzd *d, const char *name, const char *state)
{
	struct cluster *c = d->cluster;
	if (!c)
		return;
	pthread_rwlock_rdlock(&c->rw);
	bool ha = false;
	if (c->joined && update(c, name, state, -1, &ha))
		kvz_debug("cluster: %s: cannot record state %s", name, state);
	pthread_rwlock_unlock(&c->rw);
	if (ha && !strcmp(state, "running"))
		cluster_fence_sync(c);
}

int cluster_guest_set_ha(struct kvzd *d, const char *name, bool ha, struct op_error *e)
{
	struct cluster *c = d->cluster;
	e->status = 400;
	snprintf(e->msg, sizeof(e->msg), "--ha needs cluster mode (kvz cluster init|join)");
	if (!c)
		return -1;
	pthread_rwlock_rdlock(&c->rw);
	int rc = -1;
	bool is_ha = false;
	if (c->joined) {
		rc = update(c, name, NULL, ha, &is_ha);
		e->status = 404;
		snprintf(e->msg, sizeof(e->msg), "no cluster guest named %s on this node", name);
	}
	pthread_rwlock_unlock(&c->rw);
	if (!rc && is_ha)
		cluster_fence_sync(c);
	return rc;
}

json_t *cluster_guest_list(struct kvzd *d, struct op_error *e)
{
	struct cluster *c = d->cluster;
	e->status = 400;
	snprintf(e->msg, sizeof(e->msg), "--all needs cluster mode (kvz cluster init|join)");
	if (!c)
		return NULL;
	pthread_rwlock_rdlock(&c->rw);
	json_t *out = NULL;
	struct etcd_kvs k;
	char err[300];
	if (!c->joined) {
		/* e says so */
	} else if (etcd_range(c->etcd, CK_GUESTS, true, &k, err, sizeof(err))) {
		e->status = 503;
		snprintf(e->msg, sizeof(e->msg), "cannot list the cluster's guests: %s", err);
	} else {
		out = json_array();
		for (size_t i = 0; i < k.n; i++) {
			json_t *rec = cluster_kv_json(&k.kv[i]);
			if (!rec)
				continue;
			json_object_set_new(rec, "name", json_string(k.kv[i].key + strlen(CK_GUESTS)));
			json_object_del(rec, "def");
			json_array_append_new(out, rec);
		}
		etcd_kvs_free(&k);
	}
	pthread_rwlock_unlock(&c->rw);
	return out;
}

int cluster_member_url(struct cluster *c, const char *node, char *url, size_t len)
{
	char key[ETCD_MAX_KEY], err[300];
	struct etcd_kvs k;
	snprintf(key, sizeof(key), CK_MEMBERS "%s", node);
	if (etcd_range(c->etcd, key, false, &k, err, sizeof(err)))
		return -1;
	json_t *m = k.n ? cluster_kv_json(&k.kv[0]) : NULL;
	etcd_kvs_free(&k);
	const char *u = json_string_value(json_object_get(m, "url"));
	int rc = u && peer_url_ok(u) ? 0 : -1;
	if (!rc)
		snprintf(url, len, "%s", u);
	json_decref(m);
	return rc;
}

bool cluster_forward(struct api_req *r, struct api_resp *resp, const char *name)
{
	struct cluster *c = r->d->cluster;
	if (!c || !kvz_valid_name(name))
		return false;
	pthread_rwlock_rdlock(&c->rw);
	json_t *rec = NULL;
	int64_t rev;
	char err[300], url[256], owner[64] = "";
	bool fwd = c->joined && get_record(c, name, &rec, &rev, err, sizeof(err)) == 1 &&
		   !owned_by(rec, c->o.name);
	if (fwd)
		snprintf(owner, sizeof(owner), "%s", json_string_value(json_object_get(rec, "owner")) ?: "");
	json_decref(rec);
	int urc = fwd ? cluster_member_url(c, owner, url, sizeof(url)) : 0;
	pthread_rwlock_unlock(&c->rw);
	if (!fwd)
		return false;
	if (urc) {
		api_error(resp, 502, "%s belongs to node %s, whose address is unknown", name, owner);
		return true;
	}
	char path[600];
	const char *force = api_query(r, "force");
	snprintf(path, sizeof(path), "%s%s%s", r->path, force ? "?force=" : "", force ? force : "");
	json_t *out = NULL;
	long st = cluster_peer_call(c, url, r->method, path, r->body, &out, err, sizeof(err));
	if (st < 0) {
		api_error(resp, 502, "%s belongs to node %s, which does not answer: %s", name, owner, err);
		json_decref(out);
	} else if (!out) {
		api_error(resp, 502, "node %s answered HTTP %ld without JSON", owner, st);
	} else {
		api_json(resp, (int)st, out);
	}
	return true;
}

/* Starts a guest the HA manager handed to this node: its definition makes
 * the local record when there is none. */
static void take_over(struct cluster *c, const char *name, json_t *rec, int64_t rev, bool crashed)
{
	struct op_error e;
	char err[300];
	json_t *local = store_guest_get(c->d->store, name);
	int rc = 0;
	/* A crashed HA guest is restarted here, --ha-max-restarts times. */
	json_int_t tries = json_integer_value(json_object_get(rec, "restarts"));
	if (crashed && tries >= c->o.max_restarts) {
		rc = -1;
		snprintf(e.msg, sizeof(e.msg), "crashed again after %lld restarts", (long long)tries);
	} else if (crashed) {
		json_object_set_new(rec, "restarts", json_integer(tries + 1));
	}
	/* A definition that builds its disk (a template VM) starts a job: the
	 * start below is then refused until it is built (an HA guest's disk
	 * belongs on shared storage, not rebuilt). */
	json_t *job = NULL;
	if (!rc && !local)
		rc = guest_create(c->d, json_object_get(rec, "def"), &job, &e);
	json_decref(job);
	json_decref(local);
	if (!rc)
		rc = guest_start(c->d, name, &e);
	if (crashed && rc) {
		json_object_set_new(rec, "state", json_string("failed"));
		kvz_warn("cluster: HA: %s: %s", name, e.msg);
		store_event_add(c->d->store, name, "ha-failed", e.msg);
	} else if (!rc) {
		json_object_set_new(rec, "state", json_string("running"));
		kvz_info("cluster: HA: started %s here", name);
		store_event_add(c->d->store, name, "ha-started", c->o.name);
	} else {
		json_int_t n = json_integer_value(json_object_get(rec, "restarts")) + 1;
		json_object_set_new(rec, "restarts", json_integer(n));
		if (n >= c->o.max_restarts)
			json_object_set_new(rec, "state", json_string("failed"));
		kvz_warn("cluster: HA: cannot start %s here (try %lld): %s", name, (long long)n, e.msg);
		store_event_add(c->d->store, name, "ha-start-failed", e.msg);
	}
	bool done;
	if (put_record(c, name, rec, rev, &done, err, sizeof(err)) || !done)
		kvz_warn("cluster: %s: record changed meanwhile", name);
}

/* A VM's definition as its record should carry it now: the create
 * request with the disks (added, grown or removed since), memory and CPUs
 * the owner's store has, so that a relocation rebuilds the VM as it is,
 * not as it was made. NULL when def says that already, or for a VM made
 * from a template or an import (its one disk is made by a job; a create
 * cannot give more). */
static json_t *vm_def_now(json_t *def, json_t *cfg)
{
	json_t *disks = json_object_get(cfg, "disks");
	if (!json_is_object(def) || json_object_get(def, "template") || json_object_get(def, "import"))
		return NULL;
	json_t *want = json_deep_copy(def);
	for (const char *const *k = (const char *const[]){"disk", "disk_format", "disk_mode",
							  "disk_base", "disks", NULL}; *k; k++)
		json_object_del(want, *k);
	if (json_array_size(disks)) {
		json_t *list = json_array();
		size_t i;
		json_t *o;
		json_array_foreach(disks, i, o) {
			/* A field the store lacks is left to the create's default. */
			json_t *one = json_pack("{s:O, s:O*, s:O*}", "size", json_object_get(o, "size"),
						"format", json_object_get(o, "format"), "mode",
						json_object_get(o, "mode"));
			if (json_is_string(json_object_get(o, "base")))
				json_object_set(one, "base", json_object_get(o, "base"));
			json_array_append_new(list, one ? one : json_null());
		}
		json_object_set_new(want, "disks", list);
	}
	for (const char *const *k = (const char *const[]){"memory", "cpus", NULL}; *k; k++)
		if (json_is_integer(json_object_get(cfg, *k)))
			json_object_set(want, *k, json_object_get(cfg, *k));
	if (json_equal(want, def)) {
		json_decref(want);
		return NULL;
	}
	return want;
}

/* The owner keeps an HA VM's definition in step with its store (above). */
static void sync_def(struct cluster *c, const char *name, json_t *rec, int64_t rev, json_t *g)
{
	char err[300];
	bool done = false;
	if (strcmp(json_string_value(json_object_get(g, "type")) ?: "", "vm"))
		return;
	json_t *now = vm_def_now(json_object_get(rec, "def"), json_object_get(g, "config"));
	if (!now)
		return;
	json_object_set_new(rec, "def", now);
	if (put_record(c, name, rec, rev, &done, err, sizeof(err)) || !done)
		kvz_debug("cluster: %s: definition not updated (next tick): %s", name,
			  done ? err : "record changed meanwhile");
}

int cluster_guests_tick(struct cluster *c, bool sure, pid_t *pids, unsigned long long *starts,
			int max)
{
	/* Only this node's guests, through the owner index: a node's tick
	 * costs what it owns, not what the cluster holds. */
	struct etcd_kvs k;
	char err[300], prefix[ETCD_MAX_KEY];
	snprintf(prefix, sizeof(prefix), CK_OWNED "%s/", c->o.name);
	if (etcd_range(c->etcd, prefix, true, &k, err, sizeof(err)))
		return 0;
	int n = 0;
	for (size_t i = 0; i < k.n; i++) {
		const char *name = k.kv[i].key + strlen(prefix);
		json_t *rec = NULL;
		int64_t rev;
		if (get_record(c, name, &rec, &rev, err, sizeof(err)) != 1 || !owned_by(rec, c->o.name)) {
			json_decref(rec);
			continue;
		}
		const char *state = json_string_value(json_object_get(rec, "state")) ?: "";
		bool ha = json_is_true(json_object_get(rec, "ha"));
		json_t *g = ha ? store_guest_get(c->d->store, name) : NULL;
		const char *local = json_string_value(json_object_get(g, "state")) ?: "";
		/* Handed here, or an HA guest of ours that crashed (a user's
		 * stop makes the record "stopped" and the guest "stopped"). */
		if (sure && (!strcmp(state, "relocating") ||
			     (ha && !strcmp(state, "running") && !strcmp(local, "crashed")))) {
			take_over(c, name, rec, rev, strcmp(state, "relocating") != 0);
			json_decref(g);
			g = ha ? store_guest_get(c->d->store, name) : NULL;
		} else if (sure && g) {
			sync_def(c, name, rec, rev, g);
		}
		json_int_t pid = json_integer_value(json_object_get(g, "pid"));
		if (g && pid > 1 && n < max &&
		    !strcmp(json_string_value(json_object_get(g, "state")) ?: "", "running")) {
			pids[n] = (pid_t)pid;
			starts[n++] = (unsigned long long)json_integer_value(json_object_get(g, "pid_start"));
		}
		json_decref(g);
		json_decref(rec);
	}
	etcd_kvs_free(&k);
	return n;
}

int cluster_owned_ha(struct cluster *c, char *names, size_t len)
{
	struct etcd_kvs k;
	char err[300], prefix[ETCD_MAX_KEY];
	snprintf(prefix, sizeof(prefix), CK_OWNED "%s/", c->o.name);
	if (etcd_range(c->etcd, prefix, true, &k, err, sizeof(err)))
		return -1;
	int n = 0;
	names[0] = 0;
	for (size_t i = 0; i < k.n; i++) {
		const char *name = k.kv[i].key + strlen(prefix);
		json_t *rec = NULL;
		int64_t rev;
		if (get_record(c, name, &rec, &rev, err, sizeof(err)) == 1 && owned_by(rec, c->o.name) &&
		    json_is_true(json_object_get(rec, "ha"))) {
			const char *st = json_string_value(json_object_get(rec, "state")) ?: "";
			if (!strcmp(st, "running") || !strcmp(st, "relocating")) {
				size_t used = strlen(names);
				snprintf(names + used, len - used, "%s%s", n ? " " : "", name);
				n++;
			}
		}
		json_decref(rec);
	}
	etcd_kvs_free(&k);
	return n;
}

int cluster_guest_owner(struct cluster *c, const char *name, char *owner, size_t len,
			json_t **rec_out)
{
	json_t *rec = NULL;
	int64_t rev;
	char err[300];
	int rc = get_record(c, name, &rec, &rev, err, sizeof(err));
	if (rc == 1 && !json_string_value(json_object_get(rec, "owner")))
		rc = 0;   /* a record without an owner is no one's */
	if (rc == 1)
		snprintf(owner, len, "%s", json_string_value(json_object_get(rec, "owner")));
	if (rec_out && rc == 1)
		*rec_out = rec;
	else
		json_decref(rec);
	return rc;
}
