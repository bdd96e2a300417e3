/* kvz-ct destroy: removes a stopped container's private area. */
#include "cmd_common.h"
#include "ct.h"
#include "log.h"
#include "state.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>

int cmd_destroy(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"ct-root", required_argument, NULL, 'c'},
		{"run-dir", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *ct_root = KVZ_CT_DEFAULT_ROOT, *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 'c')
			ct_root = optarg;
		else if (opt == 'r')
			run_dir = optarg;
		else
			kvz_die("usage: kvz-ct destroy --name N [--ct-root DIR] [--run-dir DIR]");
	}
	require_name(name);
	char err[512], dir[PATH_MAX];
	json_t *st = state_load(run_dir, name, err, sizeof(err));
	if (st) {
		json_decref(st);
		kvz_die("container '%s' is running: stop it first", name);
	}
	ct_dir(ct_root, name, NULL, dir, sizeof(dir));
	if (!path_exists(dir))
		kvz_die("no container '%s' under %s", name, ct_root);
	if (ct_remove_private(dir) < 0)
		kvz_die("cannot remove %s: %m", dir);
	return 0;
}
