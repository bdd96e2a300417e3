/* The health check of the node registry (nodes.h): one thread that asks
 * every node's GET /v1/host each sample interval and records, under
 * "@nodes", an event "node-unreachable" with detail "NODE N" for the first
 * ten failed checks in a row (N: how many so far; policy rules with the
 * trigger peer_unreachable fire on theirs) and "node-reachable" when a
 * failing node answers again. */
#ifndef KVZD_NODE_HEALTH_H
#define KVZD_NODE_HEALTH_H

#include <stddef.h>

#include "kvzd.h"

int node_health_start(struct kvzd *d, char *err, size_t errlen);
void node_health_stop(void);

#endif
