/* libFuzzer target: a VM's disks as API clients send them
 * (src/daemon/vm_disk_spec.c): the input as JSON is tried as one disk
 * ("add_disk", an entry of "disks"). A spec that is accepted must come
 * out as {size, format, mode[, base]} with a size kvz-vmm takes (or a
 * base to take it from), a known format and mode, a qcow2 under any base,
 * and a base beneath the image directory; a refusal must say why on one
 * line. A "path" is tried as a migration peer's disk file name for guest
 * "evil" (vm_disk_extra_name_valid): accepted, it stays in the image dir. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "block.h"
#include "image_dirs.h"
#include "vm_disk_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One image directory with one base image, made once per process. */
static char dir[] = "/tmp/kvz-fuzz-disk-XXXXXX";
static struct image_dirs *dirs;

static char base[64];

static void remove_dir(void)
{
	image_dirs_free(dirs);
	unlink(base);
	rmdir(dir);
}

static struct image_dirs *image_dir(void)
{
	if (dirs)
		return dirs;
	char err[200];
	if (!mkdtemp(dir))
		abort();
	snprintf(base, sizeof(base), "%s/base.raw", dir);
	FILE *f = fopen(base, "w");
	if (!f || fclose(f))
		abort();
	const char *const list[] = {dir};
	dirs = image_dirs_open(list, 1, dir, err, sizeof(err));
	if (!dirs)
		abort();
	atexit(remove_dir);
	return dirs;
}

static void check_accepted(json_t *o)
{
	const char *fmt = json_string_value(json_object_get(o, "format"));
	const char *mode = json_string_value(json_object_get(o, "mode"));
	const char *base = json_string_value(json_object_get(o, "base"));
	json_int_t sz = json_integer_value(json_object_get(o, "size"));
	if (!fmt || !mode || (strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) ||
	    (strcmp(mode, "sparse") && strcmp(mode, "fixed")))
		abort();
	if ((sz == 0 && !base) || (sz && (sz < (1 << 20) || sz % 512 || (uint64_t)sz > BLK_MAX_SIZE)))
		abort();
	if (base && (strcmp(fmt, "qcow2") || strncmp(base, dir, strlen(dir))))
		abort();
	if (!strcmp(fmt, "qcow2") && !strcmp(mode, "fixed"))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (!j)
		return 0;
	struct image_dirs *d = image_dir();
	struct op_error e = {0};
	json_t *out = NULL;
	/* A migration peer's disk: only a file name NAME@N.img is taken from
	 * its path, never one that leaves the image dir. */
	const char *path = json_string_value(json_object_get(j, "path"));
	if (path && vm_disk_extra_name_valid(path, "evil") &&
	    (strchr(path, '/') || strncmp(path, "evil@", 5) || strstr(path, "..") ||
	     strlen(path) > strlen("evil@999.img")))
		abort();
	if (vm_disk_parse(d, "disks[1]", j, &out, &e) == 0)
		check_accepted(out);
	else if (e.status != 400 || !e.msg[0] || strchr(e.msg, '\n') || out)
		abort();
	json_decref(out);
	json_decref(j);
	return 0;
}
