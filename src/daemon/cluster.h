/* Cluster mode: many kvzd as one, with the shared state in etcd
 * (docs/cluster.md). Without `kvz cluster init|join` none of this runs and
 * kvzd is the single host it always was, with its SQLite store only.
 *
 * Files: cluster_etcd*.c (the etcd client), cluster_member.c (join, leave,
 * the lease and its thread), cluster_guests.c (guest records: ownership by
 * compare-and-swap, definitions, forwarding to the owner), cluster_ha.c
 * (the elected HA manager's decisions), cluster_fence.c (the watchdog
 * process that stops HA guests when kvzd loses its lease or dies),
 * cluster_api.c (/v1/cluster), cluster_events.c (events of every member
 * in etcd), cluster_policies.c (policy rules in etcd, the rules' leader,
 * actions sent to a guest's owner). */
#ifndef KVZD_CLUSTER_H
#define KVZD_CLUSTER_H

#include <stdbool.h>

#include <jansson.h>

#include "api.h"
#include "cluster_etcd.h"
#include "guest_ops.h"
#include "kvzd.h"
#include "policy_rules.h"

struct cluster_opts {
	struct etcd_opts etcd;   /* TLS and auth from kvzd's options; endpoints from init/join */
	char name[64];           /* this node's name (--node-name, default the host name) */
	char url[256];           /* its TCP API for peers (--node-url, default from --listen) */
	int ttl_s;               /* lease TTL (--cluster-ttl, 6) */
	int max_restarts;        /* HA: failed starts of a guest before it is "failed" */
	int max_relocations;     /* HA: moves of a guest to another node, in all */
};

/* Once at start-up, before the API: rejoins when STATE/cluster.json says
 * this node is a member. */
int cluster_setup(struct kvzd *d, const struct cluster_opts *o, char *err, size_t errlen);
/* At exit: ends the thread (the lease is left to expire: HA guests are
 * fenced by the watchdog when kvzd goes). */
void cluster_shutdown(struct kvzd *d);
bool cluster_active(struct kvzd *d);

/* req {"etcd": "URL[,URL...]"}; create: init (the cluster must not exist
 * yet) or join (it must). */
int cluster_join(struct kvzd *d, json_t *req, bool create, struct op_error *e);
int cluster_leave(struct kvzd *d, struct op_error *e);
json_t *cluster_status(struct kvzd *d, struct op_error *e);
/* Members as `kvz node list` shows them in cluster mode. */
json_t *cluster_nodes(struct kvzd *d, struct op_error *e);

/* Guests (cluster_guests.c). Each is a no-op returning 0 when not active. */
/* Before a local create: reserves the name cluster-wide for this node. */
int cluster_guest_claim(struct kvzd *d, json_t *def, struct op_error *e);
/* After a failed create or a destroy. */
void cluster_guest_release(struct kvzd *d, const char *name);
/* Before a local start: 0 when this node owns the guest (or it is not a
 * cluster guest), -1 otherwise (409, or 503 without etcd). */
int cluster_guest_may_start(struct kvzd *d, const char *name, struct op_error *e);
/* After a local start or stop: the record's state. */
void cluster_guest_state(struct kvzd *d, const char *name, const char *state);
int cluster_guest_set_ha(struct kvzd *d, const char *name, bool ha, struct op_error *e);
json_t *cluster_guest_list(struct kvzd *d, struct op_error *e);
/* When the guest NAME belongs to another node, forwards the request there
 * and fills resp (true); false when it is to be handled here. */
bool cluster_forward(struct api_req *r, struct api_resp *resp, const char *name);

/* Events of every member, copied to etcd (cluster_events.c): the newest
 * limit after the cluster-wide id since (of guest when not NULL), oldest
 * first, each {id, node, node_id, ts_ms, guest, type, detail}; NULL with
 * e filled when etcd cannot be read. */
json_t *cluster_events_list(struct kvzd *d, int64_t since, const char *guest, int limit,
			    struct op_error *e);
/* The cluster-wide id events written from now on come after; -1 when
 * etcd cannot say. */
int64_t cluster_events_cursor(struct kvzd *d);
/* A count that moves whenever an event key was written to etcd (this
 * node's watch of them), and whether that watch is open now: while it is
 * not, readers must look by themselves. */
uint64_t cluster_events_generation(struct kvzd *d, bool *watching);

/* Policies in cluster mode (cluster_policies.c). */
enum cluster_policy_role {
	CLUSTER_POLICY_LOCAL,    /* not a member: rules in SQLite, run here as always */
	CLUSTER_POLICY_LEADER,   /* member holding the leader key, lease sure: runs the rules */
	CLUSTER_POLICY_FOLLOWER, /* member: rules in etcd, run by the leader */
	CLUSTER_POLICY_WAIT,     /* member that has not rejoined yet: no rules at all */
};
enum cluster_policy_role cluster_policy_role(struct kvzd *d);
/* The rules in etcd (as store_policy_list shows them, by name) and the
 * revision of CK_POLICY_WRITES they were read under (for commit); NULL
 * with e filled when etcd cannot be read. */
json_t *cluster_policy_list(struct kvzd *d, int64_t *rev, struct op_error *e);
/* Puts value (NULL: deletes) as rule name, only if no rule changed since
 * the list read at rev (409 otherwise); 0, or -1 with e. */
int cluster_policy_commit(struct kvzd *d, int64_t rev, const char *name, json_t *value,
			  struct op_error *e);
/* Every guest of the cluster as the policy engine sees guests: {name,
 * type, state, tags, owner}; the local state for this node's own. */
json_t *cluster_policy_guests(struct kvzd *d);
/* When guest belongs to another member: has it carry out rule's action
 * there (POST /v1/policies/RULE/act), one line in res; 0 or -1. Returns
 * 1 when the guest is to be acted on here. */
int cluster_policy_forward(struct kvzd *d, const char *rule, const char *guest,
			   const char *reason, char *res, size_t len);
/* 0 when this node owns guest (a forwarded action may run), else -1 with
 * e (409 naming the owner, 503 without etcd). */
int cluster_policy_owned_here(struct kvzd *d, const char *guest, struct op_error *e);

/* The cluster credential (cluster_auth.c). */
#define CLUSTER_SECRET_HEX 64
/* For the TCP API: checks cred, a peer's "Authorization: KvzPeer ..."
 * value less "KvzPeer ", for method and url (no query). 0 when a member
 * signed it and a peer may ask it (body_sha then holds the SHA-256 the
 * body must have), 401 for a bad or stale credential (or when this node
 * is no member), 403 for what peers may not ask. */
int cluster_peer_check(struct kvzd *d, const char *cred, const char *method, const char *url,
		       char body_sha[CLUSTER_SECRET_HEX + 1]);
/* Once the body is in: is it the one that was signed? */
bool cluster_peer_body_ok(const char *body_sha, const char *body, size_t len);

/* Guests' metrics of every member (cluster_metrics.c), for the rules'
 * leader: {guest: {metric name: value, "ts_ms", "node"}}, a new
 * reference, or NULL when this node is no member or etcd cannot be read. */
json_t *cluster_metrics_read(struct kvzd *d);
/* Metric m of guest from such a map when published within
 * CLUSTER_METRICS_MAX_AGE_MS: 0 with *out, or -1. Members publish every
 * 3 s; a sample is fresh for three sampling intervals. */
#define CLUSTER_METRICS_MAX_AGE_MS 10000
int cluster_metric_get(json_t *map, const char *guest, enum policy_metric m, double *out);

/* /v1/cluster routes. */
bool cluster_route(struct api_req *r, struct api_resp *resp);

/* kvzd --fence-watchdog MS: the watchdog process's main (cluster_fence.c). */
int fence_watchdog_main(int fence_ms);

#endif
