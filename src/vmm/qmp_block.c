/* QMP commands of the block layer, apart from qmp_control.c's machine
 * commands: block_resize (QEMU's name and arguments). */
#include "qmp_block.h"

#include <errno.h>
#include <stdint.h>

#include "log.h"
#include "qmp_control.h"
#include "virtio/virtio_devices.h"

/* QEMU's block_resize: {"device": ID} or {"node-name": ID}, "size" in
 * bytes. kvz-vmm grows only (shrinking a live disk cuts guest data); the
 * disk's name is its guest name ("vda"). */
static const char *device_arg(json_t *args, struct qmp_error *err)
{
	json_t *dev = json_object_get(args, "device");
	json_t *node = json_object_get(args, "node-name");
	if (dev && node) {
		qmp_set_error(err, "GenericError", "give 'device' or 'node-name', not both");
		return NULL;
	}
	json_t *v = dev ? dev : node;
	if (!json_is_string(v) || !*json_string_value(v)) {
		qmp_set_error(err, "GenericError", "block_resize needs 'device' (a disk name such as \"vda\")");
		return NULL;
	}
	return json_string_value(v);
}

json_t *qmp_cmd_block_resize(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	const char *device = device_arg(args, err);
	if (!device)
		return NULL;
	json_t *size = json_object_get(args, "size");
	if (!json_is_integer(size) || json_integer_value(size) < 0) {
		qmp_set_error(err, "GenericError", "block_resize needs a non-negative integer 'size' in bytes");
		return NULL;
	}
	/* The stream carries the capacity; the target opened the image before. */
	if (migration_active(&ctl->mig)) {
		qmp_set_error(err, "GenericError", "a migration is in progress");
		return NULL;
	}
	char msg[320] = "";
	uint64_t bytes = (uint64_t)json_integer_value(size);
	int r = ctl->vd ? virtio_devices_block_resize(ctl->vd, device, bytes, msg, sizeof(msg)) : -ENODEV;
	if (r == -ENODEV) {
		qmp_set_error(err, "DeviceNotFound", "Cannot find device='%.64s' nor node-name='%.64s'",
			      device, device);
		return NULL;
	}
	if (r < 0) {
		qmp_set_error(err, "GenericError", "%s", msg);
		return NULL;
	}
	kvz_info("block_resize: %s is now %llu bytes", device, (unsigned long long)bytes);
	return NULL;
}
