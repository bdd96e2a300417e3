#include "disk_admission.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "guest_config.h"
#include "parse.h"
#include "storage.h"
#include "store.h"

static void disk_dir(const struct kvzd *d, bool vm, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", d->state_dir, vm ? "images" : "ct");
}

static void disk_file(const struct kvzd *d, const char *name, bool vm, char *buf, size_t len)
{
	if (vm)
		guest_image_path(d, name, buf, len);
	else
		snprintf(buf, len, "%s/ct/%s/private.img", d->state_dir, name);
}

/* What a disk of size bytes may still take from its filesystem. */
static uint64_t unallocated(const struct kvzd *d, const char *name, bool vm, uint64_t size)
{
	char path[600];
	uint64_t used, apparent;
	disk_file(d, name, vm, path, sizeof(path));
	storage_usage(path, &used, &apparent);
	return size > used ? size - used : 0;
}

/* The still unallocated bytes of every other guest disk on filesystem dev. */
static uint64_t promised_elsewhere(struct kvzd *d, const char *name, dev_t dev,
				   const dev_t type_dev[2])
{
	json_t *list = store_guest_list(d->store);
	uint64_t sum = 0;
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *other = cfg_str(g, "name");
		bool vm = !strcmp(cfg_str(g, "type"), "vm");
		if (!strcmp(other, name) || type_dev[vm] != dev)
			continue;
		json_t *size = json_object_get(json_object_get(g, "config"), "disk_size");
		sum += unallocated(d, other, vm, (uint64_t)json_integer_value(size));
	}
	json_decref(list);
	return sum;
}

int disk_admit(struct kvzd *d, const char *name, bool vm, uint64_t size, struct op_error *e)
{
	char dirs[2][300];
	struct stat st[2];
	for (int t = 0; t < 2; t++) {
		disk_dir(d, t, dirs[t], sizeof(dirs[t]));
		if (stat(dirs[t], &st[t]) < 0)
			return op_fail(e, 500, "cannot stat %s", dirs[t]);
	}
	const dev_t type_dev[2] = {st[0].st_dev, st[1].st_dev};
	uint64_t free_bytes = storage_free_bytes(dirs[vm]);
	uint64_t mine = unallocated(d, name, vm, size);
	uint64_t others = promised_elsewhere(d, name, type_dev[vm], type_dev);
	if ((double)mine + (double)others <= (double)free_bytes * d->disk_overcommit)
		return 0;
	char a[32], b[32], c[32];
	return op_fail(e, 409, "not enough space in %s for a disk of %s: %s free, other guests' "
		       "disks there may still grow by %s (overcommit ratio %g; kvzd --disk-overcommit)",
		       dirs[vm], kvz_format_size(size, a, sizeof(a)),
		       kvz_format_size(free_bytes, b, sizeof(b)),
		       kvz_format_size(others, c, sizeof(c)), d->disk_overcommit);
}
