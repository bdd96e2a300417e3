/* kvz policy: rules that act on guests by themselves (kvzd's /v1/policies,
 * docs/policy.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

static int policy_usage(void)
{
	kvz_error("usage: kvz policy add FILE|- | list | show NAME | enable NAME | disable NAME |"
		  " remove NAME | plan [--at TIME] | approve ID | reject ID |"
		  " log [--state S] [--limit N]");
	return 2;
}

/* The rule from a file or stdin; errors say where. */
static json_t *read_rule(const char *file)
{
	json_error_t je;
	json_t *j = !strcmp(file, "-") ? json_loadf(stdin, 0, &je) : json_load_file(file, 0, &je);
	if (!j)
		kvz_error("%s:%d:%d: %s", !strcmp(file, "-") ? "stdin" : file, je.line, je.column,
			  je.text);
	return j;
}

static int policy_add(const char *file)
{
	json_t *rule = read_rule(file), *out = NULL;
	if (!rule)
		return 1;
	int rc = http_call("POST", "/v1/policies", rule, &out);
	json_decref(rule);
	if (rc)
		return 1;
	if (cli_json)
		print_json(out);
	else
		printf("policy %s added\n", json_string_value(json_object_get(out, "name")));
	json_t *warning = json_object_get(out, "warning");
	if (!cli_json && json_is_string(warning))
		kvz_warn("%s", json_string_value(warning));
	json_decref(out);
	return 0;
}

/* "when" of a trigger, for the table. */
static void trigger_text(json_t *t, char *buf, size_t len)
{
	if (json_object_get(t, "event"))
		snprintf(buf, len, "event %s", json_string_value(json_object_get(t, "event")));
	else if (json_object_get(t, "metric"))
		snprintf(buf, len, "%s > %g for %llds",
			 json_string_value(json_object_get(t, "metric")),
			 json_number_value(json_object_get(t, "above")),
			 (long long)json_integer_value(json_object_get(t, "for_s")));
	else
		snprintf(buf, len, "cron %s", json_string_value(json_object_get(t, "schedule")));
}

static void print_policies(json_t *list)
{
	printf("%-20s %-8s %-10s %-32s %s\n", "NAME", "ENABLED", "LEVEL", "TRIGGER", "ACTION");
	size_t i;
	json_t *p;
	json_array_foreach(list, i, p) {
		json_t *r = json_object_get(p, "rule");
		char trig[128];
		trigger_text(json_object_get(r, "trigger"), trig, sizeof(trig));
		printf("%-20s %-8s %-10s %-32s %s\n", json_string_value(json_object_get(p, "name")),
		       json_is_true(json_object_get(p, "enabled")) ? "yes" : "no",
		       json_string_value(json_object_get(r, "level")), trig,
		       json_string_value(json_object_get(json_object_get(r, "action"), "type")));
	}
}

static void print_plan(json_t *plan)
{
	if (!json_array_size(plan)) {
		printf("no rule would act now\n");
		return;
	}
	size_t i;
	json_t *e;
	json_array_foreach(plan, i, e)
		printf("%s: %s %s (%s): %s -- because %s\n",
		       json_string_value(json_object_get(e, "rule")),
		       json_string_value(json_object_get(e, "action")),
		       json_string_value(json_object_get(e, "guest")),
		       json_string_value(json_object_get(e, "level")),
		       json_string_value(json_object_get(e, "would")),
		       json_string_value(json_object_get(e, "reason")));
}

static void print_log(json_t *log)
{
	printf("%-6s %-19s %-16s %-16s %-12s %-9s %s\n", "ID", "TIME", "RULE", "GUEST", "ACTION",
	       "STATE", "REASON / RESULT");
	size_t i;
	json_t *e;
	json_array_foreach(log, i, e) {
		char t[32];
		const char *result = json_string_value(json_object_get(e, "result"));
		const char *by = json_string_value(json_object_get(e, "approved_by"));
		printf("%-6lld %-19s %-16s %-16s %-12s %-9s %s%s%s%s%s\n",
		       (long long)json_integer_value(json_object_get(e, "id")),
		       fmt_time(json_integer_value(json_object_get(e, "ts_ms")), t, sizeof(t)),
		       json_string_value(json_object_get(e, "rule")),
		       json_string_value(json_object_get(e, "guest")),
		       json_string_value(json_object_get(e, "action")),
		       json_string_value(json_object_get(e, "state")),
		       json_string_value(json_object_get(e, "reason")),
		       result && *result ? " -> " : "", result ? result : "",
		       by && *by ? " by " : "", by ? by : "");
	}
}

/* GETs path and prints it with print (or as JSON with --json). */
static int get_and_print(const char *path, void (*print)(json_t *))
{
	json_t *out = NULL;
	if (http_call("GET", path, NULL, &out))
		return 1;
	if (cli_json)
		print_json(out);
	else
		print(out);
	json_decref(out);
	return 0;
}

/* TIME: seconds since the epoch or "YYYY-MM-DD HH:MM" / "YYYY-MM-DDTHH:MM" in UTC. */
static bool parse_time(const char *s, long long *out)
{
	uint64_t v;
	if (kvz_parse_u64(s, 0, 253402300799ull, &v)) {
		*out = (long long)v;
		return true;
	}
	struct tm tm = {0};
	const char *end = strptime(s, "%Y-%m-%d %H:%M", &tm);
	if (!end || *end) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
	}
	if (!end || *end)
		return false;
	*out = (long long)timegm(&tm);
	return true;
}

static int policy_plan(int argc, char **argv)
{
	char path[96] = "/v1/policies/plan";
	for (int i = 1; i < argc; i++) {
		long long at;
		if (!strcmp(argv[i], "--at") && i + 1 < argc && parse_time(argv[i + 1], &at)) {
			snprintf(path, sizeof(path), "/v1/policies/plan?at=%lld", at);
			i++;
		} else {
			kvz_error("--at takes seconds since the epoch or \"YYYY-MM-DD HH:MM\" (UTC)");
			return 2;
		}
	}
	return get_and_print(path, print_plan);
}

static int policy_log(int argc, char **argv)
{
	char path[128] = "/v1/policies/log?limit=100";
	const char *state = NULL;
	uint64_t limit = 100;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--state") && i + 1 < argc && kvz_valid_name(argv[i + 1]))
			state = argv[++i];
		else if (!strcmp(argv[i], "--limit") && i + 1 < argc &&
			 kvz_parse_u64(argv[i + 1], 1, 10000, &limit))
			i++;
		else
			return policy_usage();
	}
	snprintf(path, sizeof(path), "/v1/policies/log?limit=%llu%s%s", (unsigned long long)limit,
		 state ? "&state=" : "", state ? state : "");
	return get_and_print(path, print_log);
}

static int policy_decide(const char *op, const char *id_s)
{
	uint64_t id;
	if (!kvz_parse_u64(id_s, 1, INT64_MAX, &id)) {
		kvz_error("bad log id \"%s\"", id_s);
		return 2;
	}
	char path[96];
	snprintf(path, sizeof(path), "/v1/policies/log/%llu/%s", (unsigned long long)id, op);
	json_t *out = NULL;
	if (http_call("POST", path, NULL, &out))
		return 1;
	if (cli_json)
		print_json(out);
	else
		printf("#%llu %s: %s\n", (unsigned long long)id,
		       json_string_value(json_object_get(out, "state")),
		       json_string_value(json_object_get(out, "result")));
	json_decref(out);
	return 0;
}

/* show, enable, disable, remove NAME */
static int policy_one(const char *op, const char *name)
{
	if (!name_ok(name))
		return 2;
	char path[128];
	const char *method = "GET";
	if (!strcmp(op, "remove")) {
		method = "DELETE";
		snprintf(path, sizeof(path), "/v1/policies/%s", name);
	} else if (!strcmp(op, "show")) {
		snprintf(path, sizeof(path), "/v1/policies/%s", name);
	} else {
		method = "POST";
		snprintf(path, sizeof(path), "/v1/policies/%s/%s", name, op);
	}
	json_t *out = NULL;
	if (http_call(method, path, NULL, &out))
		return 1;
	if (!strcmp(op, "show") || cli_json)
		print_json(out);
	else
		printf("policy %s %s\n", name, !strcmp(op, "remove") ? "removed" :
					      !strcmp(op, "enable") ? "enabled" : "disabled");
	json_decref(out);
	return 0;
}

int cmd_policy(int argc, char **argv)
{
	if (argc < 2)
		return policy_usage();
	const char *op = argv[1];
	if (!strcmp(op, "add") && argc == 3)
		return policy_add(argv[2]);
	if (!strcmp(op, "plan"))
		return policy_plan(argc - 1, argv + 1);
	if (!strcmp(op, "log"))
		return policy_log(argc - 1, argv + 1);
	if ((!strcmp(op, "approve") || !strcmp(op, "reject")) && argc == 3)
		return policy_decide(op, argv[2]);
	if (!strcmp(op, "list") && argc == 2)
		return get_and_print("/v1/policies", print_policies);
	if ((!strcmp(op, "show") || !strcmp(op, "enable") || !strcmp(op, "disable") ||
	     !strcmp(op, "remove")) && argc == 3)
		return policy_one(op, argv[2]);
	return policy_usage();
}
