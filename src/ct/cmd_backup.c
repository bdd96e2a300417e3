/* kvz-ct backup / restore: a container's private area as one tar.zst whose
 * first entry (kvz-backup.json) records the disk size to restore to. */
#include "archiver.h"
#include "cmd_common.h"
#include "ct.h"
#include "disk.h"
#include "log.h"
#include "state.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pack_args {
	const char *out;
	const char *meta;
};

static int pack_into(const char *dir, void *arg, char *err, size_t len)
{
	const struct pack_args *a = arg;
	return archiver_pack_dir(dir, a->out, a->meta, err, len);
}

static void parse(int argc, char **argv, const char *what, const char **name,
		  const char **file, const char **ct_root, const char **run_dir)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},   {"output", required_argument, NULL, 'o'},
		{"input", required_argument, NULL, 'i'},  {"ct-root", required_argument, NULL, 'c'},
		{"run-dir", required_argument, NULL, 'r'}, {NULL, 0, NULL, 0},
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'n')
			*name = optarg;
		else if ((opt == 'o' && !strcmp(what, "backup")) || (opt == 'i' && !strcmp(what, "restore")))
			*file = optarg;
		else if (opt == 'c')
			*ct_root = optarg;
		else if (opt == 'r')
			*run_dir = optarg;
		else
			kvz_die("usage: kvz-ct %s --name N %s FILE [--ct-root DIR]", what,
				!strcmp(what, "backup") ? "--output" : "--input");
	}
	require_name(*name);
	if (!*file)
		kvz_die("%s is required", !strcmp(what, "backup") ? "--output" : "--input");
}

int cmd_backup(int argc, char **argv)
{
	const char *name = NULL, *out = NULL, *ct_root = KVZ_CT_DEFAULT_ROOT,
		   *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	parse(argc, argv, "backup", &name, &out, &ct_root, &run_dir);
	char image[PATH_MAX], root[PATH_MAX], err[1024] = "";
	ct_dir(ct_root, name, "private.img", image, sizeof(image));
	ct_dir(ct_root, name, "root", root, sizeof(root));
	uint64_t size;
	if (disk_image_size(image, &size) < 0)
		kvz_die("container '%s' has no private area %s", name, image);
	char meta[256];
	snprintf(meta, sizeof(meta), "{\"name\": \"%s\", \"disk-size\": %llu, \"format\": 1}\n",
		 name, (unsigned long long)size);
	struct pack_args a = {.out = out, .meta = meta};
	json_t *st = state_load(run_dir, name, err, sizeof(err));
	int rc;
	if (st) {
		/* Mounting the image a second time would give btrfs the same
		 * filesystem twice: read it through the supervisor's mount. */
		char live[PATH_MAX + 32];
		snprintf(live, sizeof(live), "/proc/%d/root%s",
			 (int)json_integer_value(json_object_get(st, "supervisor-pid")), root);
		json_decref(st);
		rc = pack_into(live, &a, err, sizeof(err));
	} else {
		rc = run_mounted(image, root, pack_into, &a, err, sizeof(err));
	}
	if (rc < 0)
		kvz_die("backup of '%s' failed: %s", name, err);
	return 0;
}

int cmd_restore(int argc, char **argv)
{
	const char *name = NULL, *in = NULL, *ct_root = KVZ_CT_DEFAULT_ROOT,
		   *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	parse(argc, argv, "restore", &name, &in, &ct_root, &run_dir);
	char err[1024] = "";
	char *meta = archiver_read_meta(in, err, sizeof(err));
	if (!meta)
		kvz_die("%s", err);
	json_t *m = json_loads(meta, 0, NULL);
	free(meta);
	json_int_t size = json_integer_value(json_object_get(m, "disk-size"));
	json_decref(m);
	if (size < (128 << 20))
		kvz_die("%s: bad disk-size in its kvz-backup.json", in);
	if (ct_make_private(ct_root, name, (uint64_t)size, in, err, sizeof(err)) < 0)
		kvz_die("restore of '%s' failed: %s", name, err);
	return 0;
}
