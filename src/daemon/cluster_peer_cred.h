/* The cluster credential's pure parts (cluster_peer_cred.c): the format of
 * a peer's "Authorization: KvzPeer NODE TS BODY MAC", its MAC, and what a
 * peer may ask. No kvzd state, so that the parser of this network input
 * is fuzzed on its own (fuzz/fuzz_peer_cred.c). */
#ifndef KVZD_CLUSTER_PEER_CRED_H
#define KVZD_CLUSTER_PEER_CRED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEER_HEX 64 /* a SHA-256 (or HMAC-SHA256, or the secret) in hex */

struct peer_cred {
	char node[64];
	int64_t ts_ms;
	char body_sha[PEER_HEX + 1];
	char mac[PEER_HEX + 1];
};

/* cred: the header's value after "KvzPeer ". 0, or -1 when it is not
 * exactly NODE (a valid name), TS (ms, > 0), BODY and MAC (lower-case hex). */
int peer_cred_parse(const char *cred, struct peer_cred *out);
/* HMAC-SHA256 under secret of node, ts, method, path (to '?') and body_sha. */
int peer_cred_mac(const char *secret, const char *node, int64_t ts, const char *method,
		  const char *path, const char *body_sha, char out[PEER_HEX + 1]);
int peer_hmac_hex(const char *secret, const char *text, char out[PEER_HEX + 1]);
int peer_sha_hex(const char *data, size_t len, char out[PEER_HEX + 1]);
bool peer_is_hex64(const char *s);
void peer_to_hex(const unsigned char *raw, size_t n, char *hex);
/* Compares n bytes, all of them whatever the first difference. */
bool peer_same(const char *a, const char *b, size_t n);
/* What a peer may ask: a guest's request for its owner, a policy action
 * for a guest's owner; nothing else. */
bool peer_cred_may(const char *method, const char *url);

#endif
