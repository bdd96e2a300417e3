#include "cluster_etcd.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "growbuf.h"
#include "parse.h"

/* Range answers for 10,000 guests fit; a bigger answer is refused. */
#define ETCD_MAX_ANSWER (64 * 1024 * 1024)
#define ETCD_TOKEN_LEN 512

struct etcd {
	struct etcd_opts o;
	pthread_mutex_t lock;  /* guards cur and token */
	int cur;               /* the endpoint that answered last */
	char token[ETCD_TOKEN_LEN]; /* auth token, "" until authenticated */
};

static bool endpoint_ok(const char *url)
{
	const char *host = !strncmp(url, "http://", 7) ? url + 7 :
			   !strncmp(url, "https://", 8) ? url + 8 : NULL;
	if (!host || !*host || strlen(url) > 200)
		return false;
	const char *colon = strrchr(host, ':');
	uint64_t port;
	if (!colon || colon == host || !kvz_parse_u64(colon + 1, 1, 65535, &port))
		return false;
	for (const char *c = host; c < colon; c++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:", *c))
			return false;
	return true;
}

int etcd_parse_endpoints(const char *list, struct etcd_opts *o, char *err, size_t errlen)
{
	o->n = 0;
	const char *p = list;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (o->n == ETCD_MAX_ENDPOINTS) {
			snprintf(err, errlen, "more than %d etcd endpoints", ETCD_MAX_ENDPOINTS);
			return -1;
		}
		if (len >= sizeof(o->endpoints[0])) {
			snprintf(err, errlen, "etcd endpoint too long");
			return -1;
		}
		memcpy(o->endpoints[o->n], p, len);
		o->endpoints[o->n][len] = 0;
		if (!endpoint_ok(o->endpoints[o->n])) {
			snprintf(err, errlen, "bad etcd endpoint \"%s\" (want http(s)://HOST:PORT)",
				 o->endpoints[o->n]);
			return -1;
		}
		o->n++;
		p += len + (comma != NULL);
	}
	if (!o->n) {
		snprintf(err, errlen, "no etcd endpoint given");
		return -1;
	}
	return 0;
}

struct etcd *etcd_new(const struct etcd_opts *o)
{
	struct etcd *e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->o = *o;
	if (e->o.timeout_ms <= 0)
		e->o.timeout_ms = 1000;
	if (e->o.request_ms < e->o.timeout_ms)
		e->o.request_ms = e->o.timeout_ms;
	pthread_mutex_init(&e->lock, NULL);
	return e;
}

void etcd_free(struct etcd *e)
{
	if (!e)
		return;
	pthread_mutex_destroy(&e->lock);
	free(e);
}

static size_t on_data(char *ptr, size_t size, size_t n, void *arg)
{
	return growbuf_append(arg, ptr, size * n, ETCD_MAX_ANSWER) ? size * n : 0;
}

/* The CA and client certificate for https endpoints. */
static void tls_options(CURL *c, const struct etcd *e)
{
	if (*e->o.cacert)
		curl_easy_setopt(c, CURLOPT_CAINFO, e->o.cacert);
	if (*e->o.cert)
		curl_easy_setopt(c, CURLOPT_SSLCERT, e->o.cert);
	if (*e->o.key)
		curl_easy_setopt(c, CURLOPT_SSLKEY, e->o.key);
}

/* One POST of payload to one endpoint. Returns the HTTP status (the answer
 * in *ans) or -1 when the endpoint could not be reached. */
static long post_one(struct etcd *e, const char *endpoint, const char *path,
		     const char *payload, const char *token, struct growbuf *ans,
		     char *err, size_t errlen)
{
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	char url[512], auth[600];
	snprintf(url, sizeof(url), "%s%s", endpoint, path);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	if (token && *token) {
		snprintf(auth, sizeof(auth), "Authorization: %s", token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, ans);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)e->o.request_ms);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->o.timeout_ms);
	tls_options(c, e);
	CURLcode rc = curl_easy_perform(c);
	long status = -1;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		snprintf(err, errlen, "etcd %s: %s", endpoint, curl_easy_strerror(rc));
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return status;
}

/* The auth token as it is now ("" before authenticating). */
static void token_now(struct etcd *e, char token[static ETCD_TOKEN_LEN])
{
	pthread_mutex_lock(&e->lock);
	snprintf(token, ETCD_TOKEN_LEN, "%s", e->token);
	pthread_mutex_unlock(&e->lock);
}

static int authenticate(struct etcd *e, const char *endpoint, char *err, size_t errlen)
{
	json_t *req = json_pack("{s:s, s:s}", "name", e->o.user, "password", e->o.password);
	char *payload = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct growbuf a = {0};
	char token[ETCD_TOKEN_LEN];
	long st = payload ? post_one(e, endpoint, "/v3/auth/authenticate", payload, NULL, &a,
				     err, errlen) : -1;
	int rc = st > 0 && a.p ? etcd_parse_auth(a.p, a.len, token, sizeof(token), err, errlen) : -1;
	if (!rc) {
		pthread_mutex_lock(&e->lock);
		snprintf(e->token, sizeof(e->token), "%s", token);
		pthread_mutex_unlock(&e->lock);
	}
	free(a.p);
	free(payload);
	return rc;
}

/* POSTs body to path, trying each endpoint from the last that answered.
 * Returns 0 with the answer (malloc'd, NUL-terminated) in *answer, or -1. */
static int call(struct etcd *e, const char *path, json_t *body, char **answer,
		size_t *alen, char *err, size_t errlen)
{
	char *payload = json_dumps(body, JSON_COMPACT);
	*answer = NULL;
	if (!payload) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_lock(&e->lock);
	int start = e->cur;
	pthread_mutex_unlock(&e->lock);
	snprintf(err, errlen, "no etcd endpoint");
	for (int i = 0; i < e->o.n; i++) {
		int idx = (start + i) % e->o.n;
		const char *ep = e->o.endpoints[idx];
		char token[ETCD_TOKEN_LEN];
		token_now(e, token);
		if (*e->o.user && !*token && authenticate(e, ep, err, errlen))
			continue;
		for (int attempt = 0; attempt < 2; attempt++) {
			struct growbuf a = {0};
			token_now(e, token);
			long st = post_one(e, ep, path, payload, token, &a, err, errlen);
			/* An expired auth token: authenticate again, once. */
			if (st == 401 && *e->o.user && !attempt && !authenticate(e, ep, err, errlen)) {
				free(a.p);
				continue;
			}
			if (st < 0 || st >= 500 || !a.p) {
				/* Unreachable, or a member without quorum: the next one. */
				if (st > 0 && a.p)
					snprintf(err, errlen, "etcd %s: HTTP %ld: %.200s", ep, st, a.p);
				free(a.p);
				break;
			}
			pthread_mutex_lock(&e->lock);
			e->cur = idx;
			pthread_mutex_unlock(&e->lock);
			free(payload);
			*answer = a.p;
			*alen = a.len;
			return 0;
		}
	}
	free(payload);
	return -1;
}

/* A call whose answer is a header, and for a txn whether its compare held
 * (put, txn, deleterange, lease revoke). Frees req. */
static int call_header(struct etcd *e, const char *path, json_t *req, bool *succeeded,
		       char *err, size_t errlen)
{
	char *a;
	size_t alen;
	int rc = call(e, path, req, &a, &alen, err, errlen);
	json_decref(req);
	int64_t rev;
	if (!rc)
		rc = etcd_parse_txn(a, alen, succeeded, &rev, err, errlen);
	free(a);
	return rc;
}

/* The smallest key after every key starting with prefix. */
static char *prefix_end(const char *prefix, size_t *len)
{
	size_t n = strlen(prefix);
	char *end = strdup(prefix);
	while (end && n) {
		if ((unsigned char)end[n - 1] < 0xff) {
			end[n - 1]++;
			break;
		}
		n--;
	}
	*len = n;
	return end;
}

static json_t *b64_json(const char *data, size_t n)
{
	char *s = etcd_b64_encode(data, n);
	json_t *j = s ? json_string(s) : NULL;
	free(s);
	return j;
}

static json_t *i64_json(int64_t v)
{
	char s[32];
	snprintf(s, sizeof(s), "%" PRId64, v);
	return json_string(s);
}

static int range(struct etcd *e, const char *key, bool prefix, int64_t min_create_rev,
		 struct etcd_kvs *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	json_t *req = json_object();
	json_object_set_new(req, "key", b64_json(key, strlen(key)));
	if (min_create_rev > 0)
		json_object_set_new(req, "min_create_revision", i64_json(min_create_rev));
	if (prefix) {
		size_t n;
		char *end = prefix_end(key, &n);
		json_object_set_new(req, "range_end", b64_json(end ? end : "", end ? n : 0));
		free(end);
	}
	char *a;
	size_t alen;
	int rc = call(e, "/v3/kv/range", req, &a, &alen, err, errlen);
	json_decref(req);
	if (!rc)
		rc = etcd_parse_range(a, alen, out, err, errlen);
	free(a);
	return rc;
}

int etcd_range(struct etcd *e, const char *key, bool prefix, struct etcd_kvs *out,
	       char *err, size_t errlen)
{
	return range(e, key, prefix, 0, out, err, errlen);
}

int etcd_range_since(struct etcd *e, const char *prefix, int64_t min_create_rev,
		     struct etcd_kvs *out, char *err, size_t errlen)
{
	return range(e, prefix, true, min_create_rev, out, err, errlen);
}

static json_t *put_op(const char *key, const char *value, int64_t lease)
{
	json_t *p = json_object();
	json_object_set_new(p, "key", b64_json(key, strlen(key)));
	json_object_set_new(p, "value", b64_json(value, strlen(value)));
	if (lease)
		json_object_set_new(p, "lease", i64_json(lease));
	return p;
}

int etcd_put(struct etcd *e, const char *key, const char *value, int64_t lease,
	     char *err, size_t errlen)
{
	bool unused;
	return call_header(e, "/v3/kv/put", put_op(key, value, lease), &unused, err, errlen);
}

/* A transaction of one compare on key and the operations ops (an array,
 * or one operation) on success. */
static int txn(struct etcd *e, const char *key, int64_t mod_rev, json_t *op, bool *done,
	       char *err, size_t errlen)
{
	json_t *ops = json_is_array(op) ? op : json_pack("[o]", op);
	json_t *cmp = json_object();
	json_object_set_new(cmp, "key", b64_json(key, strlen(key)));
	json_object_set_new(cmp, "result", json_string("EQUAL"));
	json_object_set_new(cmp, "target", json_string(mod_rev ? "MOD" : "CREATE"));
	json_object_set_new(cmp, mod_rev ? "mod_revision" : "create_revision", i64_json(mod_rev));
	json_t *req = json_pack("{s:[o], s:o}", "compare", cmp, "success", ops);
	return call_header(e, "/v3/kv/txn", req, done, err, errlen);
}

int etcd_cas_put(struct etcd *e, const char *key, const char *value, int64_t lease,
		 int64_t mod_rev, bool *done, char *err, size_t errlen)
{
	json_t *op = json_pack("{s:o}", "request_put", put_op(key, value, lease));
	return txn(e, key, mod_rev, op, done, err, errlen);
}

int etcd_cas_multi(struct etcd *e, const char *key, int64_t mod_rev, const struct etcd_op *ops,
		   int nops, bool *done, char *err, size_t errlen)
{
	json_t *arr = json_array();
	for (int i = 0; i < nops; i++) {
		const struct etcd_op *o = &ops[i];
		json_array_append_new(arr, o->del ?
			json_pack("{s:{s:o}}", "request_delete_range", "key", b64_json(o->key, strlen(o->key))) :
			json_pack("{s:o}", "request_put", put_op(o->key, o->value, 0)));
	}
	return txn(e, key, mod_rev, arr, done, err, errlen);
}

int etcd_cas_delete(struct etcd *e, const char *key, int64_t mod_rev, bool *done,
		    char *err, size_t errlen)
{
	json_t *op = json_pack("{s:{s:o}}", "request_delete_range", "key",
			       b64_json(key, strlen(key)));
	if (mod_rev)
		return txn(e, key, mod_rev, op, done, err, errlen);
	json_t *req = json_incref(json_object_get(op, "request_delete_range"));
	json_decref(op);
	int rc = call_header(e, "/v3/kv/deleterange", req, done, err, errlen);
	*done = !rc;
	return rc;
}

static int lease_call(struct etcd *e, const char *path, json_t *req, int64_t *id,
		      int64_t *ttl, char *err, size_t errlen)
{
	char *a;
	size_t alen;
	int rc = call(e, path, req, &a, &alen, err, errlen);
	json_decref(req);
	if (!rc)
		rc = etcd_parse_lease(a, alen, id, ttl, err, errlen);
	free(a);
	return rc;
}

int etcd_lease_grant(struct etcd *e, int ttl_s, int64_t *id, char *err, size_t errlen)
{
	int64_t ttl;
	json_t *req = json_pack("{s:o}", "TTL", i64_json(ttl_s));
	if (lease_call(e, "/v3/lease/grant", req, id, &ttl, err, errlen))
		return -1;
	if (!*id || ttl <= 0) {
		snprintf(err, errlen, "etcd granted no lease");
		return -1;
	}
	return 0;
}

int etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl, char *err, size_t errlen)
{
	int64_t got;
	return lease_call(e, "/v3/lease/keepalive", json_pack("{s:o}", "ID", i64_json(id)),
			  &got, ttl, err, errlen);
}

int etcd_lease_revoke(struct etcd *e, int64_t id, char *err, size_t errlen)
{
	bool unused;
	return call_header(e, "/v3/lease/revoke", json_pack("{s:o}", "ID", i64_json(id)), &unused,
			   err, errlen);
}

int etcd_status_all(struct etcd *e, struct etcd_member_status *out)
{
	for (int i = 0; i < e->o.n; i++) {
		struct etcd_member_status *s = &out[i];
		memset(s, 0, sizeof(*s));
		snprintf(s->endpoint, sizeof(s->endpoint), "%s", e->o.endpoints[i]);
		struct growbuf a = {0};
		char token[ETCD_TOKEN_LEN];
		token_now(e, token);
		long st = post_one(e, s->endpoint, "/v3/maintenance/status", "{}", token, &a,
				   s->error, sizeof(s->error));
		if (st > 0 && a.p)
			s->healthy = !etcd_parse_status(a.p, a.len, &s->member, &s->leader,
							s->version, sizeof(s->version),
							s->error, sizeof(s->error));
		free(a.p);
	}
	return e->o.n;
}

/* A watch stream in progress: the part of a message received so far. */
struct watch_ctx {
	struct growbuf line;
	bool (*stop)(void *arg);
	etcd_watch_fn *fn;
	void *arg;
	bool bad;
	char err[256];
	/* The endpoint this stream is on: when the client's calls moved to
	 * another (this one failed or froze), the stream ends so that the
	 * caller watches again where the client now talks. */
	struct etcd *e;
	int idx;
};

/* One message per line; a line that does not parse ends the watch. */
static void watch_lines(struct watch_ctx *w)
{
	char *nl;
	while (w->line.p && (nl = memchr(w->line.p, '\n', w->line.len))) {
		size_t used = (size_t)(nl - w->line.p) + 1;
		struct etcd_watch_event *evs;
		size_t n;
		if (used > 1 && !etcd_parse_watch(w->line.p, used - 1, &evs, &n, w->err, sizeof(w->err))) {
			for (size_t i = 0; i < n; i++)
				w->fn(w->arg, &evs[i]);
			etcd_watch_events_free(evs, n);
		} else if (used > 1) {
			w->bad = true;
		}
		memmove(w->line.p, w->line.p + used, w->line.len - used + 1);
		w->line.len -= used;
	}
}

static size_t on_watch_data(char *ptr, size_t size, size_t n, void *arg)
{
	struct watch_ctx *w = arg;
	if (!growbuf_append(&w->line, ptr, size * n, ETCD_MAX_ANSWER))
		return 0;
	watch_lines(w);
	return w->bad ? 0 : size * n;
}

static int on_watch_progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)a; (void)b; (void)c; (void)d;
	struct watch_ctx *w = arg;
	pthread_mutex_lock(&w->e->lock);
	bool moved = w->e->cur != w->idx;
	pthread_mutex_unlock(&w->e->lock);
	return moved || w->stop(w->arg) ? 1 : 0;
}

int etcd_watch(struct etcd *e, const char *prefix, bool (*stop)(void *arg), etcd_watch_fn *fn,
	       void *arg, char *err, size_t errlen)
{
	size_t n;
	char *end = prefix_end(prefix, &n);
	json_t *req = json_pack("{s:{s:o, s:o}}", "create_request", "key", b64_json(prefix, strlen(prefix)),
				"range_end", b64_json(end ? end : "", end ? n : 0));
	free(end);
	char *payload = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	CURL *c = curl_easy_init();
	if (!payload || !c) {
		free(payload);
		if (c)
			curl_easy_cleanup(c);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char url[512], auth[600];
	pthread_mutex_lock(&e->lock);
	int idx = e->cur;
	snprintf(url, sizeof(url), "%s/v3/watch", e->o.endpoints[idx]);
	snprintf(auth, sizeof(auth), "Authorization: %s", e->token);
	pthread_mutex_unlock(&e->lock);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	if (strlen(auth) > strlen("Authorization: "))
		hdrs = curl_slist_append(hdrs, auth);
	struct watch_ctx w = {.stop = stop, .fn = fn, .arg = arg, .e = e, .idx = idx};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_watch_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &w);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_watch_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, &w);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)e->o.timeout_ms);
	/* A stream: no overall timeout, but TCP keepalive notices a dead peer. */
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 5L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 2L);
	tls_options(c, e);
	CURLcode rc = curl_easy_perform(c);
	int ret = 0;
	if (w.bad) {
		snprintf(err, errlen, "%s", w.err);
		ret = -1;
	} else if (rc != CURLE_OK && rc != CURLE_ABORTED_BY_CALLBACK) {
		snprintf(err, errlen, "etcd watch: %s", curl_easy_strerror(rc));
		ret = -1;
	}
	free(w.line.p);
	free(payload);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return ret;
}
