/* kvz-ct stop: asks the supervisor to stop the container (init's shutdown
 * signal, the timeout, then SIGKILL) and waits until it has cleaned up. */
#include "cmd_common.h"
#include "ct.h"
#include "log.h"
#include "parse.h"
#include "qmp_client.h"
#include "state.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int cmd_stop(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"run-dir", required_argument, NULL, 'r'},
		{"timeout", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	uint64_t timeout = 10;
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 'r')
			run_dir = optarg;
		else if (opt == 't') {
			if (!kvz_parse_u64(optarg, 0, 3600, &timeout))
				kvz_die("invalid --timeout '%s': want seconds 0..3600", optarg);
		} else
			kvz_die("usage: kvz-ct stop --name N [--timeout SEC] [--run-dir DIR]");
	}
	require_name(name);
	char err[512];
	json_t *st = state_load(run_dir, name, err, sizeof(err));
	if (!st)
		kvz_die("%s", err);
	pid_t sup = (pid_t)json_integer_value(json_object_get(st, "supervisor-pid"));
	struct qmp_client *c = qmp_client_connect(json_string_value(json_object_get(st, "qmp")), 10000,
						  err, sizeof(err));
	json_decref(st);
	if (!c)
		kvz_die("cannot reach the supervisor of '%s': %s", name, err);
	json_t *args = json_pack("{s:I}", "timeout", (json_int_t)timeout);
	int rc = qmp_client_execute(c, "stop", args, NULL, NULL, 0, err, sizeof(err));
	json_decref(args);
	qmp_client_close(c);
	if (rc != 0)
		kvz_die("cannot stop '%s': %s", name, err);
	/* The supervisor exits after its clean-up: wait for that, with margin
	 * past the kill. */
	time_t deadline = time(NULL) + (time_t)timeout + 15;
	while (pid_alive(sup)) {
		if (time(NULL) > deadline)
			kvz_die("container '%s' did not stop within %d s", name, (int)timeout + 15);
		usleep(10000);
	}
	return 0;
}
