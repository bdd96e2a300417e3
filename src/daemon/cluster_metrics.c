/* Guests' metrics for the cluster's policy rules: each member publishes
 * the latest metrics of the guests running on it (/kvz/metrics/NODE, on
 * its lease, so a dead node's go with it), and the rules' leader reads
 * them all once per evaluation, so that a `metric` trigger on a guest of
 * another node sees that guest's values (docs/cluster.md, Policies). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "log.h"
#include "parse.h"
#include "policy_engine.h"
#include "store.h"

/* Guests one node publishes (a value stays far under etcd's 256 KiB). */
#define METRICS_MAX_GUESTS 1000

/* The guest metrics a member publishes: those its monitor measures. */
static const enum policy_metric guest_metrics[] = {
	MET_CPU_PCT, MET_MEM_PCT, MET_DISK_PCT, MET_MEM_PRESSURE, MET_NET_RX_RATE, MET_NET_TX_RATE,
};

static json_t *guest_values(struct kvzd *d, const char *name)
{
	json_t *v = json_object();
	for (size_t i = 0; i < sizeof(guest_metrics) / sizeof(guest_metrics[0]); i++) {
		double x;
		if (!policy_local_metric(d, name, guest_metrics[i], &x))
			json_object_set_new(v, policy_metric_name(guest_metrics[i]), json_real(x));
	}
	return v;
}

void cluster_metrics_publish(struct cluster *c)
{
	json_t *list = store_guest_list(c->d->store), *guests = json_object(), *g;
	size_t i;
	json_array_foreach(list, i, g) {
		const char *name = json_string_value(json_object_get(g, "name"));
		const char *state = json_string_value(json_object_get(g, "state"));
		if (!name || !state || strcmp(state, "running") ||
		    json_object_size(guests) >= METRICS_MAX_GUESTS)
			continue;
		json_t *v = guest_values(c->d, name);
		if (json_object_size(v))
			json_object_set(guests, name, v);
		json_decref(v);
	}
	json_decref(list);
	json_t *rec = json_pack("{s:I, s:o}", "ts_ms", (json_int_t)kvzd_now_ms(), "guests", guests);
	char *s = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	json_decref(rec);
	char key[128], err[300];
	snprintf(key, sizeof(key), CK_METRICS "%s", c->o.name);
	if (!s || etcd_put(c->etcd, key, s, c->lease, err, sizeof(err)))
		kvz_debug("cluster: metrics: %s", s ? err : "out of memory");
	free(s);
}

/* Adds one member's record to map: its guests not already there from a
 * newer record (a guest that just moved is on two nodes for a tick). */
static void merge(json_t *map, const char *node, json_t *rec)
{
	json_int_t ts = json_integer_value(json_object_get(rec, "ts_ms"));
	const char *name;
	json_t *v;
	json_object_foreach(json_object_get(rec, "guests"), name, v) {
		json_t *old = json_object_get(map, name);
		if (!json_is_object(v) || !kvz_valid_name(name) ||
		    (old && json_integer_value(json_object_get(old, "ts_ms")) >= ts))
			continue;
		json_t *e = json_deep_copy(v);
		json_object_set_new(e, "ts_ms", json_integer(ts));
		json_object_set_new(e, "node", json_string(node));
		json_object_set_new(map, name, e);
	}
}

json_t *cluster_metrics_read(struct kvzd *d)
{
	struct cluster *c = d->cluster;
	if (!c)
		return NULL;
	json_t *map = NULL;
	struct etcd_kvs k;
	char err[300];
	pthread_rwlock_rdlock(&c->rw);
	if (c->joined && !etcd_range(c->etcd, CK_METRICS, true, &k, err, sizeof(err))) {
		map = json_object();
		for (size_t i = 0; i < k.n; i++) {
			json_t *rec = cluster_kv_json(&k.kv[i]);
			const char *node = k.kv[i].key + strlen(CK_METRICS);
			if (rec && kvz_valid_name(node))
				merge(map, node, rec);
			json_decref(rec);
		}
		etcd_kvs_free(&k);
	}
	pthread_rwlock_unlock(&c->rw);
	return map;
}

int cluster_metric_get(json_t *map, const char *guest, enum policy_metric m, double *out)
{
	json_t *e = json_object_get(map, guest);
	json_t *v = json_object_get(e, policy_metric_name(m));
	int64_t age = kvzd_now_ms() - (int64_t)json_integer_value(json_object_get(e, "ts_ms"));
	if (!json_is_number(v) || age > CLUSTER_METRICS_MAX_AGE_MS || age < -CLUSTER_METRICS_MAX_AGE_MS)
		return -1;
	*out = json_number_value(v);
	return 0;
}
