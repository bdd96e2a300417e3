#include "peer_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "growbuf.h"
#include "parse.h"

#define PEER_MAX_ANSWER (1024 * 1024)

/* libcurl's write callback; a 0 return ends the transfer (too big). */
static size_t on_data(char *ptr, size_t size, size_t n, void *arg)
{
	return growbuf_append(arg, ptr, size * n, PEER_MAX_ANSWER) ? size * n : 0;
}

int peer_client_init(char *err, size_t errlen)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	return 0;
}

bool peer_url_ok(const char *url)
{
	static const char scheme[] = "http://";
	if (strncmp(url, scheme, sizeof(scheme) - 1) || strlen(url) > 200)
		return false;
	const char *host = url + sizeof(scheme) - 1;
	const char *colon = host[0] == '[' ? strstr(host, "]:") : strchr(host, ':');
	if (!colon || colon == host)
		return false;
	colon += host[0] == '[';
	for (const char *c = host; c < colon; c++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:", *c))
			return false;
	char port[8];
	const char *end = strchr(colon + 1, '/');
	size_t plen = end ? (size_t)(end - colon - 1) : strlen(colon + 1);
	if (!plen || plen >= sizeof(port) || (end && end[1]))
		return false;
	memcpy(port, colon + 1, plen);
	port[plen] = 0;
	uint64_t v;
	return kvz_parse_u64(port, 1, 65535, &v);
}

long peer_call(const char *base_url, const char *token, const char *method,
	       const char *path, json_t *body, json_t **out, char *err, size_t errlen)
{
	char auth[600];
	snprintf(auth, sizeof(auth), "Bearer %s", token);
	char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
	long st = peer_call_raw(base_url, auth, method, path, payload, out, err, errlen);
	free(payload);
	return st;
}

long peer_call_raw(const char *base_url, const char *authz, const char *method,
		   const char *path, const char *payload, json_t **out, char *err, size_t errlen)
{
	*out = NULL;
	CURL *c = curl_easy_init();
	if (!c) {
		snprintf(err, errlen, "cannot initialise libcurl");
		return -1;
	}
	char url[512], auth[700];
	size_t blen = strlen(base_url);
	snprintf(url, sizeof(url), "%.*s%s", (int)(blen && base_url[blen - 1] == '/' ? blen - 1 : blen),
		 base_url, path);
	snprintf(auth, sizeof(auth), "Authorization: %s", authz);
	struct curl_slist *hdrs = curl_slist_append(NULL, auth);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	struct growbuf a = {0};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)PEER_CONNECT_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)PEER_TIMEOUT_S);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	if (payload)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	CURLcode rc = curl_easy_perform(c);
	long status = -1;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else if (rc == CURLE_WRITE_ERROR)
		snprintf(err, errlen, "%s answered more than %d bytes", base_url, PEER_MAX_ANSWER);
	else
		snprintf(err, errlen, "%s: %s", base_url, curl_easy_strerror(rc));
	if (status > 0 && a.p)
		*out = json_loads(a.p, 0, NULL);
	free(a.p);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return status;
}

/* A whole number in [0, 2^62), or NULL. */
static json_t *count(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0 &&
	       json_integer_value(v) < ((json_int_t)1 << 62) ? v : NULL;
}

json_t *peer_host_facts(json_t *host)
{
	json_t *out = json_object();
	static const char *const strings[] = {"version", "cpu_model", NULL};
	static const char *const counts[] = {"cpus", "mem_total", "mem_available",
					     "vm_memory_assigned", "guests", NULL};
	for (const char *const *k = strings; *k; k++) {
		json_t *v = json_object_get(host, *k);
		if (json_is_string(v) && json_string_length(v) <= 256 &&
		    strlen(json_string_value(v)) == json_string_length(v))
			json_object_set(out, *k, v);
	}
	for (const char *const *k = counts; *k; k++) {
		json_t *v = count(json_object_get(host, *k));
		if (v)
			json_object_set(out, *k, v);
	}
	json_t *cpus = count(json_object_get(host, "cpus"));
	json_t *pct = json_object_get(json_object_get(host, "usage"), "cpu_pct");
	double p = json_number_value(pct);
	if (cpus && json_is_number(pct) && p >= 0 && p <= 100)
		json_object_set_new(out, "cpus_idle", json_real(
			(double)json_integer_value(cpus) * (100.0 - p) / 100.0));
	return out;
}
