/* Routes of /v1/jobs: list, show, cancel (jobs.h does the work). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "jobs.h"
#include "parse.h"
#include "store.h"

static void list_jobs(struct api_req *r, struct api_resp *resp)
{
	const char *guest = api_query(r, "guest");
	const char *l = api_query(r, "limit");
	uint64_t limit = 100;
	if (guest && !kvz_valid_name(guest)) {
		api_error(resp, 400, "bad guest name \"%s\"", guest);
		return;
	}
	if (l && !kvz_parse_u64(l, 1, 10000, &limit)) {
		api_error(resp, 400, "limit must be 1..10000");
		return;
	}
	api_json(resp, 200, store_job_list(r->d->store, guest, (int)limit));
}

static void reply_job(struct api_req *r, struct api_resp *resp, int64_t id, int status)
{
	json_t *job = store_job_get(r->d->store, id);
	if (job)
		api_json(resp, status, job);
	else
		api_error(resp, 404, "no job %lld", (long long)id);
}

static void cancel_job(struct api_req *r, struct api_resp *resp, int64_t id)
{
	struct op_error e;
	if (job_cancel(r->d, id, &e))
		api_error(resp, e.status, "%s", e.msg);
	else
		reply_job(r, resp, id, 202);
}

/* "/ID" or "/ID/ACTION" after /v1/jobs; false on a malformed id. */
static bool parse_job_path(const char *rest, int64_t *id, const char **action)
{
	char idtext[24];
	const char *slash = strchr(rest, '/');
	size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
	uint64_t v;
	if (!len || len >= sizeof(idtext))
		return false;
	memcpy(idtext, rest, len);
	idtext[len] = 0;
	if (!kvz_parse_u64(idtext, 1, INT64_MAX, &v))
		return false;
	*id = (int64_t)v;
	*action = slash ? slash + 1 : NULL;
	return true;
}

bool jobs_route(struct api_req *r, struct api_resp *resp)
{
	static const char prefix[] = "/v1/jobs";
	if (strncmp(r->path, prefix, sizeof(prefix) - 1))
		return false;
	const char *rest = r->path + sizeof(prefix) - 1;
	const char *m = r->method;
	if (!*rest || !strcmp(rest, "/")) {
		if (!strcmp(m, "GET"))
			list_jobs(r, resp);
		else
			api_error(resp, 405, "%s is not allowed on %s", m, r->path);
		return true;
	}
	if (*rest != '/')
		return false;
	int64_t id;
	const char *action;
	if (!parse_job_path(rest + 1, &id, &action)) {
		api_error(resp, 400, "bad job id in %s (a number from 1)", r->path);
	} else if (!action && !strcmp(m, "GET")) {
		reply_job(r, resp, id, 200);
	} else if (!action && !strcmp(m, "DELETE")) {
		cancel_job(r, resp, id);
	} else if (action && !strcmp(action, "cancel") && !strcmp(m, "POST")) {
		cancel_job(r, resp, id);
	} else if (action && strcmp(action, "cancel")) {
		api_error(resp, 404, "no such resource: %s", r->path);
	} else {
		api_error(resp, 405, "%s is not allowed on %s", m, r->path);
	}
	return true;
}
