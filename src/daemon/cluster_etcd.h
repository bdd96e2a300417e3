/* A client of etcd v3 through its JSON gateway (etcd-server 3.4), with
 * libcurl: ranges, puts, compare-and-swap transactions, deletes, leases and
 * member status; several endpoints, tried in turn when one cannot be
 * reached; TLS (CA, client certificate) and user/password auth. Thread
 * safe: every call uses its own curl handle; the auth token and the
 * endpoint that answered last are behind the client's mutex. */
#ifndef KVZD_CLUSTER_ETCD_H
#define KVZD_CLUSTER_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_etcd_parse.h"

#define ETCD_MAX_ENDPOINTS 8

struct etcd_opts {
	char endpoints[ETCD_MAX_ENDPOINTS][256]; /* http(s)://HOST:PORT */
	int n;
	char cacert[256], cert[256], key[256];   /* PEM files, "" for none */
	char user[64], password[256];            /* "" for no auth */
	int timeout_ms;                          /* to connect, per endpoint */
	int request_ms;                          /* a whole request, per endpoint */
};

struct etcd;

/* "URL[,URL...]" into o->endpoints; -1 with why when a URL is not
 * http(s)://HOST:PORT or there are too many. */
int etcd_parse_endpoints(const char *list, struct etcd_opts *o, char *err, size_t errlen);

struct etcd *etcd_new(const struct etcd_opts *o);
void etcd_free(struct etcd *e);

/* The key, or with prefix every key under it; sorted by key. */
int etcd_range(struct etcd *e, const char *key, bool prefix, struct etcd_kvs *out,
	       char *err, size_t errlen);
/* Every key under prefix created at revision min_create_rev or later. */
int etcd_range_since(struct etcd *e, const char *prefix, int64_t min_create_rev,
		     struct etcd_kvs *out, char *err, size_t errlen);
/* Unconditional put; lease 0 for none. */
int etcd_put(struct etcd *e, const char *key, const char *value, int64_t lease,
	     char *err, size_t errlen);
/* Compare-and-swap: puts when the key's mod_revision is mod_rev, or when
 * mod_rev is 0 and the key does not exist. *done says whether it did. */
int etcd_cas_put(struct etcd *e, const char *key, const char *value, int64_t lease,
		 int64_t mod_rev, bool *done, char *err, size_t errlen);
/* Several changes in one transaction, done only when key's mod_revision
 * is mod_rev (0: key must not exist): the record and its index together. */
struct etcd_op {
	bool del;              /* delete key, else put key = value */
	const char *key, *value;
};
int etcd_cas_multi(struct etcd *e, const char *key, int64_t mod_rev, const struct etcd_op *ops,
		   int nops, bool *done, char *err, size_t errlen);
/* Deletes when mod_revision is mod_rev (0: whatever it is). */
int etcd_cas_delete(struct etcd *e, const char *key, int64_t mod_rev, bool *done,
		    char *err, size_t errlen);
int etcd_lease_grant(struct etcd *e, int ttl_s, int64_t *id, char *err, size_t errlen);
/* *ttl: seconds left; 0 when etcd no longer knows the lease. */
int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl, char *err, size_t errlen);
int etcd_lease_revoke(struct etcd *e, int64_t id, char *err, size_t errlen);

/* Watches every key under prefix (POST /v3/watch, a stream of JSON
 * messages) and calls fn for each event, until stop(arg) says so (checked
 * about once a second) or the stream ends; -1 with why when it could not
 * be opened or broke. One endpoint: the one that answered last; the watch
 * ends (0) when the client's other calls have moved to another. Events
 * before the stream opened are not replayed: callers also look by range. */
typedef void etcd_watch_fn(void *arg, const struct etcd_watch_event *ev);
int etcd_watch(struct etcd *e, const char *prefix, bool (*stop)(void *arg), etcd_watch_fn *fn,
	       void *arg, char *err, size_t errlen);

struct etcd_member_status {
	char endpoint[256];
	bool healthy;
	uint64_t member, leader;
	char version[32];
	char error[200];
};
/* Status of each configured endpoint (out has room for ETCD_MAX_ENDPOINTS);
 * returns how many. */
int etcd_status_all(struct etcd *e, struct etcd_member_status *out);

#endif
