#include "policy_store.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "cluster.h"
#include "store.h"

/* Makes "check for conflicts, then insert or enable" one step in this
 * process, so that two clients adding opposing rules at once cannot both
 * succeed. Global because one lock per process is what is wanted. */
static pthread_mutex_t policy_write_lock = PTHREAD_MUTEX_INITIALIZER;

static int fail(struct op_error *e, int status, const char *fmt, const char *name)
{
	e->status = status;
	snprintf(e->msg, sizeof(e->msg), fmt, name);
	return -1;
}

/* Rules are in etcd for a member; a member not rejoined yet has none. */
static int where(struct kvzd *d, bool *cluster, struct op_error *e)
{
	enum cluster_policy_role role = cluster_policy_role(d);
	*cluster = role != CLUSTER_POLICY_LOCAL;
	if (role == CLUSTER_POLICY_WAIT)
		return fail(e, 503, "%s", "this node is a cluster member still rejoining: "
			    "the cluster's policies are in etcd, which does not answer");
	return 0;
}

json_t *policy_store_list(struct kvzd *d, struct op_error *e)
{
	bool cluster;
	int64_t rev;
	if (where(d, &cluster, e))
		return NULL;
	return cluster ? cluster_policy_list(d, &rev, e) : store_policy_list(d->store);
}

json_t *policy_store_get(struct kvzd *d, const char *name)
{
	struct op_error e;
	json_t *list = policy_store_list(d, &e);
	size_t i;
	json_t *p, *found = NULL;
	json_array_foreach(list, i, p)
		if (!strcmp(json_string_value(json_object_get(p, "name")) ?: "", name))
			found = json_incref(p);
	json_decref(list);
	return found;
}

int policy_store_begin(struct kvzd *d, struct policy_txn *t, struct op_error *e)
{
	memset(t, 0, sizeof(*t));
	if (where(d, &t->cluster, e))
		return -1;
	pthread_mutex_lock(&policy_write_lock);
	t->rules = t->cluster ? cluster_policy_list(d, &t->rev, e) : store_policy_list(d->store);
	if (!t->rules) {
		pthread_mutex_unlock(&policy_write_lock);
		return -1;
	}
	return 0;
}

json_t *policy_txn_find(struct policy_txn *t, const char *name)
{
	size_t i;
	json_t *p;
	json_array_foreach(t->rules, i, p)
		if (!strcmp(json_string_value(json_object_get(p, "name")) ?: "", name))
			return p;
	return NULL;
}

int policy_store_insert(struct kvzd *d, struct policy_txn *t, const char *name, json_t *rule,
			struct op_error *e)
{
	if (!t->cluster) {
		int rc = store_policy_insert(d->store, name, rule, true);
		return rc == 1 ? fail(e, 409, "policy %s exists", name)
		       : rc ? fail(e, 500, "cannot store policy %s", name) : 0;
	}
	if (policy_txn_find(t, name))
		return fail(e, 409, "policy %s exists", name);
	json_int_t now = (json_int_t)kvzd_now_ms();
	json_t *v = json_pack("{s:O, s:b, s:I, s:I}", "rule", rule, "enabled", 1, "created_ms", now,
			      "updated_ms", now);
	int rc = cluster_policy_commit(d, t->rev, name, v, e);
	json_decref(v);
	return rc;
}

int policy_store_enable(struct kvzd *d, struct policy_txn *t, const char *name, bool on,
			struct op_error *e)
{
	json_t *p = policy_txn_find(t, name);
	if (!p)
		return fail(e, 404, "no such policy: %s", name);
	if (!t->cluster)
		return store_policy_set_enabled(d->store, name, on)
			       ? fail(e, 500, "cannot change policy %s", name) : 0;
	json_t *v = json_deep_copy(p);
	json_object_del(v, "name");
	json_object_set_new(v, "enabled", json_boolean(on));
	json_object_set_new(v, "updated_ms", json_integer((json_int_t)kvzd_now_ms()));
	int rc = cluster_policy_commit(d, t->rev, name, v, e);
	json_decref(v);
	return rc;
}

int policy_store_delete(struct kvzd *d, struct policy_txn *t, const char *name,
			struct op_error *e)
{
	if (!t->cluster) {
		int rc = store_policy_delete(d->store, name);
		return rc == 1 ? fail(e, 404, "no such policy: %s", name)
		       : rc ? fail(e, 500, "cannot remove policy %s", name) : 0;
	}
	if (!policy_txn_find(t, name))
		return fail(e, 404, "no such policy: %s", name);
	return cluster_policy_commit(d, t->rev, name, NULL, e);
}

void policy_store_end(struct policy_txn *t)
{
	json_decref(t->rules);
	t->rules = NULL;
	pthread_mutex_unlock(&policy_write_lock);
}
