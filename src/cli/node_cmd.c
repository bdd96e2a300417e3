/* kvz node add|list|show|remove: other hosts running kvzd (kvzd's
 * /v1/nodes). The token is read from a private file, never from the
 * command line, where other users could see it in ps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "token_file.h"

static int node_usage(void)
{
	kvz_error("usage: kvz node add NAME URL --token-file FILE | list | show NAME | remove NAME");
	return 2;
}

static int node_add(int argc, char **argv)
{
	const char *name = NULL, *url = NULL, *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--token-file") && i + 1 < argc)
			file = argv[++i];
		else if (!strncmp(argv[i], "--token-file=", 13))
			file = argv[i] + 13;
		else if (!name)
			name = argv[i];
		else if (!url)
			url = argv[i];
		else
			return node_usage();
	}
	if (!name || !url || !file)
		return node_usage();
	char *token = kvz_read_token_file(file);
	if (!token)
		return 1;
	json_t *body = json_pack("{s:s, s:s, s:s}", "name", name, "url", url, "token", token);
	memset(token, 0, strlen(token));
	free(token);
	json_t *out = NULL;
	int rc = http_call("POST", "/v1/nodes", body, &out);
	json_decref(body);
	if (rc)
		return 1;
	if (cli_json)
		print_json(out);
	else
		printf("node %s added (%s)\n", name, url);
	json_decref(out);
	return 0;
}

static void print_nodes(json_t *list)
{
	printf("%-16s %-28s %-9s %5s %6s %-15s %s\n", "NAME", "URL", "REACHABLE", "CPUS", "IDLE",
	       "MEM FREE/TOTAL", "CPU MODEL / ERROR");
	size_t i;
	json_t *n;
	json_array_foreach(list, i, n) {
		/* A cluster member: up while its lease lives, facts from its
		 * last load report (kvzd's /v1/nodes in cluster mode). */
		json_t *facts = json_object_get(n, "facts");
		bool member = json_is_true(json_object_get(n, "cluster"));
		bool up = member ? !strcmp(json_string_value(json_object_get(n, "state")) ?: "", "up")
				 : json_is_true(json_object_get(n, "reachable"));
		json_t *src = facts ? facts : n;
		char a[16], b[16], mem[40] = "-", cpus[16] = "-", idle[16] = "-";
		if (up) {
			snprintf(mem, sizeof(mem), "%s/%s",
				 fmt_size((uint64_t)json_integer_value(json_object_get(src, "mem_available")), a, sizeof(a)),
				 fmt_size((uint64_t)json_integer_value(json_object_get(src, "mem_total")), b, sizeof(b)));
			snprintf(cpus, sizeof(cpus), "%lld",
				 (long long)json_integer_value(json_object_get(src, "cpus")));
			if (json_object_get(n, "cpus_idle"))
				snprintf(idle, sizeof(idle), "%.1f",
					 json_number_value(json_object_get(n, "cpus_idle")));
		}
		const char *last = member ? (up ? "cluster member" : "cluster member, lease expired")
				   : json_string_value(json_object_get(n, up ? "cpu_model" : "error"));
		printf("%-16s %-28s %-9s %5s %6s %-15s %s\n",
		       json_string_value(json_object_get(n, "name")),
		       json_string_value(json_object_get(n, "url")), up ? "yes" : "no", cpus, idle,
		       mem, last ? last : "");
	}
}

int cmd_node(int argc, char **argv)
{
	if (argc < 2)
		return node_usage();
	const char *op = argv[1];
	if (!strcmp(op, "add"))
		return node_add(argc - 1, argv + 1);
	char path[128];
	json_t *out = NULL;
	if (!strcmp(op, "list") && argc == 2) {
		if (http_call("GET", "/v1/nodes", NULL, &out))
			return 1;
		if (cli_json)
			print_json(out);
		else
			print_nodes(out);
	} else if ((!strcmp(op, "show") || !strcmp(op, "remove")) && argc == 3) {
		if (!name_ok(argv[2]))
			return 2;
		snprintf(path, sizeof(path), "/v1/nodes/%s", argv[2]);
		bool show = !strcmp(op, "show");
		if (http_call(show ? "GET" : "DELETE", path, NULL, &out))
			return 1;
		if (show || cli_json)
			print_json(out);
		else
			printf("node %s removed\n", argv[2]);
	} else {
		return node_usage();
	}
	json_decref(out);
	return 0;
}
