/* The CD-ROM's medium over QMP (qmp_media.h). The new medium is an open
 * descriptor passed with getfd ("filename": "fd:NAME"): the seccomp filter
 * forbids kvz-vmm to open files; without the filter a path is opened. */
#include "qmp_media.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qmp_control.h"
#include "virtio/virtio_devices.h"
#include "virtio/virtio_scsi.h"

/* The CD-ROM that "device" or "id" names; NULL with QEMU's error. */
static struct virtio_scsi *named_cdrom(struct vmm_control *ctl, const char *cmd, json_t *args,
				       struct qmp_error *err)
{
	const char *dev = json_string_value(json_object_get(args, "device"));
	const char *id = json_string_value(json_object_get(args, "id"));
	const char *name = id ? id : dev;
	if (!name || (dev && id && strcmp(dev, id))) {
		qmp_set_error(err, "GenericError", "%s needs one string 'device' or 'id' (the CD-ROM: %s)",
			      cmd, QMP_CDROM_NAME);
		return NULL;
	}
	struct virtio_scsi *s = ctl->vd ? virtio_devices_cdrom(ctl->vd) : NULL;
	if (s && !strcmp(name, QMP_CDROM_NAME))
		return s;
	if (ctl->vd && virtio_devices_has_disk(ctl->vd, name))
		qmp_set_error(err, "GenericError", "Device '%.64s' is not removable", name);
	else
		qmp_set_error(err, "DeviceNotFound", "Device '%.64s' not found", name);
	return NULL;
}

static bool machine_busy(struct vmm_control *ctl, struct qmp_error *err)
{
	if (vm_run_state(ctl->vm) == VM_SHUTDOWN) {
		qmp_set_error(err, "GenericError", "the machine is shutting down");
		return true;
	}
	if (migration_active(&ctl->mig)) {
		qmp_set_error(err, "GenericError", "a migration is in progress");
		return true;
	}
	return false;
}

static void tray_events(struct vmm_control *ctl, const struct virtio_scsi_tray *t)
{
	if (t->opened)
		qmp_server_emit(ctl->qmp, "DEVICE_TRAY_MOVED",
				json_pack("{s:s,s:s,s:b}", "device", QMP_CDROM_NAME, "id",
					  QMP_CDROM_NAME, "tray-open", 1));
	if (t->closed)
		qmp_server_emit(ctl->qmp, "DEVICE_TRAY_MOVED",
				json_pack("{s:s,s:s,s:b}", "device", QMP_CDROM_NAME, "id",
					  QMP_CDROM_NAME, "tray-open", 0));
}

static void locked_error(struct qmp_error *err)
{
	qmp_set_error(err, "GenericError",
		      "Device '%s' is locked and force was not specified, wait for tray to open and try again",
		      QMP_CDROM_NAME);
}

json_t *qmp_media_eject(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	json_t *force = json_object_get(args, "force");
	if (force && !json_is_boolean(force)) {
		qmp_set_error(err, "GenericError", "'force' must be a boolean");
		return NULL;
	}
	struct virtio_scsi *s = named_cdrom(ctl, "eject", args, err);
	if (!s || machine_busy(ctl, err))
		return NULL;
	struct virtio_scsi_tray t;
	char why[64];
	if (virtio_scsi_eject(s, json_is_true(force), &t, why, sizeof(why)) < 0)
		locked_error(err);
	tray_events(ctl, &t);
	return NULL;
}

/* "fd:NAME" takes the descriptor out of the getfd table; a path is opened
 * only without the seccomp filter. */
static int medium_fd(struct vmm_control *ctl, const char *filename, struct qmp_error *err)
{
	if (!strncmp(filename, "fd:", 3)) {
		int fd = vmm_control_take_fd(ctl, filename + 3);
		if (fd < 0)
			qmp_set_error(err, "GenericError", "File descriptor named '%.64s' not found",
				      filename + 3);
		return fd;
	}
	if (!ctl->may_open_files) {
		qmp_set_error(err, "GenericError",
			      "'%.200s': kvz-vmm's seccomp filter forbids opening files: pass the ISO with getfd and give filename fd:NAME",
			      filename);
		return -1;
	}
	int fd = open(filename, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		qmp_set_error(err, "GenericError", "Could not open '%.200s': %s", filename, strerror(errno));
	return fd;
}

json_t *qmp_media_change(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	const char *filename = json_string_value(json_object_get(args, "filename"));
	const char *format = json_string_value(json_object_get(args, "format"));
	if (!filename || !filename[0]) {
		qmp_set_error(err, "GenericError", "blockdev-change-medium needs a string 'filename' (fd:NAME)");
		return NULL;
	}
	if (json_object_get(args, "format") && (!format || strcmp(format, "raw"))) {
		qmp_set_error(err, "GenericError", "'format' must be raw (an ISO image)");
		return NULL;
	}
	struct virtio_scsi *s = named_cdrom(ctl, "blockdev-change-medium", args, err);
	if (!s || machine_busy(ctl, err))
		return NULL;
	int fd = medium_fd(ctl, filename, err);
	if (fd < 0)
		return NULL;
	struct virtio_scsi_tray t;
	char why[160];
	if (virtio_scsi_change(s, fd, &t, why, sizeof(why)) < 0) {
		if (!strcmp(why, "locked"))
			locked_error(err);
		else
			qmp_set_error(err, "GenericError", "Could not open '%.100s': %s", filename, why);
	}
	tray_events(ctl, &t);
	return NULL;
}

/* QEMU's shape, for the CD-ROM (disks: query-blockstats). */
json_t *qmp_media_query_block(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct vmm_control *ctl = opaque;
	json_t *list = json_array();
	struct virtio_scsi *s = ctl->vd ? virtio_devices_cdrom(ctl->vd) : NULL;
	if (!s || !list)
		return list;
	bool medium, open, locked;
	uint64_t bytes;
	virtio_scsi_query(s, &medium, &open, &locked, &bytes);
	json_t *cd = json_pack("{s:s,s:s,s:s,s:b,s:b,s:b}", "device", QMP_CDROM_NAME, "qdev",
			       QMP_CDROM_NAME, "type", "unknown", "removable", 1, "locked", locked,
			       "tray_open", open);
	if (cd && medium)
		json_object_set_new(cd, "inserted", json_pack("{s:b,s:s,s:{s:I}}", "ro", 1, "drv", "raw",
							      "image", "virtual-size", (json_int_t)bytes));
	json_array_append_new(list, cd);
	return list;
}
