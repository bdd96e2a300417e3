/* kvz-image: create, inspect, check, convert and resize disk images (raw
 * and qcow2) with the same qcow2 code kvz-vmm runs. Needs no kvzd; `kvz
 * image ...` runs this program. */
#include <stdio.h>
#include <string.h>

#include "image_cmds.h"
#include "log.h"

bool image_json;

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{"create", cmd_create, "create [-f raw|qcow2] [-b BASE [-F raw|qcow2]] [--cluster-size N] [--preallocate] PATH [SIZE]"},
	{"info", cmd_info, "info PATH"},
	{"check", cmd_check, "check PATH          exit 0 clean, 2 corrupt, 3 leaked clusters only"},
	{"convert", cmd_convert, "convert -O raw|qcow2 [-c] [--cluster-size N] SRC DST"},
	{"resize", cmd_resize, "resize -f raw|qcow2 PATH [+]SIZE"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kvz-image [--json] COMMAND [ARGS]\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %s\n", commands[i].help);
}

int main(int argc, char **argv)
{
	kvz_log_init("kvz-image");
	int out = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			image_json = true;
		else
			argv[out++] = argv[i];
	}
	argc = out;
	argv[argc] = NULL;
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 1 : 0;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	kvz_error("unknown command %s (kvz-image --help)", argv[1]);
	return 1;
}
