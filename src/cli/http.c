#include "http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>

#include "growbuf.h"
#include "log.h"

/* Chosen once in main() before any request. */
static const char *socket_path = "/run/kvz/kvzd.sock";

void http_set_socket(const char *path) { socket_path = path; }
const char *http_socket(void) { return socket_path; }

/* Answers of any size kvzd sends (metrics of many guests included). */
#define HTTP_MAX_ANSWER ((size_t)256 << 20)

static size_t on_data(char *ptr, size_t size, size_t n, void *arg)
{
	return growbuf_append(arg, ptr, size * n, HTTP_MAX_ANSWER) ? size * n : 0;
}

static void report_transport(CURLcode rc)
{
	struct stat st;
	if (stat(socket_path, &st) < 0)
		kvz_error("kvzd is not running: no socket at %s (start kvzd, or set --socket or KVZ_SOCKET)",
			  socket_path);
	else if (rc == CURLE_COULDNT_CONNECT)
		kvz_error("kvzd is not running: nothing answers on %s", socket_path);
	else
		kvz_error("talking to kvzd on %s: %s", socket_path, curl_easy_strerror(rc));
}

/* Performs the request; returns the HTTP status or -1 (already reported). */
static long perform(const char *method, const char *path, const char *payload, struct growbuf *b)
{
	CURL *c = curl_easy_init();
	if (!c) {
		kvz_error("cannot initialise libcurl");
		return -1;
	}
	char url[1024];
	/* The host part is ignored on a UNIX socket; "kvzd" reads well in logs. */
	snprintf(url, sizeof(url), "http://kvzd%s", path);
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	/* Stop and start wait for supervisors; generous, but not forever. */
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
	if (payload)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	CURLcode rc = curl_easy_perform(c);
	long status = -1;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		report_transport(rc);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return status;
}

static void report_http_error(long status, const struct growbuf *b)
{
	json_t *j = b->p ? json_loads(b->p, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
	if (msg)
		kvz_error("%s", msg);
	else
		kvz_error("kvzd answered HTTP %ld", status);
	json_decref(j);
}

int http_call(const char *method, const char *path, json_t *body, json_t **out)
{
	char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
	struct growbuf b = {0};
	long status = perform(method, path, payload, &b);
	free(payload);
	int ret = -1;
	if (status >= 200 && status < 300) {
		ret = 0;
		if (out) {
			json_error_t jerr;
			*out = b.p ? json_loads(b.p, 0, &jerr) : json_null();
			if (!*out) {
				kvz_error("kvzd sent malformed JSON: %s", jerr.text);
				ret = -1;
			}
		}
	} else if (status > 0) {
		report_http_error(status, &b);
	}
	free(b.p);
	return ret;
}

int http_text(const char *path, char **out)
{
	struct growbuf b = {0};
	long status = perform("GET", path, NULL, &b);
	if (status >= 200 && status < 300) {
		*out = b.p ? b.p : strdup("");
		return 0;
	}
	if (status > 0)
		report_http_error(status, &b);
	free(b.p);
	return -1;
}
