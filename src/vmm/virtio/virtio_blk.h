/* virtio-blk (virtio spec 5.2) on a raw image file or a host block device:
 * read, write, flush, get-id, discard, write-zeroes. */
#ifndef KVZ_VIRTIO_BLK_H
#define KVZ_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "virtio_pci.h"

#define VIRTIO_BLK_CONFIG_LEN 0x3c

/* query-blockstats counters. */
struct virtio_blk_stats {
	uint64_t rd_bytes, wr_bytes;
	uint64_t rd_ops, wr_ops, flush_ops;
};

struct virtio_blk {
	struct virtio_pci vp;
	int fd;
	bool readonly;
	bool is_blockdev;
	uint64_t sectors;           /* capacity in 512-byte sectors */
	char name[8];               /* "vda" */
	char serial[20];            /* GET_ID answer */
	uint8_t config[VIRTIO_BLK_CONFIG_LEN];
	struct virtio_blk_stats stats;
	struct virtq_elem elem;     /* request being served (I/O thread only) */
	struct iovec data[VIRTQ_MAX_SEGS];
};

/* Opens path (a regular file or a block device) and registers the PCI
 * function. index picks the name (0 -> vda). Returns NULL with err set;
 * nothing is left open on failure. */
struct virtio_blk *virtio_blk_create(const struct vmm_context *ctx, const char *path,
				     bool readonly, unsigned index, char *err, size_t errlen);
void virtio_blk_destroy(struct virtio_blk *b);

/* Copies the counters (under the device lock). */
void virtio_blk_get_stats(struct virtio_blk *b, struct virtio_blk_stats *out);

#endif
