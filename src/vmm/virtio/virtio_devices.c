/* Placeholder: the set of virtio devices. Filled in by the virtio work. */
#include "virtio_devices.h"

#include <stdio.h>
#include <stdlib.h>

struct virtio_devices {
	int unused;
};

struct virtio_devices *virtio_devices_create(const struct vmm_context *ctx,
					     const struct virtio_options *opts,
					     char *err, size_t errlen)
{
	(void)ctx;
	if (opts->ndisks || opts->nnets || opts->balloon || opts->rng) {
		snprintf(err, errlen, "virtio devices are not implemented yet");
		return NULL;
	}
	struct virtio_devices *vd = calloc(1, sizeof(*vd));
	if (!vd)
		snprintf(err, errlen, "out of memory");
	return vd;
}

void virtio_devices_destroy(struct virtio_devices *vd)
{
	free(vd);
}

int virtio_devices_balloon_set(struct virtio_devices *vd, uint64_t target_bytes,
			       char *err, size_t errlen)
{
	(void)vd;
	(void)target_bytes;
	snprintf(err, errlen, "No balloon device has been activated");
	return -1;
}

json_t *virtio_devices_balloon_query(struct virtio_devices *vd, char *err, size_t errlen)
{
	(void)vd;
	snprintf(err, errlen, "No balloon device has been activated");
	return NULL;
}

json_t *virtio_devices_blockstats(struct virtio_devices *vd)
{
	(void)vd;
	return json_array();
}

void virtio_devices_reset(struct virtio_devices *vd)
{
	(void)vd;
}
