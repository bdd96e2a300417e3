/* Routes of migration (migration.h): POST /v1/guests/NAME/migrate for
 * clients; /v1/migrations for the source kvzd of an incoming migration
 * (reserve, commit, discard), which holds this host's token like any TCP
 * client. */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "guest_config.h"
#include "migration.h"
#include "parse.h"

void migrate_route(struct api_req *r, struct api_resp *resp, const char *guest)
{
	struct op_error e;
	if (strcmp(r->method, "POST")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return;
	}
	if (!kvz_valid_name(guest)) {
		api_error(resp, 400, "bad guest name \"%s\"", guest);
		return;
	}
	json_t *job = migration_start(r->d, guest, r->body, &e);
	if (job)
		api_json(resp, 202, job);
	else
		api_error(resp, e.status, "%s", e.msg);
}

static void one_migration(struct api_req *r, struct api_resp *resp, const char *name,
			  const char *action)
{
	struct op_error e;
	int rc;
	int64_t running_ms = 0;
	if (!action && !strcmp(r->method, "DELETE"))
		rc = migration_discard(r->d, name, &e);
	else if (action && !strcmp(action, "commit") && !strcmp(r->method, "POST"))
		rc = migration_commit(r->d, name, r->body, &running_ms, &e);
	else if (action && strcmp(action, "commit"))
		rc = op_fail(&e, 404, "no such resource: %s", r->path);
	else
		rc = op_fail(&e, 405, "%s is not allowed on %s", r->method, r->path);
	if (rc)
		api_error(resp, e.status, "%s", e.msg);
	else if (running_ms > 0)   /* the hand-over's times (migration_source.c) */
		api_json(resp, 200, json_pack("{s:s, s:s, s:I}", "guest", name, "done", "committed",
					      "running_ms", (json_int_t)running_ms));
	else
		api_json(resp, 200, json_pack("{s:s, s:s}", "guest", name, "done",
					      action ? "committed" : "discarded"));
}

bool migrations_route(struct api_req *r, struct api_resp *resp)
{
	static const char prefix[] = "/v1/migrations";
	if (strncmp(r->path, prefix, sizeof(prefix) - 1))
		return false;
	const char *rest = r->path + sizeof(prefix) - 1;
	struct op_error e;
	if (!*rest || !strcmp(rest, "/")) {
		json_t *ans = NULL;
		if (strcmp(r->method, "POST"))
			api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		else if (migration_reserve(r->d, r->body, &ans, &e))
			api_error(resp, e.status, "%s", e.msg);
		else
			api_json(resp, 201, ans);
		return true;
	}
	if (*rest != '/')
		return false;
	char name[128];
	const char *slash = strchr(rest + 1, '/');
	size_t len = slash ? (size_t)(slash - rest - 1) : strlen(rest + 1);
	if (len >= sizeof(name) || (slash && strchr(slash + 1, '/'))) {
		api_error(resp, 404, "no such resource: %s", r->path);
		return true;
	}
	memcpy(name, rest + 1, len);
	name[len] = 0;
	one_migration(r, resp, name, slash ? slash + 1 : NULL);
	return true;
}
