/* kvz cluster init|join|leave|status (kvzd's /v1/cluster). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "http.h"
#include "log.h"
#include "token_file.h"

static int cluster_usage(void)
{
	kvz_error("usage: kvz cluster init --etcd URL[,URL...] | "
		  "join --etcd URL[,URL...] --secret-file FILE | leave | status");
	return 2;
}

/* {"etcd", "secret"} for join: the secret read from a private file (as
 * the token file is read), never from the command line, where ps shows it. */
static json_t *join_body(const char *etcd, const char *secret_file)
{
	char *secret = kvz_read_token_file(secret_file);
	if (!secret)
		return NULL;
	json_t *b = json_pack("{s:s, s:s}", "etcd", etcd, "secret", secret);
	free(secret);
	return b;
}

static void print_status(json_t *s)
{
	if (!json_is_true(json_object_get(s, "member"))) {
		printf("not a cluster member\n");
		return;
	}
	const char *mgr = json_string_value(json_object_get(s, "ha_manager"));
	json_t *ago = json_object_get(s, "lease_ok_ms_ago");
	printf("node %s, HA manager %s, lease ", json_string_value(json_object_get(s, "node")) ?: "?",
	       mgr ? mgr : "(none)");
	if (json_is_integer(ago))
		printf("renewed %lld ms ago\n", (long long)json_integer_value(ago));
	else
		printf("not yet granted\n");
	printf("%-16s %-28s %-5s %6s %s\n", "MEMBER", "URL", "STATE", "GUESTS", "LOAD");
	size_t i;
	json_t *m;
	json_array_foreach(json_object_get(s, "members"), i, m) {
		json_t *f = json_object_get(m, "facts");
		printf("%-16s %-28s %-5s %6lld %.2f\n", json_string_value(json_object_get(m, "name")) ?: "?",
		       json_string_value(json_object_get(m, "url")) ?: "-",
		       json_string_value(json_object_get(m, "state")) ?: "?",
		       (long long)json_integer_value(json_object_get(f, "guests")),
		       json_number_value(json_object_get(f, "load")));
	}
	printf("%-28s %-8s %-6s %s\n", "ETCD", "HEALTHY", "LEADER", "VERSION / ERROR");
	json_array_foreach(json_object_get(s, "etcd"), i, m) {
		bool ok = json_is_true(json_object_get(m, "healthy"));
		printf("%-28s %-8s %-6s %s\n", json_string_value(json_object_get(m, "endpoint")) ?: "?",
		       ok ? "yes" : "no", json_is_true(json_object_get(m, "is_leader")) ? "yes" : "",
		       json_string_value(json_object_get(m, ok ? "version" : "error")) ?: "");
	}
}

int cmd_cluster(int argc, char **argv)
{
	if (argc < 2)
		return cluster_usage();
	const char *op = argv[1];
	json_t *out = NULL, *body = NULL;
	char path[64];
	if (!strcmp(op, "init") && argc == 4 && !strcmp(argv[2], "--etcd")) {
		body = json_pack("{s:s}", "etcd", argv[3]);
		snprintf(path, sizeof(path), "/v1/cluster/init");
	} else if (!strcmp(op, "join") && argc == 6 && !strcmp(argv[2], "--etcd") &&
		   !strcmp(argv[4], "--secret-file")) {
		if (!(body = join_body(argv[3], argv[5])))
			return 1;
		snprintf(path, sizeof(path), "/v1/cluster/join");
	} else if (!strcmp(op, "leave") && argc == 2) {
		snprintf(path, sizeof(path), "/v1/cluster/leave");
	} else if (!strcmp(op, "status") && argc == 2) {
		snprintf(path, sizeof(path), "/v1/cluster");
	} else {
		return cluster_usage();
	}
	int rc = http_call(body || !strcmp(op, "leave") ? "POST" : "GET", path, body, &out);
	json_decref(body);
	if (rc)
		return 1;
	if (cli_json) {
		print_json(out);
	} else {
		print_status(out);
		if (!strcmp(op, "init"))
			printf("cluster secret for join --secret-file: STATE/cluster.key on this node\n");
	}
	json_decref(out);
	return 0;
}
