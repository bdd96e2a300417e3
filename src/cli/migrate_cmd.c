/* kvz migrate NAME --to NODE [--offline] [--copy-storage] [--downtime MS] [--bandwidth MBPS]
 * [--pre-dumps K] [--detach]: a migrate job on kvzd, followed like any job,
 * then one line with total time, downtime, bytes sent and whether the disk
 * was copied or shared (from the source's migrated-out event). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

static int migrate_usage(void)
{
	kvz_error("usage: kvz migrate NAME --to NODE [--offline] [--copy-storage] [--downtime MS] "
		  "[--bandwidth MBPS] [--pre-dumps K] [--detach]");
	return 2;
}

static const char *jstr_or_empty(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* The hand-over's steps after the stream (the job's result), a line. */
static void print_handover(json_t *job)
{
	char path[64];
	json_t *now = NULL;
	snprintf(path, sizeof(path), "/v1/jobs/%lld",
		 (long long)json_integer_value(json_object_get(job, "id")));
	if (http_call("GET", path, NULL, &now))
		return;
	json_t *h = json_object_get(json_object_get(now, "result"), "handover");
	if (json_is_object(h))
		printf("hand-over after the stream: target told +%lld ms, its guest running %+lld ms "
		       "(its clock), committed +%lld ms, source stopped +%lld ms, record moved +%lld ms\n",
		       (long long)json_integer_value(json_object_get(h, "told_ms")),
		       (long long)json_integer_value(json_object_get(h, "target_running_ms")),
		       (long long)json_integer_value(json_object_get(h, "committed_ms")),
		       (long long)json_integer_value(json_object_get(h, "source_stopped_ms")),
		       (long long)json_integer_value(json_object_get(h, "record_moved_ms")));
	json_decref(now);
}

/* The newest migrated-out event of name, printed as the final line. */
static void print_outcome(const char *name)
{
	char path[256];
	json_t *evs = NULL;
	snprintf(path, sizeof(path), "/v1/events?guest=%s&limit=1000", name);
	if (http_call("GET", path, NULL, &evs))
		return;
	const char *detail = NULL;
	size_t i;
	json_t *ev;
	json_array_foreach(evs, i, ev)
		if (!strcmp(jstr_or_empty(ev, "type"), "migrated-out"))
			detail = json_string_value(json_object_get(ev, "detail"));
	if (detail)
		printf("migrated %s %s\n", name, detail);
	json_decref(evs);
}

static int opt_num(const char *opt, const char *v, uint64_t min, uint64_t max, json_t *body,
		   const char *key, uint64_t scale)
{
	uint64_t n;
	if (!v || !kvz_parse_u64(v, min, max, &n)) {
		kvz_error("%s: want a number from %llu to %llu", opt, (unsigned long long)min,
			  (unsigned long long)max);
		return -1;
	}
	json_object_set_new(body, key, json_integer((json_int_t)(n * scale)));
	return 0;
}

int cmd_migrate(int argc, char **argv)
{
	const char *name = NULL;
	bool detach = false;
	json_t *body = json_object();
	int rc = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--to") && v) {
			json_object_set_new(body, "to", json_string(v));
			i++;
		} else if (!strcmp(a, "--offline")) {
			json_object_set_new(body, "offline", json_true());
		} else if (!strcmp(a, "--copy-storage")) {
			json_object_set_new(body, "copy_storage", json_true());
		} else if (!strcmp(a, "--detach")) {
			detach = true;
		} else if (!strcmp(a, "--downtime")) {
			if (opt_num(a, v, 1, 600000, body, "downtime_ms", 1))
				goto out;
			i++;
		} else if (!strcmp(a, "--bandwidth")) {
			if (opt_num(a, v, 1, 1000000, body, "max_bandwidth", 1000000 / 8))
				goto out;
			i++;
		} else if (!strcmp(a, "--pre-dumps")) { /* a container's */
			if (opt_num(a, v, 0, 10, body, "pre_dumps", 1))
				goto out;
			i++;
		} else if (!name && a[0] != '-') {
			name = a;
		} else {
			rc = migrate_usage();
			goto out;
		}
	}
	if (!name || !json_object_get(body, "to")) {
		rc = migrate_usage();
		goto out;
	}
	if (!name_ok(name))
		goto out;
	char path[256];
	json_t *job = NULL;
	snprintf(path, sizeof(path), "/v1/guests/%s/migrate", name);
	if (http_call("POST", path, body, &job)) {
		rc = 1;
		goto out;
	}
	if (detach) {
		if (cli_json)
			print_json(job);
		else
			printf("job %lld\n", (long long)json_integer_value(json_object_get(job, "id")));
		rc = 0;
	} else {
		rc = follow_job(job);
		if (rc == 0 && !cli_json) {
			print_handover(job);
			print_outcome(name);
		}
	}
	json_decref(job);
out:
	json_decref(body);
	return rc;
}
