#include "node_health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "migration.h"
#include "nodes.h"
#include "periodic.h"
#include "policy_eval.h"
#include "store.h"

/* Failed checks in a row after which a node is no longer reported (the
 * event table is not flooded by a node that stays down). */
#define REPORT_MAX 10

struct count {
	char name[64];
	int fails;
};

/* The thread: one per kvzd. */
static struct periodic ctl = PERIODIC_INIT;

/* Failure counts of the last round; only the thread touches them. */
static struct {
	struct count *c;
	int n;
} counts;

static int previous(const struct count *old, int nold, const char *name)
{
	for (int i = 0; i < nold; i++)
		if (!strcmp(old[i].name, name))
			return old[i].fails;
	return 0;
}

/* One check of every node; returns the new counts (old ones freed). */
static struct count *check_round(struct kvzd *d, struct count *old, int nold, int *nnew)
{
	json_t *list = store_node_list(d->store);
	size_t n = json_array_size(list);
	struct count *c = calloc(n ? n : 1, sizeof(*c));
	*nnew = 0;
	for (size_t i = 0; c && i < n; i++) {
		const char *name = json_string_value(json_object_get(json_array_get(list, i), "name"));
		if (!name)
			continue;
		struct count *k = &c[(*nnew)++];
		snprintf(k->name, sizeof(k->name), "%s", name);
		int was = previous(old, nold, name);
		char err[600], detail[100];
		if (node_check(d, name, err, sizeof(err)) == 0) {
			if (was)
				store_event_add(d->store, NODES_EVENTS, "node-reachable", name);
			migration_settle_with(d, name);
			continue;
		}
		k->fails = was + 1;
		if (k->fails <= REPORT_MAX) {
			snprintf(detail, sizeof(detail), "%s %d", name, k->fails);
			store_event_add(d->store, NODES_EVENTS, POLICY_PEER_EVENT, detail);
			kvz_warn("node %s failed its health check (%d in a row): %s", name, k->fails,
				 err);
		}
	}
	json_decref(list);
	free(old);
	return c;
}

static void health_round(void *arg)
{
	counts.c = check_round(arg, counts.c, counts.n, &counts.n);
}

int node_health_start(struct kvzd *d, char *err, size_t errlen)
{
	return periodic_start(&ctl, "node health", health_round, d,
			      d->sample_interval_s * 1000LL, err, errlen);
}

void node_health_stop(void)
{
	periodic_stop(&ctl);
	free(counts.c);
	counts.c = NULL;
	counts.n = 0;
}
