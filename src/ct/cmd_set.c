/* kvz-ct set: changes limits of a running container through its
 * supervisor's QMP `set` (the supervisor owns the cgroup and the disk). */
#include "cmd_common.h"
#include "ct.h"
#include "ct_limits.h"
#include "log.h"
#include "qmp_client.h"
#include "state.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

int cmd_set(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},   {"run-dir", required_argument, NULL, 'r'},
		{"memory", required_argument, NULL, 'l'}, {"swap", required_argument, NULL, 'l'},
		{"cpus", required_argument, NULL, 'l'},   {"cpu-weight", required_argument, NULL, 'l'},
		{"cpuset", required_argument, NULL, 'l'}, {"pids", required_argument, NULL, 'l'},
		{"io-weight", required_argument, NULL, 'l'}, {"disk", required_argument, NULL, 'l'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	struct ct_limits check = {0};
	json_t *args = json_object();
	char err[512];
	int opt, idx;
	while ((opt = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 'r')
			run_dir = optarg;
		else if (opt == 'l') {
			if (!ct_limit_parse(&check, opts[idx].name, optarg, err, sizeof(err)))
				kvz_die("%s", err);
			json_object_set_new(args, opts[idx].name, json_string(optarg));
		} else
			kvz_die("usage: kvz-ct set --name N [--memory S:H] [--swap S] [--cpus F] "
				"[--cpu-weight W] [--cpuset LIST] [--pids N] [--io-weight W] [--disk SIZE]");
	}
	require_name(name);
	if (optind < argc)
		kvz_die("unexpected argument '%s'", argv[optind]);
	if (json_object_size(args) == 0)
		kvz_die("nothing to set: give at least one of --memory --swap --cpus --cpu-weight --cpuset --pids --io-weight --disk");
	json_t *st = state_load(run_dir, name, err, sizeof(err));
	if (!st)
		kvz_die("%s", err);
	struct qmp_client *c = qmp_client_connect(json_string_value(json_object_get(st, "qmp")), 30000,
						  err, sizeof(err));
	json_decref(st);
	if (!c)
		kvz_die("cannot reach the supervisor of '%s': %s", name, err);
	int rc = qmp_client_execute(c, "set", args, NULL, NULL, 0, err, sizeof(err));
	qmp_client_close(c);
	json_decref(args);
	if (rc != 0)
		kvz_die("%s", err);
	return 0;
}
