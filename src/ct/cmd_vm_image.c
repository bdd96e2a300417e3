/* kvz-ct vm-image: a bootable VM disk from a container template (vm_image.h).
 * kvzd runs it as a job; progress goes to stdout as lines
 * "progress PHASE DONE TOTAL", the one error line to stderr. */
#include "ct.h"
#include "template.h"
#include "vm_image.h"

#include "log.h"
#include "parse.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

static void print_progress(const char *phase, uint64_t done, uint64_t total)
{
	printf("progress %s %llu %llu\n", phase, (unsigned long long)done,
	       (unsigned long long)total);
	fflush(stdout);
}

int cmd_vm_image(int argc, char **argv)
{
	static const struct option opts[] = {
		{"template", required_argument, NULL, 't'}, {"out", required_argument, NULL, 'o'},
		{"size", required_argument, NULL, 's'},     {"hostname", required_argument, NULL, 'h'},
		{"ip", required_argument, NULL, 'i'},       {"gw", required_argument, NULL, 'g'},
		{"ssh-key", required_argument, NULL, 'k'},
		{"root-password-file", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	struct vm_image_opts o = {.template = "debian"};
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't': o.template = optarg; break;
		case 'o': o.out = optarg; break;
		case 's':
			if (!kvz_parse_size(optarg, &o.size))
				kvz_die("--size: bad size \"%s\"", optarg);
			break;
		case 'h': o.hostname = optarg; break;
		case 'i': o.ip = optarg; break;
		case 'g': o.gw = optarg; break;
		case 'k': o.ssh_key = optarg; break;
		case 'p': o.password = optarg; break;
		default:
			kvz_die("usage: kvz-ct vm-image --out IMG --size SIZE --hostname H "
				"[--template debian] [--ip A/P [--gw G]] [--ssh-key FILE] "
				"[--root-password-file FILE]");
		}
	}
	if (!o.out || !o.size || !o.hostname)
		kvz_die("--out, --size and --hostname are required");
	if (o.gw && !o.ip)
		kvz_die("--gw needs --ip");
	o.cache_dir = getenv("KVZ_CT_CACHE") ? getenv("KVZ_CT_CACHE") : KVZ_CT_CACHE_DIR;
	char err[1024] = "";
	if (vm_image_make(&o, print_progress, err, sizeof(err)) < 0)
		kvz_die("%s", err);
	return 0;
}
