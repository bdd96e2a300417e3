#include "disk_admission.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "guest_config.h"
#include "guest_driver.h"
#include "parse.h"
#include "storage.h"
#include "store.h"

static void disk_dir(const struct kvzd *d, const struct guest_driver *drv, char *buf,
		     size_t len)
{
	snprintf(buf, len, "%s/%s", d->state_dir, drv->disk_dir);
}

/* What the disk at path, of size bytes, may still take from its
 * filesystem. */
static uint64_t unallocated(const char *path, uint64_t size)
{
	uint64_t used, apparent;
	storage_usage(path, &used, &apparent);
	return size > used ? size - used : 0;
}

/* The still unallocated bytes of every guest disk on filesystem dev but
 * the one being admitted (guest name's at path): disk 0 at the driver's
 * file, a VM's disks 1.. at theirs (vm_disks.h). */
static uint64_t promised_elsewhere(struct kvzd *d, const char *name, const char *path,
				   dev_t dev, const dev_t kind_dev[GUEST_KIND_COUNT])
{
	json_t *list = store_guest_list(d->store);
	uint64_t sum = 0;
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *other = cfg_str(g, "name");
		const struct guest_driver *drv = guest_driver_of(g);
		bool same = !strcmp(other, name);
		if (kind_dev[drv->kind] != dev)
			continue;
		json_t *cfg = json_object_get(g, "config");
		char p0[600];
		drv->disk_file(d, other, p0, sizeof(p0));
		if (!same || strcmp(p0, path))
			sum += unallocated(p0, (uint64_t)json_integer_value(json_object_get(cfg, "disk_size")));
		json_t *disks = json_object_get(cfg, "disks");
		for (size_t k = 1; drv->kind == GUEST_VM && k < json_array_size(disks); k++) {
			json_t *o = json_array_get(disks, k);
			const char *p = cfg_str(o, "path");
			if (p && (!same || strcmp(p, path)))
				sum += unallocated(p, (uint64_t)json_integer_value(json_object_get(o, "size")));
		}
	}
	json_decref(list);
	return sum;
}

int disk_admit(struct kvzd *d, const char *name, const struct guest_driver *drv,
	       uint64_t size, struct op_error *e)
{
	char path[600];
	drv->disk_file(d, name, path, sizeof(path));
	return disk_admit_at(d, name, drv, path, size, e);
}

int disk_admit_at(struct kvzd *d, const char *name, const struct guest_driver *drv,
		  const char *path, uint64_t size, struct op_error *e)
{
	char dirs[GUEST_KIND_COUNT][300];
	dev_t kind_dev[GUEST_KIND_COUNT];
	for (int k = 0; k < GUEST_KIND_COUNT; k++) {
		struct stat st;
		disk_dir(d, guest_driver_by_kind((enum guest_kind)k), dirs[k], sizeof(dirs[k]));
		if (stat(dirs[k], &st) < 0)
			return op_fail(e, 500, "cannot stat %s", dirs[k]);
		kind_dev[k] = st.st_dev;
	}
	const char *dir = dirs[drv->kind];
	uint64_t free_bytes = storage_free_bytes(dir);
	uint64_t mine = unallocated(path, size);
	uint64_t others = promised_elsewhere(d, name, path, kind_dev[drv->kind], kind_dev);
	if ((double)mine + (double)others <= (double)free_bytes * d->disk_overcommit)
		return 0;
	char a[32], b[32], c[32];
	return op_fail(e, 409, "not enough space in %s for a disk of %s: %s free, other guests' "
		       "disks there may still grow by %s (overcommit ratio %g; kvzd --disk-overcommit)",
		       dir, kvz_format_size(size, a, sizeof(a)),
		       kvz_format_size(free_bytes, b, sizeof(b)),
		       kvz_format_size(others, c, sizeof(c)), d->disk_overcommit);
}
