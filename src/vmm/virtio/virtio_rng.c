/* virtio-rng: every writable buffer the guest offers is filled from the
 * host's getrandom(). A request is capped so one hostile chain cannot keep
 * the I/O thread busy generating gigabytes. */
#include "virtio_rng.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define QUEUE_SIZE 64
#define MAX_REQUEST (64u * 1024)

/* Fills the writable segments, at most MAX_REQUEST bytes; returns bytes. */
static uint32_t fill(struct virtq_elem *e)
{
	uint32_t done = 0;

	for (unsigned i = e->nout; i < e->nout + e->nin && done < MAX_REQUEST; i++) {
		size_t want = e->iov[i].iov_len;
		if (want > MAX_REQUEST - done)
			want = MAX_REQUEST - done;
		size_t got = 0;
		while (got < want) {
			ssize_t r = getrandom((uint8_t *)e->iov[i].iov_base + got, want - got, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				return done + got;
			got += r;
		}
		done += got;
	}
	return done;
}

static void rng_queue_notify(void *dev, struct virtio_pci *vp, unsigned q)
{
	struct virtio_rng *rng = dev;
	struct virtq *vq = &vp->vq[q];

	do {
		int r;
		while ((r = virtq_pop(vq, &rng->elem)) > 0)
			virtq_push(vq, rng->elem.head, fill(&rng->elem));
		virtio_pci_queue_done(vp, q);
		if (r < 0) {
			virtio_pci_queue_broken(vp, q);
			return;
		}
	} while (virtq_rearm(vq));
}

static const struct virtio_dev_ops rng_ops = {
	.queue_notify = rng_queue_notify,
};

struct virtio_rng *virtio_rng_create(const struct vmm_context *ctx, char *err, size_t errlen)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));

	if (!rng) {
		snprintf(err, errlen, "rng: out of memory");
		return NULL;
	}
	struct virtio_pci_params p = {
		.device_id = VIRTIO_ID_RNG,
		.class_code = 0x00ff00,
		.nqueues = 1,
		.queue_size = QUEUE_SIZE,
		.ops = &rng_ops,
		.dev = rng,
	};
	if (virtio_pci_init(&rng->vp, ctx, &p, "rng", err, errlen) < 0) {
		free(rng);
		return NULL;
	}
	return rng;
}

void virtio_rng_destroy(struct virtio_rng *rng)
{
	if (!rng)
		return;
	virtio_pci_destroy(&rng->vp);
	free(rng);
}
