/* kvzd as a client of another kvzd's TCP API (nodes.h): HTTP with the
 * peer's bearer token, short timeouts, a bounded answer. */
#ifndef KVZD_PEER_CLIENT_H
#define KVZD_PEER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Timeouts: connecting, and the whole request. */
#define PEER_CONNECT_TIMEOUT_S 2
#define PEER_TIMEOUT_S 5

/* Once, before any thread calls peer_call(). */
int peer_client_init(char *err, size_t errlen);

/* method base_url+path with "Authorization: Bearer token"; body borrowed,
 * may be NULL. Returns the HTTP status with the parsed JSON answer in *out
 * (a new reference, NULL when it was not JSON), or -1 with why in err
 * (unreachable, timeout, answer over 1 MiB). */
long peer_call(const char *base_url, const char *token, const char *method,
	       const char *path, json_t *body, json_t **out, char *err, size_t errlen);

/* The same with the Authorization header's value authz and the body as
 * text (NULL: none), for callers that sign what they send. */
long peer_call_raw(const char *base_url, const char *authz, const char *method,
		   const char *path, const char *payload, json_t **out, char *err, size_t errlen);

/* True for "http://HOST:PORT" or "http://HOST:PORT/" (HOST a name, an
 * IPv4 address or [IPv6]); the only form nodes may have. */
bool peer_url_ok(const char *url);

/* What a peer's GET /v1/host answer says of it, checked field by field
 * (the peer is another host: its answer is untrusted input): version,
 * cpus, cpu_model, mem_total, mem_available, vm_memory_assigned, guests
 * when of the right type and range, plus cpus_idle from its latest sample.
 * A new object; fields that do not check out are left out. */
json_t *peer_host_facts(json_t *host);

#endif
