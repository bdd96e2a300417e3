/* The qcow2 driver of the block layer (block.h) over the qcow2 library.
 *
 * Completion is synchronous: submit does the metadata and data I/O with
 * pread/pwrite/fdatasync on the calling queue thread and calls done before
 * returning. Without BLK_CAP_THREADSAFE, blk_submit serializes calls with
 * backend->lock, which the library (not thread-safe) needs. Only the
 * system calls the raw path already uses are made (seccomp unchanged). */
#include "block.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "log.h"
#include "qcow2.h"

/* Multi-segment requests up to this size go through one buffer. */
#define BOUNCE_MAX (4u << 20)
/* A hostile image makes every request fail: log the first few only. */
#define LOGGED_ERRORS_MAX 8

struct q2blk {
	struct blk_backend b;
	struct qcow2 *q;
	int lock_fd;            /* holds the flock for the image's lifetime */
	uint8_t *bounce;
	unsigned logged;
};

static int explain(struct q2blk *d, int r)
{
	if (r < 0 && d->logged < LOGGED_ERRORS_MAX) {
		d->logged++;
		kvz_warn("%s", qcow2_error(d->q));
	}
	return r;
}

static int rw_segments(struct q2blk *d, struct blk_req *req, bool write)
{
	uint64_t off = req->offset;
	for (unsigned i = 0; i < req->niov; i++) {
		struct iovec *v = &req->iov[i];
		int r = write ? qcow2_write(d->q, v->iov_base, off, v->iov_len)
			      : qcow2_read(d->q, v->iov_base, off, v->iov_len);
		if (r < 0)
			return r;
		off += v->iov_len;
	}
	return 0;
}

/* Multi-segment requests go through one buffer: a write's new clusters
 * are then allocated together, and a read of contiguous clusters is one
 * pread instead of one per (page-sized) segment. */
static bool use_bounce(struct q2blk *d, struct blk_req *req)
{
	if (req->niov <= 1 || req->len > BOUNCE_MAX)
		return false;
	return d->bounce || (d->bounce = malloc(BOUNCE_MAX));
}

static int write_req(struct q2blk *d, struct blk_req *req)
{
	if (!use_bounce(d, req))
		return rw_segments(d, req, true);
	size_t pos = 0;
	for (unsigned i = 0; i < req->niov; i++) {
		memcpy(d->bounce + pos, req->iov[i].iov_base, req->iov[i].iov_len);
		pos += req->iov[i].iov_len;
	}
	return qcow2_write(d->q, d->bounce, req->offset, pos);
}

static int read_req(struct q2blk *d, struct blk_req *req)
{
	if (!use_bounce(d, req))
		return rw_segments(d, req, false);
	int r = qcow2_read(d->q, d->bounce, req->offset, req->len);
	size_t pos = 0;
	for (unsigned i = 0; r == 0 && i < req->niov; i++) {
		memcpy(req->iov[i].iov_base, d->bounce + pos, req->iov[i].iov_len);
		pos += req->iov[i].iov_len;
	}
	return r;
}

static void q2blk_submit(struct blk_backend *b, struct blk_req *req)
{
	struct q2blk *d = b->priv;
	int r;
	switch (req->op) {
	case BLK_OP_READ:
		r = read_req(d, req);
		break;
	case BLK_OP_WRITE:
		r = write_req(d, req);
		break;
	case BLK_OP_FLUSH:
		r = qcow2_flush(d->q);
		break;
	case BLK_OP_DISCARD:
		r = qcow2_discard(d->q, req->offset, req->len);
		break;
	case BLK_OP_WRITE_ZEROES:
		r = qcow2_write_zeroes(d->q, req->offset, req->len);
		break;
	default:
		r = -EOPNOTSUPP;
	}
	/* The image file must be whole whenever a request has completed: a
	 * paused VM's disk is copied by kvzd (snapshots) with no flush the
	 * block layer could ask for. Costs one fdatasync per request that
	 * changed metadata (none for reads or writes in place). */
	if (r == 0 && req->op != BLK_OP_READ && req->op != BLK_OP_FLUSH)
		r = qcow2_commit(d->q);
	req->done(req, explain(d, r));
}

static void q2blk_close(struct blk_backend *b)
{
	struct q2blk *d = b->priv;
	if (qcow2_close(d->q) < 0)
		kvz_warn("qcow2: final flush failed");
	close(d->lock_fd);
	free(d->bounce);
	free(d);
}

static const struct blk_driver_ops q2blk_ops = {
	.caps = BLK_CAP_DISCARD,
	.submit = q2blk_submit,
	.close = q2blk_close,
};

static bool q2blk_probe(const uint8_t *head, size_t len)
{
	return len >= 4 && head[0] == 'Q' && head[1] == 'F' && head[2] == 'I' && head[3] == 0xfb;
}

static int q2blk_open(const char *path, bool readonly, struct blk_backend **out, char *err,
		      size_t errlen)
{
	struct q2blk *d = calloc(1, sizeof(*d));
	if (!d) {
		snprintf(err, errlen, "disk %s: out of memory", path);
		return -1;
	}
	d->lock_fd = open(path, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (d->lock_fd < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
		free(d);
		return -1;
	}
	/* The same exclusive/shared lock as raw images: two writers corrupt. */
	char qerr[300];
	if (flock(d->lock_fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		snprintf(err, errlen, "disk %s: %s", path,
			 errno == EWOULDBLOCK ? "in use by another process" : strerror(errno));
	} else if (qcow2_open(path, d->lock_fd, readonly ? 0 : QCOW2_OPEN_WRITE, &d->q, qerr,
			      sizeof(qerr)) < 0) {
		snprintf(err, errlen, "disk %s", qerr);
	} else {
		d->b = (struct blk_backend){.ops = &q2blk_ops, .size = qcow2_size(d->q),
					    .readonly = readonly, .priv = d};
		*out = &d->b;
		return 0;
	}
	close(d->lock_fd);
	free(d);
	return -1;
}

const struct blk_driver blk_driver_qcow2 = {
	.name = "qcow2",
	.probe = q2blk_probe,
	.open = q2blk_open,
};
