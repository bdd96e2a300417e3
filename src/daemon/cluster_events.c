/* Cluster-wide events (docs/cluster.md): each member copies its own new
 * events (its SQLite events table stays the record) to etcd under
 * CK_EVENTS GUEST/NODE-ID, from its membership thread, once a second. The
 * keys sit on an hourly lease of the node that lives CLUSTER_EVENT_KEEP_S
 * longer, so etcd forgets events after about a day without anyone
 * trimming. A key's create revision is the event's cluster-wide id: it
 * grows with every write to etcd, so "since" works across nodes, and a
 * copy written again (after a restart) keeps its id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_internal.h"
#include "log.h"
#include "store.h"

#define LEASE_EVERY_MS (3600 * 1000LL)   /* a new retention lease this often */
#define BACKLOG_MAX 10000                /* events waiting to be copied; older ones stay local */
#define PUBLISH_MS 300                   /* copying time per tick: the tick also pets the watchdog */
#define REPUBLISH 200                    /* a (re)joined node copies again its last ones */

/* The retention lease to write under now; 0 when etcd would not grant one. */
static int64_t retention_lease(struct cluster *c)
{
	int64_t now = kvzd_now_ms();
	if (c->ev_lease && now - c->ev_lease_ms < LEASE_EVERY_MS)
		return c->ev_lease;
	char err[300];
	int64_t id;
	if (etcd_lease_grant(c->etcd, CLUSTER_EVENT_KEEP_S + (int)(LEASE_EVERY_MS / 1000), &id, err,
			     sizeof(err))) {
		kvz_debug("cluster: events lease: %s", err);
		return 0;
	}
	c->ev_lease = id;
	c->ev_lease_ms = now;
	return id;
}

static int publish_one(struct cluster *c, json_t *ev, int64_t lease)
{
	char key[ETCD_MAX_KEY], err[300];
	json_int_t id = json_integer_value(json_object_get(ev, "id"));
	const char *guest = json_string_value(json_object_get(ev, "guest")) ?: "-";
	snprintf(key, sizeof(key), CK_EVENTS "%s/%s-%lld", guest, c->o.name, (long long)id);
	json_t *v = json_pack("{s:s, s:I, s:O, s:s, s:O, s:O}", "node", c->o.name, "node_id", id,
			      "ts_ms", json_object_get(ev, "ts_ms"), "guest", guest, "type",
			      json_object_get(ev, "type"), "detail",
			      json_object_get(ev, "detail") ?: json_null());
	char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	int rc = s ? etcd_put(c->etcd, key, s, lease, err, sizeof(err)) : -1;
	if (rc && s)
		kvz_debug("cluster: event %s: %s", key, err);
	free(s);
	json_decref(v);
	return rc;
}

void cluster_events_publish(struct cluster *c)
{
	if (!c->ev_started) {
		int64_t last = store_event_last_id(c->d->store);
		c->ev_cursor = last > REPUBLISH ? last - REPUBLISH : 0;
		c->ev_started = true;
	}
	int64_t lease = retention_lease(c);
	if (!lease)
		return;
	int64_t t0 = kvzd_now_ms();
	json_t *list = store_event_list(c->d->store, c->ev_cursor, NULL, BACKLOG_MAX);
	size_t i;
	json_t *ev;
	json_array_foreach(list, i, ev) {
		if (kvzd_now_ms() - t0 > PUBLISH_MS)
			break;   /* the rest, oldest first, on the next tick */
		if (publish_one(c, ev, lease)) {
			/* etcd away, or it lost the lease: a new one next time. */
			c->ev_lease = 0;
			break;
		}
		c->ev_cursor = json_integer_value(json_object_get(ev, "id"));
	}
	json_decref(list);
}

/* An event as etcd holds it, checked (another member wrote it), with its
 * cluster-wide id; NULL when it does not check out. */
static json_t *event_of(const struct etcd_kv *kv)
{
	json_t *v = cluster_kv_json(kv);
	const char *node = json_string_value(json_object_get(v, "node"));
	const char *guest = json_string_value(json_object_get(v, "guest"));
	const char *type = json_string_value(json_object_get(v, "type"));
	json_t *detail = json_object_get(v, "detail");
	json_t *out = NULL;
	if (node && guest && type && (!detail || json_is_string(detail) || json_is_null(detail)))
		out = json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:O?}", "id",
				(json_int_t)kv->create_rev, "node", node, "node_id",
				json_integer_value(json_object_get(v, "node_id")), "ts_ms",
				json_integer_value(json_object_get(v, "ts_ms")), "guest", guest,
				"type", type, "detail", json_is_string(detail) ? detail : NULL);
	json_decref(v);
	return out;
}

static int by_rev(const void *a, const void *b)
{
	int64_t x = (*(struct etcd_kv *const *)a)->create_rev;
	int64_t y = (*(struct etcd_kv *const *)b)->create_rev;
	return (x > y) - (x < y);
}

json_t *cluster_events_list(struct kvzd *d, int64_t since, const char *guest, int limit,
			    struct op_error *e)
{
	struct cluster *c = d->cluster;
	char prefix[ETCD_MAX_KEY], err[300];
	snprintf(prefix, sizeof(prefix), CK_EVENTS "%s%s", guest ? guest : "", guest ? "/" : "");
	struct etcd_kvs k = {0};
	pthread_rwlock_rdlock(&c->rw);
	int rc = c->joined ? etcd_range_since(c->etcd, prefix, since + 1, &k, err, sizeof(err)) : -1;
	if (!c->joined)
		snprintf(err, sizeof(err), "not a cluster member");
	pthread_rwlock_unlock(&c->rw);
	if (rc) {
		e->status = 503;
		snprintf(e->msg, sizeof(e->msg), "cannot read the cluster's events: %s", err);
		return NULL;
	}
	struct etcd_kv **v = calloc(k.n + 1, sizeof(*v));
	json_t *out = v ? json_array() : NULL;
	for (size_t i = 0; v && i < k.n; i++)
		v[i] = &k.kv[i];
	if (v)
		qsort(v, k.n, sizeof(*v), by_rev);
	/* The newest `limit` after since, oldest first, like the local list. */
	size_t first = k.n > (size_t)limit ? k.n - (size_t)limit : 0;
	for (size_t i = first; out && i < k.n; i++) {
		json_t *ev = event_of(v[i]);
		if (ev)
			json_array_append_new(out, ev);
	}
	free(v);
	etcd_kvs_free(&k);
	if (!out) {
		e->status = 500;
		snprintf(e->msg, sizeof(e->msg), "out of memory");
	}
	return out;
}

int64_t cluster_events_cursor(struct kvzd *d)
{
	struct cluster *c = d->cluster;
	struct etcd_kvs k = {0};
	char err[300];
	int64_t rev = -1;
	pthread_rwlock_rdlock(&c->rw);
	/* A range of one small key: its answer carries the store's revision. */
	if (c->joined && !etcd_range(c->etcd, CK_CLUSTER, false, &k, err, sizeof(err)))
		rev = k.revision;
	pthread_rwlock_unlock(&c->rw);
	etcd_kvs_free(&k);
	return rev;
}

/* The events watch (one per kvzd, while a member): a /v3/watch stream on
 * CK_EVENTS whose every new key bumps ev_gen, so that all=1 event streams
 * range etcd when something was written rather than each once a second. */
static bool ev_watch_stop(void *arg)
{
	struct cluster *c = arg;
	return atomic_load(&c->stop) || atomic_load(&c->leaving);
}

static void on_event_key(void *arg, const struct etcd_watch_event *ev)
{
	struct cluster *c = arg;
	if (!ev->del)
		atomic_fetch_add(&c->ev_gen, 1);
}

void *cluster_events_watch(void *arg)
{
	struct cluster *c = arg;
	while (!atomic_load(&c->stop)) {
		char err[300];
		pthread_rwlock_rdlock(&c->rw);
		if (c->joined && !ev_watch_stop(c)) {
			atomic_store(&c->ev_watching, true);
			/* A write between two streams is caught by the readers'
			 * slow re-check; the bump tells them to look now. */
			atomic_fetch_add(&c->ev_gen, 1);
			if (etcd_watch(c->etcd, CK_EVENTS, ev_watch_stop, on_event_key, c, err,
				       sizeof(err)))
				kvz_debug("cluster: events watch: %s", err);
			atomic_store(&c->ev_watching, false);
		}
		pthread_rwlock_unlock(&c->rw);
		for (int i = 0; i < 10 && !atomic_load(&c->stop); i++)
			usleep(100 * 1000);
	}
	return NULL;
}

uint64_t cluster_events_generation(struct kvzd *d, bool *watching)
{
	struct cluster *c = d->cluster;
	*watching = c && atomic_load(&c->ev_watching);
	return c ? atomic_load(&c->ev_gen) : 0;
}
