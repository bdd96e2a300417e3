/* The cluster credential: what members use to call each other instead of
 * users' API tokens, which are each node's own (docs/cluster.md,
 * "Credentials"). A 256-bit secret made by init, given to join, kept in
 * STATE/cluster.key (0600) and in memory, never in etcd: etcd holds only
 * an HMAC of a constant under it, so that join can tell a wrong secret.
 *
 * A peer request carries "Authorization: KvzPeer NODE TS BODY MAC": TS its
 * time in ms, BODY the SHA-256 of its body, MAC the HMAC-SHA256 under the
 * secret of node, time, method, path and BODY. The secret never travels;
 * a captured request replays only as itself (same method, path and body)
 * and only within CLUSTER_PEER_SKEW_MS. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cluster_internal.h"
#include "cluster_peer_cred.h"
#include "peer_client.h"
#include "token_file.h"

/* How far a peer's clock and this node's may differ (and how long a
 * captured request stays replayable). */
#define CLUSTER_PEER_SKEW_MS 30000

int cluster_secret_generate(char out[CLUSTER_SECRET_HEX + 1])
{
	unsigned char raw[CLUSTER_SECRET_HEX / 2];
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return -1;
	peer_to_hex(raw, sizeof(raw), out);
	return 0;
}

bool cluster_secret_valid(const char *s)
{
	return s && peer_is_hex64(s);
}

int cluster_secret_check(const char *secret, char out[CLUSTER_SECRET_HEX + 1])
{
	return peer_hmac_hex(secret, "kvz cluster secret check v1", out);
}

static void key_file(const struct kvzd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/cluster.key", d->state_dir);
}

int cluster_secret_save(const struct kvzd *d, const char *secret)
{
	char path[300], tmp[310], line[CLUSTER_SECRET_HEX + 2];
	key_file(d, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	int len = snprintf(line, sizeof(line), "%s\n", secret);
	bool ok = write(fd, line, (size_t)len) == len && !fsync(fd);
	if (close(fd) || !ok || rename(tmp, path)) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

int cluster_secret_load(const struct kvzd *d, char out[CLUSTER_SECRET_HEX + 1])
{
	char path[300];
	key_file(d, path, sizeof(path));
	char *s = kvz_read_token_file(path);
	bool ok = cluster_secret_valid(s);
	if (ok)
		snprintf(out, CLUSTER_SECRET_HEX + 1, "%s", s);
	free(s);
	return ok ? 0 : -1;
}

void cluster_secret_remove(const struct kvzd *d)
{
	char path[300];
	key_file(d, path, sizeof(path));
	unlink(path);
}

long cluster_peer_call(struct cluster *c, const char *url, const char *method, const char *path,
		       json_t *body, json_t **out, char *err, size_t errlen)
{
	char secret[CLUSTER_SECRET_HEX + 1], body_sha[CLUSTER_SECRET_HEX + 1], mac[CLUSTER_SECRET_HEX + 1];
	/* The caller holds rw (read) or is the membership thread: secret is
	 * set before joined and cleared after it. */
	snprintf(secret, sizeof(secret), "%s", c->secret);
	char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
	long long ts = (long long)kvzd_now_ms();
	*out = NULL;
	if ((body && !payload) || peer_sha_hex(payload, payload ? strlen(payload) : 0, body_sha) ||
	    peer_cred_mac(secret, c->o.name, ts, method, path, body_sha, mac)) {
		free(payload);
		snprintf(err, errlen, "cannot sign the request");
		return -1;
	}
	char authz[400];
	snprintf(authz, sizeof(authz), "KvzPeer %s %lld %s %s", c->o.name, ts, body_sha, mac);
	long st = peer_call_raw(url, authz, method, path, payload, out, err, errlen);
	free(payload);
	return st;
}

int cluster_peer_check(struct kvzd *d, const char *cred, const char *method, const char *url,
		       char body_sha[CLUSTER_SECRET_HEX + 1])
{
	struct cluster *c = d->cluster;
	struct peer_cred pc;
	char want[PEER_HEX + 1], secret[CLUSTER_SECRET_HEX + 1] = "";
	if (!c || peer_cred_parse(cred, &pc) ||
	    llabs((long long)(pc.ts_ms - kvzd_now_ms())) > CLUSTER_PEER_SKEW_MS)
		return 401;
	pthread_rwlock_rdlock(&c->rw);
	if (c->joined)
		snprintf(secret, sizeof(secret), "%s", c->secret);
	pthread_rwlock_unlock(&c->rw);
	if (!*secret || peer_cred_mac(secret, pc.node, pc.ts_ms, method, url, pc.body_sha, want) ||
	    !peer_same(want, pc.mac, PEER_HEX))
		return 401;
	if (!peer_cred_may(method, url))
		return 403;
	snprintf(body_sha, CLUSTER_SECRET_HEX + 1, "%s", pc.body_sha);
	return 0;
}

bool cluster_peer_body_ok(const char *body_sha, const char *body, size_t len)
{
	char sum[PEER_HEX + 1];
	return !peer_sha_hex(body, len, sum) && peer_same(sum, body_sha, PEER_HEX);
}
