#include "vm_disk_grow.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "block.h"
#include "disk_admission.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "parse.h"
#include "qcow2.h"
#include "vm_disks.h"

/* The disk's guest size now. Read without a lock: kvz-vmm holds the
 * image's exclusive lock while the VM runs, and a qcow2 header's size is
 * written (behind a barrier) before block_resize answers. */
static int disk_bytes(const char *path, bool qcow2, uint64_t *out, struct op_error *e)
{
	if (!qcow2) {
		struct stat st;
		if (stat(path, &st) < 0)
			return op_fail(e, 500, "disk %s: %s", path, strerror(errno));
		*out = (uint64_t)st.st_size;
		return 0;
	}
	struct qcow2 *q;
	char err[400];
	if (qcow2_open(path, -1, 0, &q, err, sizeof(err)) < 0)
		return op_fail(e, 500, "disk %s", err);
	*out = qcow2_size(q);
	qcow2_close(q);
	return 0;
}

/* A stopped VM: the same block layer kvz-vmm uses (its flock refuses an
 * image some other process still has open). */
static int grow_offline(const char *path, bool qcow2, uint64_t size, struct op_error *e)
{
	struct blk_open_opts o = {.path = path, .format = qcow2 ? "qcow2" : "raw"};
	struct blk_backend *b;
	char err[400];
	if (blk_open(&o, &b, err, sizeof(err)) < 0)
		return op_fail(e, 409, "%s", err);
	int r = blk_grow(b, size, err, sizeof(err));
	blk_close(b);
	if (r < 0)
		return op_fail(e, 409, "disk %s: %s", path, err);
	return 0;
}

static int grow_live(const char *name, const char *qmp, size_t idx, uint64_t size,
		     struct op_error *e)
{
	/* kvz-vmm names its --disk options vda, vdb, ... in order (the CD-ROM
	 * is on virtio-scsi); disk idx is the idx-th (vm_disks.h). */
	char dev[8];
	snprintf(dev, sizeof(dev), "vd%c", 'a' + (int)idx);
	json_t *args = json_pack("{s:s, s:I}", "device", dev, "size", (json_int_t)size);
	int r = guest_qmp_call(name, qmp, "block_resize", args, NULL, e);
	json_decref(args);
	return r;
}

static int check_size(json_t *v, uint64_t *size, struct op_error *e)
{
	if (!cfg_size(v, size) || *size == 0)
		return op_fail(e, 400, "bad disk size (a size such as 20G)");
	if (*size % BLK_SECTOR)
		return op_fail(e, 400, "bad disk size %llu: not a multiple of %u bytes",
			       (unsigned long long)*size, BLK_SECTOR);
	if (*size > BLK_MAX_SIZE)
		return op_fail(e, 400, "bad disk size %llu: above the limit of %llu bytes",
			       (unsigned long long)*size, BLK_MAX_SIZE);
	return 0;
}

int vm_disk_grow(struct kvzd *d, json_t *g, json_t *cfg, size_t idx, json_t *v, bool running,
		 char *detail, size_t len, struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	const char *path = NULL;
	uint64_t size = 0, now = 0, had;
	bool qcow2;
	char a[32], b[32];
	if (check_size(v, &size, e))
		return -1;
	if (!vm_disk_at(cfg, idx, &path, &had, &qcow2) || !path)
		return idx ? op_fail(e, 409, "%s has no disk %zu (it has %zu)", name, idx,
				     vm_disks_count(cfg))
			   : op_fail(e, 409, "%s has no disk to grow", name);
	if (disk_bytes(path, qcow2, &now, e))
		return -1;
	if (size < now)
		return op_fail(e, 409, "%s: a disk only grows: it is %s, %s would cut the guest's data",
			       name, kvz_format_size(now, a, sizeof(a)), kvz_format_size(size, b, sizeof(b)));
	if (disk_admit_at(d, name, &guest_vm_driver, path, size, e))
		return -1;
	if (size > now && (running ? grow_live(name, cfg_str(g, "qmp"), idx, size, e)
				   : grow_offline(path, qcow2, size, e)))
		return -1;
	vm_disk_set_size(cfg, idx, size);
	size_t l = strlen(detail);
	char which[24] = "";
	if (idx)
		snprintf(which, sizeof(which), " %zu", idx);
	snprintf(detail + l, len - l, "%sdisk%s %s%s", l ? ", " : "", which,
		 kvz_format_size(size, a, sizeof(a)), running ? " (live)" : "");
	return 0;
}
