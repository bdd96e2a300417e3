/* kvz events: what happened to guests; --follow keeps polling for more.
 * --all: every cluster member's events, with the node of each; --guest
 * asks for the cluster's view too, so that a guest's history follows it
 * from node to node (on a single host both are the host's own events). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "parse.h"

static int64_t print_events(json_t *list, bool nodes)
{
	int64_t last = 0;
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e) {
		last = json_integer_value(json_object_get(e, "id"));
		if (cli_json) {
			json_dumpf(e, stdout, JSON_COMPACT);
			putchar('\n');
			continue;
		}
		char t[32];
		const char *detail = json_string_value(json_object_get(e, "detail"));
		if (nodes)
			printf("%-12s ", json_string_value(json_object_get(e, "node")) ?: "-");
		printf("%-19s %-16s %-12s %s\n",
		       fmt_time(json_integer_value(json_object_get(e, "ts_ms")), t, sizeof(t)),
		       json_string_value(json_object_get(e, "guest")),
		       json_string_value(json_object_get(e, "type")), detail ? detail : "");
	}
	fflush(stdout);
	return last;
}

int cmd_events(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"guest", required_argument, NULL, 'g'}, {"follow", no_argument, NULL, 'f'},
		{"limit", required_argument, NULL, 'n'}, {"all", no_argument, NULL, 'a'},
		{NULL, 0, NULL, 0},
	};
	const char *guest = NULL;
	bool follow = false, all = false;
	uint64_t limit = 100;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'g' && name_ok(optarg))
			guest = optarg;
		else if (c == 'f')
			follow = true;
		else if (c == 'a')
			all = true;
		else if (c == 'n' && kvz_parse_u64(optarg, 1, 10000, &limit))
			continue;
		else {
			kvz_error("usage: kvz events [--all] [--guest NAME] [--follow] [--limit N]");
			return 2;
		}
	}
	if (optind != argc) {
		kvz_error("usage: kvz events [--all] [--guest NAME] [--follow] [--limit N]");
		return 2;
	}
	int64_t since = 0;
	if (!cli_json && all)
		printf("%-12s ", "NODE");
	if (!cli_json)
		printf("%-19s %-16s %-12s %s\n", "TIME (UTC)", "GUEST", "EVENT", "DETAIL");
	for (bool first = true; first || follow; first = false) {
		if (!first)
			sleep(1);
		char path[200];
		snprintf(path, sizeof(path), "/v1/events?since=%lld&limit=%llu%s%s%s",
			 (long long)since, (unsigned long long)limit, all || guest ? "&all=1" : "",
			 guest ? "&guest=" : "", guest ? guest : "");
		json_t *list = NULL;
		if (http_call("GET", path, NULL, &list))
			return 1;
		/* --json without --follow: one JSON array, like every other command. */
		if (cli_json && !follow) {
			print_json(list);
			json_decref(list);
			return 0;
		}
		int64_t last = print_events(list, all);
		if (last)
			since = last;
		json_decref(list);
	}
	return 0;
}
