/* Disks made for live migrations without shared storage
 * (migration_storage.h). */
#include "migration_storage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_admission.h"
#include "guest_config.h"
#include "log.h"
#include "qcow2.h"
#include "storage.h"

static bool is_qcow2(json_t *cfg)
{
	const char *fmt = cfg_str(cfg, "disk_format");
	return fmt && !strcmp(fmt, "qcow2");
}

int mig_storage_size(json_t *cfg, uint64_t *size, struct op_error *e)
{
	json_t *s = json_object_get(cfg, "disk_size");
	if (json_is_integer(s) && json_integer_value(s) > 0) {
		*size = (uint64_t)json_integer_value(s);
		return 0;
	}
	const char *path = cfg_str(cfg, "disk_path");
	char err[300];
	if (!path)
		return op_fail(e, 400, "the guest has no disk");
	if (is_qcow2(cfg)) {
		struct qcow2 *q;
		if (qcow2_open(path, -1, O_RDONLY, &q, err, sizeof(err)) < 0)
			return op_fail(e, 409, "disk %s: %s", path, err);
		*size = qcow2_size(q);
		qcow2_close(q);
		return 0;
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return op_fail(e, 409, "disk %s: %s", path, strerror(errno));
	*size = (uint64_t)st.st_size;
	return 0;
}

static int make_file(const char *path, uint64_t size, bool qcow2, struct op_error *e)
{
	char err[400];
	if (qcow2) {
		struct qcow2_create_opts o = {size, 0, NULL, NULL};
		if (qcow2_create(path, &o, err, sizeof(err)) < 0) {
			unlink(path);
			return op_fail(e, 500, "cannot create the disk for the copy: %s", err);
		}
		return 0;
	}
	if (storage_create_image(path, size, false, err, sizeof(err)))
		return op_fail(e, 500, "%s", err);
	return 0;
}

int mig_storage_create(struct kvzd *d, const char *name, const struct guest_driver *drv,
		       json_t *cfg, const char *where, struct op_error *e)
{
	char path[PATH_MAX];   /* where may be cfg's own string, replaced below */
	snprintf(path, sizeof(path), "%s", where);
	uint64_t size = (uint64_t)json_integer_value(json_object_get(cfg, "disk_size"));
	if (!size)
		return op_fail(e, 400, "a disk to copy needs its disk_size");
	/* The record comes later: admitted under disk_lock and made at once,
	 * so that a concurrent create sees the file's promise. */
	pthread_mutex_lock(&d->disk_lock);
	int rc = disk_admit(d, name, drv, size, e);
	if (rc == 0)
		rc = make_file(path, size, is_qcow2(cfg), e);
	pthread_mutex_unlock(&d->disk_lock);
	if (rc)
		return -1;
	json_object_set_new(cfg, "disk_path", json_string(path));
	json_object_set_new(cfg, "incoming_disk", json_string(path));
	json_object_del(cfg, "disk_base");
	return 0;
}

void mig_storage_remove(json_t *cfg)
{
	const char *p = cfg_str(cfg, "incoming_disk");
	if (p && unlink(p) < 0 && errno != ENOENT)
		kvz_warn("cannot remove %s: %s", p, strerror(errno));
}
