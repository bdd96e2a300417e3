/* The HA manager (only on the node holding CK_LEADER): every HA guest
 * that should run (state running or relocating) on a node whose lease has
 * expired (no CK_ALIVE key) is handed, by compare-and-swap of its record,
 * to the live node with the most free memory (then the fewest guests),
 * within max relocations; that node's own tick starts it
 * (cluster_guests.c). The dead node fenced the guest before its lease
 * ran out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster_internal.h"
#include "log.h"
#include "store.h"

struct live_node {
	char name[64];
	json_int_t mem_available;
	json_int_t guests;
};

/* Live nodes from CK_ALIVE; a new array of *n, NULL on error. */
static struct live_node *live_nodes(struct cluster *c, size_t *n)
{
	struct etcd_kvs k;
	char err[300];
	if (etcd_range(c->etcd, CK_ALIVE, true, &k, err, sizeof(err)))
		return NULL;
	struct live_node *out = calloc(k.n + 1, sizeof(*out));
	*n = 0;
	for (size_t i = 0; out && i < k.n; i++) {
		json_t *f = cluster_kv_json(&k.kv[i]);
		const char *name = k.kv[i].key + strlen(CK_ALIVE);
		if (f && strlen(name) < sizeof(out->name)) {
			snprintf(out[*n].name, sizeof(out->name), "%s", name);
			out[*n].mem_available = json_integer_value(json_object_get(f, "mem_available"));
			out[(*n)++].guests = json_integer_value(json_object_get(f, "guests"));
		}
		json_decref(f);
	}
	etcd_kvs_free(&k);
	return out;
}

static bool is_live(const struct live_node *nodes, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(nodes[i].name, name))
			return true;
	return false;
}

/* The node with the most free memory, then the fewest guests, then the
 * first name: the same answer on every manager. */
static struct live_node *best(struct live_node *nodes, size_t n)
{
	struct live_node *b = NULL;
	for (size_t i = 0; i < n; i++) {
		struct live_node *x = &nodes[i];
		if (!b || x->mem_available > b->mem_available ||
		    (x->mem_available == b->mem_available &&
		     (x->guests < b->guests || (x->guests == b->guests && strcmp(x->name, b->name) < 0))))
			b = x;
	}
	return b;
}

static void relocate(struct cluster *c, const char *name, json_t *rec, int64_t rev,
		     struct live_node *nodes, size_t n)
{
	char err[300], detail[200];
	/* A copy: the record's owner string goes when the owner is replaced. */
	char from[64];
	snprintf(from, sizeof(from), "%s", json_string_value(json_object_get(rec, "owner")) ?: "?");
	json_int_t moves = json_integer_value(json_object_get(rec, "relocations"));
	struct live_node *to = best(nodes, n);
	if (!to)
		return;
	if (moves >= c->o.max_relocations) {
		if (!strcmp(json_string_value(json_object_get(rec, "state")) ?: "", "failed"))
			return;
		json_object_set_new(rec, "state", json_string("failed"));
		snprintf(detail, sizeof(detail), "%s: %lld relocations already", from, (long long)moves);
	} else {
		snprintf(detail, sizeof(detail), "%s -> %s", from, to->name);
		json_object_set_new(rec, "owner", json_string(to->name));
		json_object_set_new(rec, "state", json_string("relocating"));
		json_object_set_new(rec, "relocations", json_integer(moves + 1));
		json_object_set_new(rec, "restarts", json_integer(0));
		/* Counted here so that two guests in one tick spread. */
		to->guests++;
	}
	bool done = false;
	if (!cluster_record_write(c, name, rec, rev, from, &done, err, sizeof(err)) && done) {
		kvz_info("cluster: HA: %s: %s", name, detail);
		store_event_add(c->d->store, name, "ha-relocate", detail);
	}
}

void cluster_ha_tick(struct cluster *c)
{
	size_t n = 0;
	struct live_node *nodes = live_nodes(c, &n);
	struct etcd_kvs k;
	char err[300];
	if (!nodes || etcd_range(c->etcd, CK_GUESTS, true, &k, err, sizeof(err))) {
		free(nodes);
		return;
	}
	for (size_t i = 0; i < k.n; i++) {
		json_t *rec = cluster_kv_json(&k.kv[i]);
		const char *state = json_string_value(json_object_get(rec, "state")) ?: "";
		const char *owner = json_string_value(json_object_get(rec, "owner")) ?: "";
		if (rec && json_is_true(json_object_get(rec, "ha")) &&
		    (!strcmp(state, "running") || !strcmp(state, "relocating")) &&
		    !is_live(nodes, n, owner))
			relocate(c, k.kv[i].key + strlen(CK_GUESTS), rec, k.kv[i].mod_rev, nodes, n);
		json_decref(rec);
	}
	etcd_kvs_free(&k);
	free(nodes);
}

static bool watch_stop(void *arg)
{
	struct cluster *c = arg;
	pthread_mutex_lock(&c->state_lock);
	bool leader = c->leader;
	pthread_mutex_unlock(&c->state_lock);
	return atomic_load(&c->stop) || atomic_load(&c->leaving) || !leader;
}

static void on_alive_event(void *arg, const struct etcd_watch_event *ev)
{
	struct cluster *c = arg;
	if (ev->del) {
		kvz_info("cluster: HA: %s's lease is gone", ev->key + strlen(CK_ALIVE));
		atomic_store(&c->kick, true);
	}
}

void *cluster_ha_watch(void *arg)
{
	struct cluster *c = arg;
	while (!atomic_load(&c->stop)) {
		char err[300];
		pthread_rwlock_rdlock(&c->rw);
		bool run = c->joined && !watch_stop(c);
		if (run && etcd_watch(c->etcd, CK_ALIVE, watch_stop, on_alive_event, c, err, sizeof(err)))
			kvz_debug("cluster: watch: %s", err);
		pthread_rwlock_unlock(&c->rw);
		/* Not the manager, or the stream broke: look again shortly. */
		for (int i = 0; i < 10 && !atomic_load(&c->stop); i++)
			usleep(100 * 1000);
	}
	return NULL;
}
