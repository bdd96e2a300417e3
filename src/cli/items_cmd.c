/* The shape `kvz snapshot` and `kvz backup` share: create NAME [ITEM],
 * list NAME, restore NAME ITEM, delete NAME ITEM under
 * /v1/guests/NAME/COLLECTION; create and restore are jobs that kvz follows
 * (jobs_cmd.c) unless --detach is given. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

static int item_usage(const struct item_kind *k)
{
	kvz_error("usage: kvz %s create NAME [%s] [--detach] | list NAME | "
		  "restore NAME %s [--detach] | delete NAME %s", k->noun, k->meta, k->meta,
		  k->meta);
	return 2;
}

static bool item_name_ok(const struct item_kind *k, const char *item)
{
	if (kvz_valid_name(item) && strlen(item) <= k->max_len)
		return true;
	kvz_error("bad %s name \"%s\" (letters, digits, '_', '.', '-'; up to %zu)", k->noun,
		  item, k->max_len);
	return false;
}

int item_cmd(const struct item_kind *k, int argc, char **argv)
{
	bool detach = job_take_detach(&argc, argv);
	if (argc < 3 || !name_ok(argv[2]))
		return argc < 3 ? item_usage(k) : 2;
	const char *op = argv[1], *name = argv[2], *item = argc > 3 ? argv[3] : NULL;
	if (item && !item_name_ok(k, item))
		return 2;
	char path[256];
	json_t *out = NULL;
	if (!strcmp(op, "create") && argc <= 4) {
		snprintf(path, sizeof(path), "/v1/guests/%s/%s", name, k->collection);
		json_t *body = item ? json_pack("{s:s}", "name", item) : NULL;
		int rc = http_call("POST", path, body, &out);
		json_decref(body);
		return rc ? 1 : job_submitted(out, detach);
	}
	if (!strcmp(op, "list") && argc == 3) {
		snprintf(path, sizeof(path), "/v1/guests/%s/%s", name, k->collection);
		if (http_call("GET", path, NULL, &out))
			return 1;
		if (cli_json)
			print_json(out);
		else
			k->print(out);
		json_decref(out);
		return 0;
	}
	if (!strcmp(op, "restore") && argc == 4) {
		snprintf(path, sizeof(path), "/v1/guests/%s/%s/%s/restore", name, k->collection,
			 item);
		return http_call("POST", path, NULL, &out) ? 1 : job_submitted(out, detach);
	}
	if (!strcmp(op, "delete") && argc == 4) {
		snprintf(path, sizeof(path), "/v1/guests/%s/%s/%s", name, k->collection, item);
		if (http_call("DELETE", path, NULL, &out))
			return 1;
		json_decref(out);
		printf("deleted %s %s of %s\n", k->noun, item, name);
		return 0;
	}
	return item_usage(k);
}
