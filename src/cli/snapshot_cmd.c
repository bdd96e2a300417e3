/* kvz snapshot create|list|restore|delete: create and restore are jobs
 * that kvz follows (jobs_cmd.c) unless --detach is given. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

static int snap_usage(void)
{
	kvz_error("usage: kvz snapshot create NAME [SNAP] [--detach] | list NAME | "
		  "restore NAME SNAP [--detach] | delete NAME SNAP");
	return 2;
}

/* Takes --detach out of argv. */
static bool take_detach(int *argc, char **argv)
{
	bool detach = false;
	int out = 0;
	for (int i = 0; i < *argc; i++) {
		if (!strcmp(argv[i], "--detach"))
			detach = true;
		else
			argv[out++] = argv[i];
	}
	*argc = out;
	return detach;
}

static bool snap_name_ok(const char *snap)
{
	if (kvz_valid_name(snap) && snap[0] != '.')
		return true;
	kvz_error("bad snapshot name \"%s\" (letters, digits, '_', '.', '-'; up to 63)", snap);
	return false;
}

/* A job was submitted: follow it, or print its id and return. */
static int submitted(json_t *job, bool detach)
{
	if (!detach) {
		int rc = follow_job(job);
		json_decref(job);
		return rc;
	}
	if (cli_json)
		print_json(job);
	else
		printf("job %lld\n", (long long)json_integer_value(json_object_get(job, "id")));
	json_decref(job);
	return 0;
}

static void print_snapshots(json_t *list)
{
	printf("%-24s %-19s %-8s %s\n", "SNAPSHOT", "CREATED (UTC)", "STATE", "SIZE");
	size_t i;
	json_t *s;
	json_array_foreach(list, i, s) {
		char t[32], sz[16];
		printf("%-24s %-19s %-8s %s\n", json_string_value(json_object_get(s, "name")),
		       fmt_time(json_integer_value(json_object_get(s, "created_ms")), t, sizeof(t)),
		       json_is_true(json_object_get(s, "running")) ? "running" : "stopped",
		       fmt_size((uint64_t)json_integer_value(json_object_get(s, "size")), sz,
				sizeof(sz)));
	}
}

int cmd_snapshot(int argc, char **argv)
{
	bool detach = take_detach(&argc, argv);
	if (argc < 3 || !name_ok(argv[2]))
		return argc < 3 ? snap_usage() : 2;
	const char *op = argv[1], *name = argv[2], *snap = argc > 3 ? argv[3] : NULL;
	if (snap && !snap_name_ok(snap))
		return 2;
	char path[256];
	json_t *out = NULL;
	if (!strcmp(op, "create") && argc <= 4) {
		snprintf(path, sizeof(path), "/v1/guests/%s/snapshots", name);
		json_t *body = snap ? json_pack("{s:s}", "name", snap) : NULL;
		int rc = http_call("POST", path, body, &out);
		json_decref(body);
		return rc ? 1 : submitted(out, detach);
	}
	if (!strcmp(op, "list") && argc == 3) {
		snprintf(path, sizeof(path), "/v1/guests/%s/snapshots", name);
		if (http_call("GET", path, NULL, &out))
			return 1;
		if (cli_json)
			print_json(out);
		else
			print_snapshots(out);
		json_decref(out);
		return 0;
	}
	if (!strcmp(op, "restore") && argc == 4) {
		snprintf(path, sizeof(path), "/v1/guests/%s/snapshots/%s/restore", name, snap);
		return http_call("POST", path, NULL, &out) ? 1 : submitted(out, detach);
	}
	if (!strcmp(op, "delete") && argc == 4) {
		snprintf(path, sizeof(path), "/v1/guests/%s/snapshots/%s", name, snap);
		if (http_call("DELETE", path, NULL, &out))
			return 1;
		json_decref(out);
		printf("deleted snapshot %s of %s\n", snap, name);
		return 0;
	}
	return snap_usage();
}
