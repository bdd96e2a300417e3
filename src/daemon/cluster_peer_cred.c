#include "cluster_peer_cred.h"

#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "parse.h"

#define SHA256_LEN 32

void peer_to_hex(const unsigned char *raw, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = digits[raw[i] >> 4];
		hex[2 * i + 1] = digits[raw[i] & 15];
	}
	hex[2 * n] = 0;
}

bool peer_is_hex64(const char *s)
{
	size_t n = strspn(s, "0123456789abcdef");
	return n == PEER_HEX && !s[n];
}

bool peer_same(const char *a, const char *b, size_t n)
{
	unsigned diff = 0;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)a[i] ^ (unsigned char)b[i];
	return diff == 0;
}

int peer_hmac_hex(const char *secret, const char *text, char out[PEER_HEX + 1])
{
	unsigned char mac[SHA256_LEN];
	if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, strlen(secret), text, strlen(text), mac))
		return -1;
	peer_to_hex(mac, sizeof(mac), out);
	return 0;
}

int peer_sha_hex(const char *data, size_t len, char out[PEER_HEX + 1])
{
	unsigned char sum[SHA256_LEN];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data ? data : "", data ? len : 0, sum))
		return -1;
	peer_to_hex(sum, sizeof(sum), out);
	return 0;
}

int peer_cred_parse(const char *cred, struct peer_cred *out)
{
	/* Each buffer one longer than the longest valid field: a longer one
	 * fails the checks below instead of being cut to fit (and its rest
	 * read as the next field). */
	char node[sizeof(out->node) + 1], ts[24], sha[PEER_HEX + 2], mac[PEER_HEX + 2], tail;
	if (sscanf(cred, "%64s %23s %65s %65s%c", node, ts, sha, mac, &tail) != 4)
		return -1;
	uint64_t v;
	if (strlen(node) >= sizeof(out->node) || !kvz_valid_name(node) ||
	    !kvz_parse_u64(ts, 1, INT64_MAX, &v) || !peer_is_hex64(sha) || !peer_is_hex64(mac))
		return -1;
	memcpy(out->node, node, strlen(node) + 1);
	memcpy(out->body_sha, sha, sizeof(out->body_sha)); /* 64 digits and the NUL: checked */
	memcpy(out->mac, mac, sizeof(out->mac));
	out->ts_ms = (int64_t)v;
	return 0;
}

int peer_cred_mac(const char *secret, const char *node, int64_t ts, const char *method,
		  const char *path, const char *body_sha, char out[PEER_HEX + 1])
{
	char text[1200];
	size_t plen = strcspn(path, "?");
	int n = snprintf(text, sizeof(text), "kvz peer v1\n%s\n%lld\n%s\n%.*s\n%s", node,
			 (long long)ts, method, (int)plen, path, body_sha);
	if (n < 0 || (size_t)n >= sizeof(text))
		return -1;
	return peer_hmac_hex(secret, text, out);
}

bool peer_cred_may(const char *method, const char *url)
{
	static const char guests[] = "/v1/guests/", pol[] = "/v1/policies/";
	if (!strncmp(url, guests, sizeof(guests) - 1))
		return url[sizeof(guests) - 1] != 0;
	if (strncmp(url, pol, sizeof(pol) - 1) || strcmp(method, "POST"))
		return false;
	const char *rule = url + sizeof(pol) - 1, *slash = strchr(rule, '/');
	return slash && slash > rule && !strcmp(slash, "/act");
}
