/* Other hosts running kvzd ("nodes"), as first-class records: a name, the
 * URL of the peer's TCP API and its bearer token. The record is in the
 * store; the token is a file of its own, STATE/nodes/NAME.token (mode 0600
 * in a 0700 directory), never in the database and never in an answer.
 * Live facts (reachable, free memory and CPUs, CPU model) are asked from
 * the peer's GET /v1/host each time they are listed. Cluster membership and
 * migration reach a peer through node_lookup() + peer_call(). */
#ifndef KVZD_NODES_H
#define KVZD_NODES_H

#include <jansson.h>

#include "guest_ops.h"
#include "kvzd.h"

/* Events about nodes are recorded under this name, which no guest can
 * have; the node's name is the detail. */
#define NODES_EVENTS "@nodes"

struct node {
	char name[64];
	char url[256];
	char token[512];
};

/* req: {"name", "url", "token"}. The peer must answer GET /v1/host with
 * that token; 400 bad fields, 409 name taken, 502 peer unreachable or
 * refusing the token. */
int node_add(struct kvzd *d, json_t *req, struct op_error *e);
int node_remove(struct kvzd *d, const char *name, struct op_error *e);
/* The record with its live facts (new reference), or NULL with a 404. */
json_t *node_show(struct kvzd *d, const char *name, struct op_error *e);
/* Every node with its live facts, ordered by name. */
json_t *node_list(struct kvzd *d);
/* The health check of a node: 0 when it answers GET /v1/host with its
 * token, else -1 with why in err. */
int node_check(struct kvzd *d, const char *name, char *err, size_t len);
/* Name, URL and token of a node, for talking to it. */
int node_lookup(struct kvzd *d, const char *name, struct node *out, struct op_error *e);

#endif
