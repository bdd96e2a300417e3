/* kvz-ct create: the private area CTROOT/NAME/{private.img,root} filled
 * from a cached template. */
#include "archiver.h"
#include "cmd_common.h"
#include "ct.h"
#include "disk.h"
#include "idmap.h"
#include "log.h"
#include "template.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int ct_remove_private(const char *dir)
{
	char path[PATH_MAX], err[256];
	if (ct_idmap_path(dir, path, sizeof(path), err, sizeof(err)) == 0)
		idmap_release(path);
	return rm_rf(dir);
}

static int unpack_into(const char *dir, void *arg, char *err, size_t len)
{
	return archiver_unpack(arg, dir, err, len);
}

/* A new id range for the container, recorded in CTROOT/NAME/idmap. */
static int alloc_idmap(const char *dir, char *err, size_t len)
{
	char path[PATH_MAX];
	struct idmap m;
	return ct_idmap_path(dir, path, sizeof(path), err, len) < 0
		       ? -1 : idmap_alloc_persistent(path, &m, err, len);
}

/* Makes CTROOT/NAME with its image and id range; on failure removes what it
 * made. */
int ct_make_private(const char *ct_root, const char *name, uint64_t size, const char *tarball,
		    char *err, size_t len)
{
	char dir[PATH_MAX], image[PATH_MAX], root[PATH_MAX];
	ct_dir(ct_root, name, NULL, dir, sizeof(dir));
	ct_dir(ct_root, name, "private.img", image, sizeof(image));
	ct_dir(ct_root, name, "root", root, sizeof(root));
	if (mkdir_p(ct_root, 0700, err, len) < 0)
		return -1;
	if (mkdir(dir, 0700) < 0) {
		snprintf(err, len, errno == EEXIST ? "container '%s' already exists (%s)"
						   : "cannot create %s", name, dir);
		return -1;
	}
	if (mkdir(root, 0755) < 0 || alloc_idmap(dir, err, len) < 0 ||
	    disk_image_create(image, size, err, len) < 0 ||
	    run_mounted(image, root, unpack_into, (void *)tarball, err, len) < 0) {
		if (errno == EEXIST || !err[0])
			snprintf(err, len, "cannot create %s: %s", root, strerror(errno));
		ct_remove_private(dir);
		return -1;
	}
	return 0;
}

int cmd_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"template", required_argument, NULL, 't'},
		{"disk", required_argument, NULL, 'd'},
		{"ct-root", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *tmpl = NULL, *ct_root = KVZ_CT_DEFAULT_ROOT;
	struct ct_limits l = {.disk = 1ull << 30};
	char err[1024] = "";
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 't')
			tmpl = optarg;
		else if (opt == 'c')
			ct_root = optarg;
		else if (opt == 'd') {
			if (!ct_limit_parse(&l, "disk", optarg, err, sizeof(err)))
				kvz_die("%s", err);
		} else
			kvz_die("usage: kvz-ct create --name N --template busybox|debian [--disk SIZE] [--ct-root DIR]");
	}
	require_name(name);
	if (!tmpl)
		kvz_die("--template is required (busybox or debian)");
	char dir[PATH_MAX];
	ct_dir(ct_root, name, NULL, dir, sizeof(dir));
	if (path_exists(dir))
		kvz_die("container '%s' already exists (%s)", name, dir);
	char tarball[PATH_MAX];
	const char *cache = getenv("KVZ_CT_CACHE") ? getenv("KVZ_CT_CACHE") : KVZ_CT_CACHE_DIR;
	if (template_ensure(tmpl, cache, tarball, sizeof(tarball), err, sizeof(err)) < 0)
		kvz_die("%s", err);
	if (ct_make_private(ct_root, name, l.disk, tarball, err, sizeof(err)) < 0)
		kvz_die("%s", err);
	return 0;
}
