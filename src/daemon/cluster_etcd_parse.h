/* Answers of etcd's v3 JSON gateway (grpc-gateway), parsed and checked:
 * keys and values are base64, 64-bit numbers are JSON strings. The answers
 * come from the network, so everything here is checked before use and
 * fuzzed (fuzz/fuzz_etcd.c). No I/O: cluster_etcd.c does the HTTP. */
#ifndef KVZD_CLUSTER_ETCD_PARSE_H
#define KVZD_CLUSTER_ETCD_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest key and value kvzd writes or accepts back. */
#define ETCD_MAX_KEY 512
#define ETCD_MAX_VALUE (256 * 1024)

struct etcd_kv {
	char *key;             /* NUL-terminated (keys with a NUL are refused) */
	char *value;           /* NUL-terminated copy; vlen bytes */
	size_t vlen;
	int64_t create_rev, mod_rev, lease;
};

struct etcd_kvs {
	struct etcd_kv *kv;
	size_t n;
	int64_t revision;      /* the store's revision when it answered */
};

void etcd_kvs_free(struct etcd_kvs *k);

/* base64 (standard alphabet, padded) of n bytes; malloc'd, NULL on ENOMEM. */
char *etcd_b64_encode(const void *data, size_t n);
/* Decodes s into a malloc'd NUL-terminated buffer; NULL when s is not
 * valid base64 or decodes past max bytes. */
char *etcd_b64_decode(const char *s, size_t max, size_t *outlen);

/* Each parser: 0, or -1 with why in err (an {"error": ...} answer gives
 * its message). */
int etcd_parse_range(const char *json, size_t len, struct etcd_kvs *out,
		     char *err, size_t errlen);
/* /v3/kv/txn: whether the compare held, and the revision. */
int etcd_parse_txn(const char *json, size_t len, bool *succeeded, int64_t *revision,
		   char *err, size_t errlen);
/* /v3/lease/grant and /v3/lease/keepalive (the latter wrapped in
 * {"result": ...}): the lease's id and the seconds it has left; ttl 0 means
 * the lease is gone. */
int etcd_parse_lease(const char *json, size_t len, int64_t *id, int64_t *ttl,
		     char *err, size_t errlen);
/* /v3/maintenance/status: this member's id, the leader's id, the version. */
int etcd_parse_status(const char *json, size_t len, uint64_t *member, uint64_t *leader,
		      char *version, size_t vlen, char *err, size_t errlen);
/* /v3/auth/authenticate: the token (at most toklen - 1 bytes). */
int etcd_parse_auth(const char *json, size_t len, char *token, size_t toklen,
		    char *err, size_t errlen);

/* One message of a /v3/watch stream: the events it carries (*evs
 * malloc'd, each key malloc'd; free with etcd_watch_events_free). */
struct etcd_watch_event {
	bool del;              /* DELETE (a lease expired, a key removed), else PUT */
	char *key;
	int64_t mod_rev;
};
int etcd_parse_watch(const char *json, size_t len, struct etcd_watch_event **evs, size_t *n,
		     char *err, size_t errlen);
void etcd_watch_events_free(struct etcd_watch_event *evs, size_t n);

#endif
