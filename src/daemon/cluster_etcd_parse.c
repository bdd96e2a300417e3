#include "cluster_etcd_parse.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *etcd_b64_encode(const void *data, size_t n)
{
	const unsigned char *p = data;
	char *out = malloc(4 * ((n + 2) / 3) + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = b64[v >> 18 & 63];
		out[o++] = b64[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b64[v & 63] : '=';
	}
	out[o] = 0;
	return out;
}

static int b64_val(char c)
{
	const char *p = c ? strchr(b64, c) : NULL;
	return p ? (int)(p - b64) : -1;
}

char *etcd_b64_decode(const char *s, size_t max, size_t *outlen)
{
	size_t n = strlen(s);
	if (n % 4 || n / 4 * 3 > max + 2)
		return NULL;
	char *out = malloc(n / 4 * 3 + 1);
	if (!out)
		return NULL;
	size_t o = 0;
	for (size_t i = 0; i < n; i += 4) {
		bool last = i + 4 == n;
		int pad = (s[i + 3] == '=') + (s[i + 2] == '=' && s[i + 3] == '=');
		if (pad && !last)
			goto bad;
		int v[4] = {0};
		for (int k = 0; k < 4 - pad; k++)
			if ((v[k] = b64_val(s[i + k])) < 0)
				goto bad;
		uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
		out[o++] = (char)(w >> 16);
		if (pad < 2)
			out[o++] = (char)(w >> 8 & 255);
		if (pad < 1)
			out[o++] = (char)(w & 255);
	}
	if (o > max)
		goto bad;
	out[o] = 0;
	*outlen = o;
	return out;
bad:
	free(out);
	return NULL;
}

void etcd_kvs_free(struct etcd_kvs *k)
{
	for (size_t i = 0; i < k->n; i++) {
		free(k->kv[i].key);
		free(k->kv[i].value);
	}
	free(k->kv);
	k->kv = NULL;
	k->n = 0;
}

/* grpc-gateway writes int64 as a decimal string; absent means 0. */
static bool get_i64(json_t *o, const char *key, int64_t *out)
{
	json_t *v = json_object_get(o, key);
	*out = 0;
	if (!v)
		return true;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return true;
	}
	const char *s = json_string_value(v);
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long long x = strtoll(s, &end, 10);
	if (errno || *end)
		return false;
	*out = x;
	return true;
}

static bool get_u64(json_t *o, const char *key, uint64_t *out)
{
	json_t *v = json_object_get(o, key);
	*out = 0;
	if (!v)
		return true;
	const char *s = json_string_value(v);
	if (!s || !*s || *s == '-')
		return false;
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = x;
	return true;
}

/* Loads the answer; an {"error": ...} or non-object answer is -1. */
static json_t *load(const char *json, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		snprintf(err, errlen, "etcd answered something that is not JSON: %s", je.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		snprintf(err, errlen, "etcd answered JSON that is not an object");
		json_decref(j);
		return NULL;
	}
	json_t *e = json_object_get(j, "error");
	if (e) {
		const char *msg = json_string_value(json_object_get(j, "message"));
		if (!msg)
			msg = json_string_value(e);
		snprintf(err, errlen, "etcd: %.200s", msg ? msg : "error without a message");
		json_decref(j);
		return NULL;
	}
	return j;
}

/* Every parser's way out when the answer is refused: why in err, j freed. */
__attribute__((format(printf, 4, 5)))
static int refuse(json_t *j, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	json_decref(j);
	return -1;
}

static int parse_kv(json_t *o, struct etcd_kv *kv)
{
	const char *k = json_string_value(json_object_get(o, "key"));
	json_t *vj = json_object_get(o, "value");
	const char *v = vj ? json_string_value(vj) : "";
	size_t klen;
	if (!json_is_object(o) || !k || !v)
		return -1;
	kv->key = etcd_b64_decode(k, ETCD_MAX_KEY, &klen);
	kv->value = etcd_b64_decode(v, ETCD_MAX_VALUE, &kv->vlen);
	if (!kv->key || !kv->value || strlen(kv->key) != klen ||
	    !get_i64(o, "create_revision", &kv->create_rev) ||
	    !get_i64(o, "mod_revision", &kv->mod_rev) || !get_i64(o, "lease", &kv->lease))
		return -1;
	return 0;
}

int etcd_parse_range(const char *json, size_t len, struct etcd_kvs *out,
		     char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	json_t *j = load(json, len, err, errlen);
	if (!j)
		return -1;
	json_t *kvs = json_object_get(j, "kvs");
	if ((kvs && !json_is_array(kvs)) ||
	    !get_i64(json_object_get(j, "header"), "revision", &out->revision))
		return refuse(j, err, errlen, "etcd's range answer is malformed");
	size_t n = json_array_size(kvs);
	out->kv = n ? calloc(n, sizeof(*out->kv)) : NULL;
	if (n && !out->kv)
		return refuse(j, err, errlen, "out of memory");
	for (size_t i = 0; i < n; i++) {
		out->n = i + 1;
		if (parse_kv(json_array_get(kvs, i), &out->kv[i])) {
			etcd_kvs_free(out);
			return refuse(j, err, errlen, "etcd's range answer has a malformed entry");
		}
	}
	json_decref(j);
	return 0;
}

int etcd_parse_txn(const char *json, size_t len, bool *succeeded, int64_t *revision,
		   char *err, size_t errlen)
{
	json_t *j = load(json, len, err, errlen);
	if (!j)
		return -1;
	json_t *s = json_object_get(j, "succeeded");
	if ((s && !json_is_boolean(s)) ||
	    !get_i64(json_object_get(j, "header"), "revision", revision))
		return refuse(j, err, errlen, "etcd's txn answer is malformed");
	*succeeded = json_is_true(s);
	json_decref(j);
	return 0;
}

int etcd_parse_lease(const char *json, size_t len, int64_t *id, int64_t *ttl,
		     char *err, size_t errlen)
{
	json_t *j = load(json, len, err, errlen);
	if (!j)
		return -1;
	json_t *r = json_object_get(j, "result");
	json_t *o = r ? r : j;
	if (!json_is_object(o) || !get_i64(o, "ID", id) || !get_i64(o, "TTL", ttl) ||
	    *ttl < 0)
		return refuse(j, err, errlen, "etcd's lease answer is malformed");
	json_t *e = json_object_get(o, "error");
	if (e)
		return refuse(j, err, errlen, "etcd: %.200s",
			      json_is_string(e) ? json_string_value(e) : "lease error");
	json_decref(j);
	return 0;
}

int etcd_parse_status(const char *json, size_t len, uint64_t *member, uint64_t *leader,
		      char *version, size_t vlen, char *err, size_t errlen)
{
	json_t *j = load(json, len, err, errlen);
	if (!j)
		return -1;
	const char *v = json_string_value(json_object_get(j, "version"));
	if (!get_u64(json_object_get(j, "header"), "member_id", member) ||
	    !get_u64(j, "leader", leader) || !v || strlen(v) >= vlen)
		return refuse(j, err, errlen, "etcd's status answer is malformed");
	snprintf(version, vlen, "%s", v);
	json_decref(j);
	return 0;
}

int etcd_parse_auth(const char *json, size_t len, char *token, size_t toklen,
		    char *err, size_t errlen)
{
	json_t *j = load(json, len, err, errlen);
	if (!j)
		return -1;
	const char *t = json_string_value(json_object_get(j, "token"));
	if (!t || !*t || strlen(t) >= toklen || strpbrk(t, "\r\n"))
		return refuse(j, err, errlen, "etcd's authenticate answer has no usable token");
	snprintf(token, toklen, "%s", t);
	json_decref(j);
	return 0;
}

void etcd_watch_events_free(struct etcd_watch_event *evs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(evs[i].key);
	free(evs);
}

int etcd_parse_watch(const char *json, size_t len, struct etcd_watch_event **evs, size_t *n,
		     char *err, size_t errlen)
{
	*evs = NULL;
	*n = 0;
	json_t *j = load(json, len, err, errlen);
	if (!j)
		return -1;
	json_t *r = json_object_get(j, "result");
	json_t *list = json_object_get(r, "events");
	if (!json_is_object(r) || (list && !json_is_array(list)) ||
	    json_is_true(json_object_get(r, "canceled")))
		return refuse(j, err, errlen, "etcd's watch answer is malformed or the watch was canceled");
	size_t cnt = json_array_size(list);
	*evs = cnt ? calloc(cnt, sizeof(**evs)) : NULL;
	for (size_t i = 0; i < cnt && *evs; i++) {
		json_t *ev = json_array_get(list, i);
		json_t *kv = json_object_get(ev, "kv");
		json_t *type = json_object_get(ev, "type");
		const char *k = json_string_value(json_object_get(kv, "key"));
		size_t klen;
		struct etcd_watch_event *o = &(*evs)[i];
		*n = i + 1;
		o->del = json_is_string(type) && !strcmp(json_string_value(type), "DELETE");
		o->key = k ? etcd_b64_decode(k, ETCD_MAX_KEY, &klen) : NULL;
		if (!json_is_object(ev) || (type && !json_is_string(type)) || !o->key ||
		    strlen(o->key) != klen || !get_i64(kv, "mod_revision", &o->mod_rev)) {
			etcd_watch_events_free(*evs, *n);
			*evs = NULL;
			*n = 0;
			return refuse(j, err, errlen, "etcd's watch answer has a malformed event");
		}
	}
	if (cnt && !*evs)
		return refuse(j, err, errlen, "out of memory");
	json_decref(j);
	return 0;
}
