/* virtio-blk (virtio spec 5.2) on an image opened through the block layer
 * (block/block.h): read, write, flush, get-id, discard, write-zeroes, and
 * several request queues (VIRTIO_BLK_F_MQ). The device only parses
 * requests and completes them; the backend and its engine move the data.
 *
 * Each queue has its own I/O thread and engine (io_uring, or synchronous
 * where io_uring is unavailable or aio=sync): after DRIVER_OK the queue is
 * taken off the machine's I/O thread (virtio_pci_offload_queue), so a busy
 * disk stalls neither the network nor another disk, and the vCPUs' BAR
 * accesses never wait for disk I/O. Up to a queue size of requests are in
 * flight per queue; completions found together raise one interrupt
 * (subject to VIRTIO_F_EVENT_IDX). */
#ifndef KVZ_VIRTIO_BLK_H
#define KVZ_VIRTIO_BLK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "virtio_pci.h"

#define VIRTIO_BLK_CONFIG_LEN 0x3c

/* query-blockstats counters, and how the queues were served (profiling:
 * kvz-vmm --verbose logs them per disk at exit; tests check batching). */
struct virtio_blk_stats {
	uint64_t rd_bytes, wr_bytes;
	uint64_t rd_ops, wr_ops, flush_ops;
	uint64_t requests;          /* chains answered, of any type */
	uint64_t passes;            /* wake-ups of a queue thread (kick or completion) */
	uint64_t interrupts;        /* used-buffer notifications sent */
	uint64_t max_inflight;      /* most requests in flight on one queue at once */
};

struct virtio_blk_opts {
	const char *path;
	const char *format;       /* "raw" (default when NULL), "qcow2"... */
	bool readonly;
	unsigned num_queues;      /* 0: one */
	bool aio_sync;            /* the synchronous engine even where io_uring works */
	/* An image already open (path only names it in messages): the device
	 * owns it from then on, also when creation fails. NULL: open path. */
	struct blk_backend *backend;
	/* An incoming migration: the image's lock waits for the load (block.h
	 * blk_open_opts.lock_later). */
	bool lock_later;
};

struct blk_queue;

struct virtio_blk {
	struct virtio_pci vp;
	struct blk_backend *backend;
	bool readonly;
	uint64_t sectors;           /* capacity in 512-byte sectors */
	char name[8];               /* "vda" */
	char serial[20];            /* GET_ID answer */
	uint8_t config[VIRTIO_BLK_CONFIG_LEN];
	unsigned nqueues;
	bool paused;                /* machine paused: queues hold still (lock of vp) */
	struct blk_queue *q[VIRTIO_PCI_MAX_QUEUES];
};

/* Opens the image and registers the PCI function. index picks the name
 * (0 -> vda). Returns NULL with err set; nothing is left open on failure. */
struct virtio_blk *virtio_blk_create_opts(const struct vmm_context *ctx, const struct virtio_blk_opts *o,
					  unsigned index, char *err, size_t errlen);
/* A raw image with one queue. */
struct virtio_blk *virtio_blk_create(const struct vmm_context *ctx, const char *path,
				     bool readonly, unsigned index, char *err, size_t errlen);
void virtio_blk_destroy(struct virtio_blk *b);

/* QMP block_resize: grows the image (block.h's blk_grow) with the queues
 * held, then tells the guest: capacity in config space, config generation
 * bumped, config-change interrupt (ISR bit 1 or the MSI-X config vector)
 * once the driver is up. Read-only disks, shrinking, sizes that are not a
 * multiple of 512 or above BLK_MAX_SIZE are refused with one line in err
 * and nothing changed. Returns 0 or -errno. */
int virtio_blk_resize(struct virtio_blk *b, uint64_t bytes, char *err, size_t errlen);
/* Sums the queues' counters (under each queue's lock). */
void virtio_blk_get_stats(struct virtio_blk *b, struct virtio_blk_stats *out);
/* Which engine queue 0 runs on (tests, logs). */
enum blk_aio_kind virtio_blk_engine(const struct virtio_blk *b);

#endif
