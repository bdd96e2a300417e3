/* libFuzzer target: etcd's JSON gateway answers as kvzd parses them
 * (src/daemon/cluster_etcd_parse.c). The first byte picks the parser; the
 * rest is the answer (6: one message of a watch stream). Properties checked: a range entry's key has no NUL
 * inside and its value is exactly vlen bytes; base64 round-trips. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_etcd_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_range(const char *p, size_t n)
{
	struct etcd_kvs k;
	char err[256];
	if (etcd_parse_range(p, n, &k, err, sizeof(err)))
		return;
	for (size_t i = 0; i < k.n; i++) {
		if (strlen(k.kv[i].key) > ETCD_MAX_KEY || k.kv[i].vlen > ETCD_MAX_VALUE ||
		    k.kv[i].value[k.kv[i].vlen])
			abort();
		char *again = etcd_b64_encode(k.kv[i].value, k.kv[i].vlen);
		size_t len;
		char *back = etcd_b64_decode(again, ETCD_MAX_VALUE, &len);
		if (!back || len != k.kv[i].vlen || memcmp(back, k.kv[i].value, len))
			abort();
		free(again);
		free(back);
	}
	etcd_kvs_free(&k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	char err[256], ver[32], tok[128];
	bool ok;
	int64_t a, b;
	uint64_t m, l;
	struct etcd_watch_event *evs;
	size_t nev;
	switch (data[0] % 7) {
	case 0:
		check_range(p, n);
		break;
	case 1:
		etcd_parse_txn(p, n, &ok, &a, err, sizeof(err));
		break;
	case 2:
		if (!etcd_parse_lease(p, n, &a, &b, err, sizeof(err)) && b < 0)
			abort();
		break;
	case 3:
		if (!etcd_parse_status(p, n, &m, &l, ver, sizeof(ver), err, sizeof(err)) &&
		    strlen(ver) >= sizeof(ver))
			abort();
		break;
	case 4:
		if (!etcd_parse_auth(p, n, tok, sizeof(tok), err, sizeof(err)) &&
		    strpbrk(tok, "\r\n"))
			abort();
		break;
	case 6:
		if (!etcd_parse_watch(p, n, &evs, &nev, err, sizeof(err))) {
			for (size_t i = 0; i < nev; i++)
				if (!evs[i].key || strlen(evs[i].key) > ETCD_MAX_KEY)
					abort();
			etcd_watch_events_free(evs, nev);
		}
		break;
	default: {
		char *s = malloc(n + 1);
		memcpy(s, p, n);
		s[n] = 0;
		size_t len;
		char *dec = etcd_b64_decode(s, 4096, &len);
		if (dec) {
			char *enc = etcd_b64_encode(dec, len);
			if (strcmp(enc, s) && strlen(enc) != strlen(s))
				abort();
			free(enc);
		}
		free(dec);
		free(s);
	}
	}
	return 0;
}
