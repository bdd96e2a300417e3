/* virtio-rng (virtio spec 5.4): the guest's /dev/hwrng, fed by getrandom(). */
#ifndef KVZ_VIRTIO_RNG_H
#define KVZ_VIRTIO_RNG_H

#include "virtio_pci.h"

struct virtio_rng {
	struct virtio_pci vp;
	struct virtq_elem elem;  /* I/O thread only */
};

struct virtio_rng *virtio_rng_create(const struct vmm_context *ctx, char *err, size_t errlen);
void virtio_rng_destroy(struct virtio_rng *r);

#endif
