/* kvz-ct: OpenVZ-style system containers. Dispatches the subcommands. */
#include "ct.h"

#include "log.h"
#include "sealed_exe.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	int (*fn)(int, char **);
} commands[] = {
	{"create", cmd_create}, {"run", cmd_run},         {"exec", cmd_exec},
	{"set", cmd_set},       {"stop", cmd_stop},       {"destroy", cmd_destroy},
	{"backup", cmd_backup}, {"restore", cmd_restore}, {"list", cmd_list},
	{"checkpoint", cmd_checkpoint}, {"page-server", cmd_page_server}, {"release", cmd_release},
	{"vm-image", cmd_vm_image},
};

/* restore --dir D is a checkpoint's, restore --input FILE a backup's. */
static bool restores_checkpoint(int argc, char **argv)
{
	for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--dir") || !strncmp(argv[i], "--dir=", 6))
			return true;
	return false;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: kvz-ct COMMAND [OPTIONS]\n"
		   "commands: create run exec set stop destroy backup restore list checkpoint vm-image\n"
		   "          page-server release (a migration's two ends, driven by kvzd)\n"
		   "see docs/architecture.md (kvz-ct) for the options of each\n");
}

int main(int argc, char **argv)
{
	kvz_log_init("kvz-ct");
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(stdout);
		return 0;
	}
	/* exec forks processes a container can see: they must not show the
	 * host's binary as their /proc/PID/exe (sealed_exe.h). */
	char err[256];
	if (!strcmp(argv[1], "exec") && sealed_exe_ensure(argv, err, sizeof(err)) < 0)
		kvz_die("%s", err);
	if (!strcmp(argv[1], "restore") && restores_checkpoint(argc, argv))
		return cmd_restore_checkpoint(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	kvz_error("unknown command '%s' (want create, run, exec, set, stop, destroy, backup, restore, list, checkpoint, vm-image, page-server or release)",
		  argv[1]);
	return 2;
}
