/* kvz-ct list: the containers with a live supervisor in the run dir. */
#include "ct.h"
#include "log.h"
#include "state.h"

#include <dirent.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *collect(const char *run_dir)
{
	json_t *all = json_array();
	DIR *d = opendir(run_dir);
	if (!d)
		return all; /* no run dir yet: nothing runs */
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n <= 5 || strcmp(e->d_name + n - 5, ".json") != 0)
			continue;
		char name[256], err[512];
		snprintf(name, sizeof(name), "%.*s", (int)(n - 5), e->d_name);
		json_t *st = state_load(run_dir, name, err, sizeof(err));
		if (st)
			json_array_append_new(all, st);
	}
	closedir(d);
	return all;
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"run-dir", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	bool as_json = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'j')
			as_json = true;
		else if (opt == 'r')
			run_dir = optarg;
		else
			kvz_die("usage: kvz-ct list [--json] [--run-dir DIR]");
	}
	json_t *all = collect(run_dir);
	if (as_json) {
		char *s = json_dumps(all, JSON_COMPACT);
		printf("%s\n", s);
		free(s);
	} else {
		printf("%-24s %-10s %s\n", "NAME", "INIT-PID", "QMP");
		size_t i;
		json_t *st;
		json_array_foreach(all, i, st)
			printf("%-24s %-10d %s\n", json_string_value(json_object_get(st, "name")),
			       (int)json_integer_value(json_object_get(st, "init-pid")),
			       json_string_value(json_object_get(st, "qmp")));
	}
	json_decref(all);
	return 0;
}
