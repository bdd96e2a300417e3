/* Split virtqueues (virtio 1.x, 2.7): descriptor table, available ring and
 * used ring in guest memory, walked with every guest-supplied value treated
 * as hostile. The state that describes a queue is a plain struct so that a
 * snapshot or migration can save and restore it field by field. */
#ifndef KVZ_VIRTIO_VIRTQUEUE_H
#define KVZ_VIRTIO_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "guest_mem.h"

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4

#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX     29

/* Largest queue a device offers, and the most segments one chain may have
 * (direct plus indirect). Linux never builds more than a few hundred. */
#define VIRTQ_MAX_SIZE 1024
#define VIRTQ_MAX_SEGS 1024

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* One popped descriptor chain: device-readable segments first (out), then
 * device-writable ones (in), as host pointers into guest RAM. */
struct virtq_elem {
	uint16_t head;
	unsigned nout;
	unsigned nin;
	uint64_t out_len;
	uint64_t in_len;
	struct iovec iov[VIRTQ_MAX_SEGS];
};

/* Queue state. Fields up to `broken` are what the driver programmed and the
 * device has consumed: the serializable state. */
struct virtq {
	uint16_t size;          /* queue_size, power of two <= VIRTQ_MAX_SIZE */
	bool enabled;
	uint64_t desc_gpa;
	uint64_t avail_gpa;
	uint64_t used_gpa;
	uint16_t last_avail;    /* next avail ring entry to consume */
	uint16_t used_idx;      /* our copy of used->idx */
	uint16_t signalled_used;/* used_idx at the last interrupt (EVENT_IDX) */
	bool signalled_valid;
	bool event_idx;         /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;          /* VIRTIO_F_INDIRECT_DESC negotiated */
	bool broken;            /* malformed input seen: no more processing */
	char error[128];        /* why broken */

	/* Derived from the fields above by virtq_enable(). */
	const struct guest_mem *mem;
	struct virtq_desc *desc;
	uint16_t *avail;        /* flags, idx, ring[size], used_event */
	uint16_t *used;         /* flags, idx, then {u32 id, u32 len}[size], avail_event */
};

/* Resolves the ring addresses in guest memory. Returns 0, or -1 with the
 * queue marked broken (size not a power of two, rings outside RAM or
 * misaligned). */
int virtq_enable(struct virtq *vq, const struct guest_mem *mem);

/* Back to power-on state (size kept at max). */
void virtq_reset(struct virtq *vq, uint16_t max_size);

/* Takes the next available chain. Returns 1 with *e filled, 0 when the ring
 * is empty, -1 when the guest's input is malformed (queue now broken,
 * vq->error says why; the caller marks the device as needing reset). */
int virtq_pop(struct virtq *vq, struct virtq_elem *e);

/* Returns a chain to the driver with len bytes written into its
 * device-writable part. */
void virtq_push(struct virtq *vq, uint16_t head, uint32_t len);

/* Returns n chains at once: the driver sees them only when all are in the
 * ring (mergeable receive buffers must arrive together). */
struct virtq_used {
	uint16_t head;
	uint32_t len;
};
void virtq_push_batch(struct virtq *vq, const struct virtq_used *items, unsigned n);

/* Gives back the last n popped (not yet pushed) chains: they will be
 * popped again. For a device that found it cannot use them yet. */
void virtq_unpop(struct virtq *vq, uint16_t n);

/* Whether the driver has made buffers available that we have not popped. */
bool virtq_has_avail(struct virtq *vq);

/* After one or more pushes: whether the driver wants an interrupt now. */
bool virtq_need_interrupt(struct virtq *vq);

/* Tells the driver it should kick for anything after what was consumed,
 * then returns true when more buffers arrived meanwhile (loop again). */
bool virtq_rearm(struct virtq *vq);

/* Copies between an element's segments and a flat buffer. Return bytes
 * copied. */
size_t virtq_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t virtq_buf_to_iov(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len);

#endif
