/* virtio-blk: requests are served synchronously on the I/O thread with
 * preadv/pwritev straight between the image and guest memory. A sparse
 * file is a growing image; discard punches holes back into it. */
#include "virtio_blk.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define SECTOR 512u
#define QUEUE_SIZE 256
#define SEG_MAX (QUEUE_SIZE - 2)
#define MAX_DISCARD_SECTORS (1u << 22)
#define MAX_DISCARD_SEG 16

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_discard_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* Builds in dst the part [skip, skip + len) of the segments src. */
static unsigned iov_slice(const struct iovec *src, unsigned n, uint64_t skip, uint64_t len,
			  struct iovec *dst)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len; i++) {
		if (skip >= src[i].iov_len) {
			skip -= src[i].iov_len;
			continue;
		}
		size_t chunk = src[i].iov_len - skip;
		if (chunk > len)
			chunk = len;
		dst[k++] = (struct iovec){ (uint8_t *)src[i].iov_base + skip, chunk };
		len -= chunk;
		skip = 0;
	}
	return k;
}

/* preadv/pwritev until everything moved; iov is consumed. A read past the
 * end of the file (cannot happen after the bounds check, unless the file
 * shrank underneath us) is an error. */
static int rw_full(int fd, struct iovec *iov, unsigned n, uint64_t off, bool write)
{
	while (n) {
		ssize_t r = write ? pwritev(fd, iov, n > IOV_MAX ? IOV_MAX : n, off)
				  : preadv(fd, iov, n > IOV_MAX ? IOV_MAX : n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += r;
		while (n && (size_t)r >= iov->iov_len) {
			r -= iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (uint8_t *)iov->iov_base + r;
			iov->iov_len -= r;
		}
	}
	return 0;
}

static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t nsec = bytes / SECTOR + (bytes % SECTOR != 0);

	return sector <= b->sectors && nsec <= b->sectors - sector;
}

static uint8_t do_rw(struct virtio_blk *b, const struct blk_req_hdr *h, bool write, uint32_t *written)
{
	struct virtq_elem *e = &b->elem;
	uint64_t len = write ? e->out_len - sizeof(*h) : e->in_len - 1;
	unsigned n = write ? iov_slice(e->iov, e->nout, sizeof(*h), len, b->data)
			   : iov_slice(e->iov + e->nout, e->nin, 0, len, b->data);

	if (write && b->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (!in_range(b, h->sector, len))
		return VIRTIO_BLK_S_IOERR;
	int r = rw_full(b->fd, b->data, n, h->sector * SECTOR, write);
	if (r < 0) {
		kvz_warn("virtio %s: %s at sector %llu: %s", b->name, write ? "write" : "read",
			 (unsigned long long)h->sector, strerror(-r));
		return VIRTIO_BLK_S_IOERR;
	}
	if (write) {
		b->stats.wr_bytes += len;
		b->stats.wr_ops++;
	} else {
		b->stats.rd_bytes += len;
		b->stats.rd_ops++;
		*written = len;
	}
	return VIRTIO_BLK_S_OK;
}

/* For file systems that can neither zero nor punch a range. */
static int write_zeros(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];

	while (len) {
		size_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		ssize_t r = pwrite(fd, zeros, n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += r;
		len -= r;
	}
	return 0;
}

/* discard: the range may read back as anything; otherwise it must read as
 * zeros (unmap only says the device may free the space doing so). */
static int zero_range(struct virtio_blk *b, uint64_t off, uint64_t len, bool discard, bool unmap)
{
	if (b->is_blockdev) {
		uint64_t range[2] = { off, len };
		/* BLKDISCARD does not promise zeros: write-zeroes always uses
		 * BLKZEROOUT, which unmaps where the device can. */
		return ioctl(b->fd, discard ? BLKDISCARD : BLKZEROOUT, range) < 0 ? -errno : 0;
	}
	/* A punched hole reads as zeros in a regular file. */
	int mode = discard || unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
				    : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	if (fallocate(b->fd, mode, off, len) == 0)
		return 0;
	if (errno != EOPNOTSUPP || discard)
		return -errno;
	/* tmpfs and others lack ZERO_RANGE: a hole reads as zeros too. */
	if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) == 0)
		return 0;
	return errno == EOPNOTSUPP ? write_zeros(b->fd, off, len) : -errno;
}

static uint8_t do_discard(struct virtio_blk *b, bool zeroes)
{
	struct virtq_elem *e = &b->elem;
	uint64_t len = e->out_len - sizeof(struct blk_req_hdr);
	struct blk_discard_seg seg;

	if (b->readonly)
		return VIRTIO_BLK_S_IOERR;
	if (len == 0 || len % sizeof(seg) || len / sizeof(seg) > MAX_DISCARD_SEG)
		return VIRTIO_BLK_S_UNSUPP;
	for (uint64_t off = 0; off < len; off += sizeof(seg)) {
		virtq_iov_to_buf(e->iov, e->nout, sizeof(struct blk_req_hdr) + off, &seg, sizeof(seg));
		if (seg.num_sectors > MAX_DISCARD_SECTORS ||
		    !in_range(b, seg.sector, (uint64_t)seg.num_sectors * SECTOR) ||
		    (seg.flags & ~1u) || (!zeroes && seg.flags))
			return VIRTIO_BLK_S_UNSUPP;
		int r = zero_range(b, seg.sector * SECTOR, (uint64_t)seg.num_sectors * SECTOR,
				   !zeroes, seg.flags & 1);
		/* Discard is a hint: a file system that cannot punch holes
		 * still did what the guest may rely on (nothing). */
		if (r < 0 && !(r == -EOPNOTSUPP && !zeroes)) {
			kvz_warn("virtio %s: %s: %s", b->name, zeroes ? "write-zeroes" : "discard",
				 strerror(-r));
			return VIRTIO_BLK_S_IOERR;
		}
	}
	return VIRTIO_BLK_S_OK;
}

/* Serves b->elem. Returns bytes written into the guest's buffers, or -1
 * for a chain too malformed to answer (no status byte). */
static int64_t handle_request(struct virtio_blk *b)
{
	struct virtq_elem *e = &b->elem;
	struct blk_req_hdr h;
	uint32_t written = 0;
	uint8_t status;

	if (e->out_len < sizeof(h) || e->in_len < 1)
		return -1;
	virtq_iov_to_buf(e->iov, e->nout, 0, &h, sizeof(h));
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
		status = do_rw(b, &h, false, &written);
		break;
	case VIRTIO_BLK_T_OUT:
		status = do_rw(b, &h, true, &written);
		break;
	case VIRTIO_BLK_T_FLUSH:
		status = fdatasync(b->fd) == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
		b->stats.flush_ops++;
		break;
	case VIRTIO_BLK_T_GET_ID:
		written = virtq_buf_to_iov(e->iov + e->nout, e->nin, 0, b->serial,
					   e->in_len - 1 < sizeof(b->serial) ? e->in_len - 1 : sizeof(b->serial));
		status = VIRTIO_BLK_S_OK;
		break;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		status = do_discard(b, h.type == VIRTIO_BLK_T_WRITE_ZEROES);
		break;
	default:
		status = VIRTIO_BLK_S_UNSUPP;
		break;
	}
	virtq_buf_to_iov(e->iov + e->nout, e->nin, e->in_len - 1, &status, 1);
	return (int64_t)written + 1;
}

static void blk_queue_notify(void *dev, struct virtio_pci *vp, unsigned q)
{
	struct virtio_blk *b = dev;
	struct virtq *vq = &vp->vq[q];

	do {
		int r;
		while ((r = virtq_pop(vq, &b->elem)) > 0) {
			int64_t len = handle_request(b);
			if (len < 0) {
				snprintf(vq->error, sizeof(vq->error),
					 "request without header or status byte");
				vq->broken = true;
				break;
			}
			virtq_push(vq, b->elem.head, (uint32_t)len);
		}
		virtio_pci_queue_done(vp, q);
		if (vq->broken) {
			virtio_pci_queue_broken(vp, q);
			return;
		}
	} while (virtq_rearm(vq));
}

static const struct virtio_dev_ops blk_ops = {
	.queue_notify = blk_queue_notify,
};

static void put_le(uint8_t *p, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++, v >>= 8)
		p[i] = v;
}

static void build_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;

	put_le(c + 0x00, b->sectors, 8);
	put_le(c + 0x0c, SEG_MAX, 4);
	put_le(c + 0x14, SECTOR, 4);
	put_le(c + 0x22, 1, 2);                   /* num_queues */
	put_le(c + 0x24, MAX_DISCARD_SECTORS, 4);
	put_le(c + 0x28, MAX_DISCARD_SEG, 4);
	put_le(c + 0x2c, 8, 4);                   /* discard alignment: 4 KiB */
	put_le(c + 0x30, MAX_DISCARD_SECTORS, 4);
	put_le(c + 0x34, MAX_DISCARD_SEG, 4);
	c[0x38] = 1;                              /* write_zeroes_may_unmap */
}

static int open_image(struct virtio_blk *b, const char *path, char *err, size_t errlen)
{
	struct stat st;

	b->fd = open(path, (b->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (b->fd < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
		return -1;
	}
	/* Two VMs writing one image corrupt it: take the same kind of lock
	 * QEMU users expect (shared for readonly). */
	if (flock(b->fd, (b->readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		snprintf(err, errlen, "disk %s: %s", path,
			 errno == EWOULDBLOCK ? "in use by another process" : strerror(errno));
		return -1;
	}
	if (fstat(b->fd, &st) < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
		return -1;
	}
	uint64_t bytes = st.st_size;
	if (S_ISBLK(st.st_mode)) {
		b->is_blockdev = true;
		if (ioctl(b->fd, BLKGETSIZE64, &bytes) < 0) {
			snprintf(err, errlen, "disk %s: BLKGETSIZE64: %s", path, strerror(errno));
			return -1;
		}
	} else if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "disk %s: not a regular file or block device", path);
		return -1;
	}
	b->sectors = bytes / SECTOR;
	return 0;
}

struct virtio_blk *virtio_blk_create(const struct vmm_context *ctx, const char *path,
				     bool readonly, unsigned index, char *err, size_t errlen)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));

	if (!b) {
		snprintf(err, errlen, "disk %s: out of memory", path);
		return NULL;
	}
	b->readonly = readonly;
	snprintf(b->name, sizeof(b->name), "vd%c", 'a' + (index % 26));
	snprintf(b->serial, sizeof(b->serial), "kvz-%s", b->name);
	if (open_image(b, path, err, errlen) < 0)
		goto fail;
	build_config(b);
	uint64_t features = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
			    1ull << VIRTIO_BLK_F_FLUSH;
	if (readonly)
		features |= 1ull << VIRTIO_BLK_F_RO;
	else
		features |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	struct virtio_pci_params p = {
		.device_id = VIRTIO_ID_BLOCK,
		.class_code = 0x018000,   /* mass storage, other */
		.features = features,
		.nqueues = 1,
		.queue_size = QUEUE_SIZE,
		.config = b->config,
		.config_len = sizeof(b->config),
		.ops = &blk_ops,
		.dev = b,
	};
	if (virtio_pci_init(&b->vp, ctx, &p, b->name, err, errlen) < 0)
		goto fail;
	return b;
fail:
	if (b->fd >= 0)
		close(b->fd);
	free(b);
	return NULL;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	virtio_pci_destroy(&b->vp);
	close(b->fd);
	free(b);
}

void virtio_blk_get_stats(struct virtio_blk *b, struct virtio_blk_stats *out)
{
	pthread_mutex_lock(&b->vp.lock);
	*out = b->stats;
	pthread_mutex_unlock(&b->vp.lock);
}
