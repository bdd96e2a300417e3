/* The raw format: the image file (or host block device) is the disk, byte
 * for byte. Reads, writes and flushes go through the engine; discard and
 * write-zeroes punch or zero the range here (fallocate, or BLKDISCARD/
 * BLKZEROOUT on a block device). A sparse file is a growing image. */
#include "block.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct raw {
	struct blk_backend b;
	int fd;
	bool is_blockdev;
};

static struct raw *to_raw(struct blk_backend *b)
{
	return b->priv;
}

/* For file systems that can neither zero nor punch a range. */
static int write_zeros(int fd, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[65536];

	while (len) {
		size_t n = len < sizeof(zeros) ? len : sizeof(zeros);
		ssize_t r = pwrite(fd, zeros, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

/* discard: the range may read back as anything; otherwise it must read as
 * zeros (unmap only says the device may free the space doing so). */
static int zero_range(struct raw *r, uint64_t off, uint64_t len, bool discard, bool unmap)
{
	if (r->is_blockdev) {
		uint64_t range[2] = { off, len };
		/* BLKDISCARD does not promise zeros: write-zeroes always uses
		 * BLKZEROOUT, which unmaps where the device can. */
		return ioctl(r->fd, discard ? BLKDISCARD : BLKZEROOUT, range) < 0 ? -errno : 0;
	}
	/* A punched hole reads as zeros in a regular file. */
	int mode = discard || unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
				    : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	if (fallocate(r->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP || discard)
		return -errno;
	/* tmpfs and others lack ZERO_RANGE: a hole reads as zeros too. */
	if (fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0)
		return 0;
	return errno == EOPNOTSUPP ? write_zeros(r->fd, off, len) : -errno;
}

static void sub_done(struct blk_aio_op *op, int result)
{
	struct blk_req *req = op->opaque;
	req->done(req, result);
}

static void raw_submit(struct blk_backend *b, struct blk_req *req)
{
	struct raw *r = to_raw(b);

	if (req->op == BLK_OP_DISCARD || req->op == BLK_OP_WRITE_ZEROES) {
		int rc = zero_range(r, req->offset, req->len, req->op == BLK_OP_DISCARD,
				    req->flags & BLK_REQ_UNMAP);
		/* Discard is a hint: a file system that cannot punch holes
		 * still did what the guest may rely on (nothing). */
		if (rc == -EOPNOTSUPP && req->op == BLK_OP_DISCARD)
			rc = 0;
		req->done(req, rc);
		return;
	}
	/* Writes go into the page cache (the image is not opened O_DIRECT):
	 * io_uring hands a buffered write to a regular file or block device
	 * to its kernel worker (Linux 6.1 always does for tmpfs and ext4, and
	 * serializes the workers' writes to one file), so the copy is done
	 * here instead, without two thread hand-offs per request. Reads from
	 * the page cache complete inside io_uring_enter; the rest wait there,
	 * not here. */
	req->sub = (struct blk_aio_op){
		.op = req->op, .fd = r->fd, .offset = req->offset, .len = req->len,
		.iov = req->iov, .niov = req->niov, .done = sub_done, .opaque = req,
		.now = req->op == BLK_OP_WRITE,
	};
	blk_aio_submit(req->aio, &req->sub);
}

static void raw_close(struct blk_backend *b)
{
	struct raw *r = to_raw(b);
	close(r->fd);
	free(r);
}

/* A file grows with ftruncate (sparse: no space is taken); the size is
 * made durable before the guest hears of it. A host block device cannot
 * grow here: the grow succeeds only once its owner has grown it (an LVM
 * lvextend), as QEMU's block_resize on a device does. */
static int raw_grow(struct blk_backend *b, uint64_t new_size, char *err, size_t errlen)
{
	struct raw *r = to_raw(b);
	if (r->is_blockdev) {
		uint64_t have = 0;
		if (ioctl(r->fd, BLKGETSIZE64, &have) < 0) {
			snprintf(err, errlen, "BLKGETSIZE64: %s", strerror(errno));
			return -errno;
		}
		if (have < new_size) {
			snprintf(err, errlen, "the block device holds only %llu bytes; grow it first",
				 (unsigned long long)have);
			return -ENOSPC;
		}
		return 0;
	}
	struct stat st;
	if (fstat(r->fd, &st) < 0) {
		snprintf(err, errlen, "fstat: %s", strerror(errno));
		return -errno;
	}
	/* Someone may have grown the file already: never cut it. */
	if ((uint64_t)st.st_size < new_size && ftruncate(r->fd, (off_t)new_size) < 0) {
		int e = errno;
		snprintf(err, errlen, "growing the file: %s", strerror(e));
		return -e;
	}
	if (fdatasync(r->fd) < 0) {
		int e = errno;
		snprintf(err, errlen, "fdatasync: %s", strerror(e));
		return -e;
	}
	return 0;
}

static const struct blk_driver_ops raw_ops = {
	.caps = BLK_CAP_THREADSAFE | BLK_CAP_DISCARD,
	.submit = raw_submit,
	.grow = raw_grow,
	.close = raw_close,
};

static int raw_size(struct raw *r, const char *path, uint64_t *bytes, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(r->fd, &st) < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISBLK(st.st_mode)) {
		r->is_blockdev = true;
		if (ioctl(r->fd, BLKGETSIZE64, bytes) < 0) {
			snprintf(err, errlen, "disk %s: BLKGETSIZE64: %s", path, strerror(errno));
			return -1;
		}
		return 0;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "disk %s: not a regular file or block device", path);
		return -1;
	}
	*bytes = (uint64_t)st.st_size;
	return 0;
}

static int raw_open(const char *path, bool readonly, struct blk_backend **out, char *err, size_t errlen)
{
	struct raw *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, errlen, "disk %s: out of memory", path);
		return -1;
	}
	r->fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (r->fd < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
		free(r);
		return -1;
	}
	uint64_t bytes;
	if (raw_size(r, path, &bytes, err, errlen) < 0)
		goto fail;
	/* Two VMs writing one image corrupt it: blk_open takes the same kind
	 * of lock QEMU users expect (shared for readonly) on this file. */
	r->b = (struct blk_backend){ .ops = &raw_ops, .size = bytes, .readonly = readonly, .priv = r,
				     .lock_fd = r->fd };
	*out = &r->b;
	return 0;
fail:
	close(r->fd);
	free(r);
	return -1;
}

const struct blk_driver blk_driver_raw = {
	.name = "raw",
	.probe = NULL,
	.open = raw_open,
};
