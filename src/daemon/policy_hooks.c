/* The policy actions that reach outside kvzd: a webhook (an HTTP POST of
 * the event as JSON) and a command (an absolute path run without a shell,
 * with a clean environment). Both are bounded by the rule's timeout_s and
 * their outcome is the action's result. */
#include "policy_hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "mono_clock.h"
#include "supervisor.h"

/* The answer of a webhook is not used: only its status. */
static size_t discard(char *ptr, size_t size, size_t n, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * n;
}

int policy_webhook(const struct policy_rule *r, const char *guest, const char *reason,
		   int64_t now_ms, char *res, size_t len)
{
	json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:I}", "rule", r->name, "guest", guest,
				 "action", "webhook", "trigger", reason, "ts_ms", (json_int_t)now_ms);
	char *payload = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	CURL *c = curl_easy_init();
	if (!c || !payload) {
		free(payload);
		if (c)
			curl_easy_cleanup(c);
		snprintf(res, len, "cannot initialise libcurl");
		return -1;
	}
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "User-Agent: kvzd-policy");
	curl_easy_setopt(c, CURLOPT_URL, r->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(r->timeout_s < 5 ? r->timeout_s : 5));
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)r->timeout_s);
	CURLcode rc = curl_easy_perform(c);
	long status = 0;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	free(payload);
	if (rc != CURLE_OK) {
		snprintf(res, len, "webhook %s: %s", r->url, curl_easy_strerror(rc));
		return -1;
	}
	snprintf(res, len, "webhook %s answered %ld", r->url, status);
	return status >= 200 && status < 300 ? 0 : -1;
}

struct deadline {
	int64_t end_ms;
	bool expired;
};

static bool before_deadline(void *arg)
{
	struct deadline *dl = arg;
	if (kvz_mono_ms() > dl->end_ms)
		dl->expired = true;
	return !dl->expired;
}

/* KEY=value into buf, one of envp. */
static char *env_entry(char *buf, size_t len, const char *key, const char *value)
{
	snprintf(buf, len, "%s=%s", key, value);
	return buf;
}

int policy_command(const struct policy_rule *r, const char *guest, const char *reason,
		   char *res, size_t len)
{
	char *argv[POLICY_MAX_ARGV + 1] = {0};
	for (int i = 0; i < r->nargv; i++)
		argv[i] = (char *)r->argv[i];
	char e_guest[100], e_rule[100], e_trig[400];
	char *envp[] = {
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		env_entry(e_guest, sizeof(e_guest), "KVZ_GUEST", guest),
		env_entry(e_rule, sizeof(e_rule), "KVZ_RULE", r->name),
		env_entry(e_trig, sizeof(e_trig), "KVZ_TRIGGER", reason),
		NULL,
	};
	struct deadline dl = {.end_ms = kvz_mono_ms() + r->timeout_s * 1000LL};
	char out[200];
	int rc = sup_run_watched(argv, envp, before_deadline, &dl, out, sizeof(out));
	if (dl.expired) {
		snprintf(res, len, "%s: killed after the %ds timeout", r->argv[0], r->timeout_s);
		return -1;
	}
	if (rc == 127 && !strncmp(out, "cannot execute", 14)) {
		snprintf(res, len, "%s: cannot execute", r->argv[0]);
		return -1;
	}
	snprintf(res, len, "%s exited %d%s%s", r->argv[0], rc, out[0] ? ": " : "", out);
	return rc == 0 ? 0 : -1;
}
