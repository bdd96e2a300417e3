/* Routes of /v1/guests/NAME/backups (backups.h does the work). */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "backups.h"

static void create(struct api_req *r, struct api_resp *resp, const char *guest)
{
	const char *b;
	if (api_optional_name(r, &b)) {
		api_error(resp, 400, "a backup takes {\"name\": \"BACKUP\"} or no body");
		return;
	}
	struct op_error e;
	api_job_reply(resp, backup_create(r->d, guest, b, &e), &e);
}

static void list(struct api_req *r, struct api_resp *resp, const char *guest)
{
	struct op_error e;
	json_t *l = backup_list(r->d, guest, &e);
	if (l)
		api_json(resp, 200, l);
	else
		api_error(resp, e.status, "%s", e.msg);
}

void backups_route(struct api_req *r, struct api_resp *resp, const char *guest,
		   const char *rest)
{
	const char *m = r->method;
	struct op_error e;
	if (!*rest || !strcmp(rest, "/")) {
		if (!strcmp(m, "GET"))
			list(r, resp, guest);
		else if (!strcmp(m, "POST"))
			create(r, resp, guest);
		else
			api_error(resp, 405, "%s is not allowed on %s", m, r->path);
		return;
	}
	char b[72];
	const char *action;
	if (!api_item_path(rest, b, sizeof(b), &action) ||
	    (action && strcmp(action, "restore"))) {
		api_error(resp, 404, "no such resource: %s", r->path);
	} else if (!action && !strcmp(m, "DELETE")) {
		if (backup_delete(r->d, guest, b, &e))
			api_error(resp, e.status, "%s", e.msg);
		else
			api_json(resp, 200, json_pack("{s:s}", "deleted", b));
	} else if (action && !strcmp(m, "POST")) {
		api_job_reply(resp, backup_restore(r->d, guest, b, &e), &e);
	} else {
		api_error(resp, 405, "%s is not allowed on %s", m, r->path);
	}
}
