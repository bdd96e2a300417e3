/* The qcow2 driver of the block layer (block.h) over the qcow2 library.
 *
 * Reads: the request is mapped under the backend lock; what lies in this
 * image's clusters goes to the queue's engine (io_uring: many in flight),
 * the rest (zero, compressed, bases) is read at once; done runs when the
 * last part completes. Everything else completes synchronously: submit
 * does the metadata and data I/O with pread/pwrite/fdatasync on the
 * calling queue thread and calls done before returning. Without
 * BLK_CAP_THREADSAFE, blk_submit serializes calls with backend->lock,
 * which the library (not thread-safe) needs. Metadata is written back
 * like QEMU's cache=writeback: on a guest FLUSH, at quiesce (VM pause)
 * and close, not after every request. Only the system calls the raw
 * path already uses are made (seccomp unchanged). */
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

/* An asynchronous read: the parts in this image's clusters go to the
 * engine (many in flight, no lock held while they run), the rest (zero,
 * compressed, a base's) is read here. Completes when the last part does. */
struct q2read {
	struct blk_req *req;
	int pending, result;     /* on the engine's thread only */
	struct blk_aio_op *ops;
	struct iovec *iovs;
};

static void q2read_put(struct q2read *rd)
{
	if (--rd->pending)
		return;
	struct blk_req *req = rd->req;
	int result = rd->result;
	free(rd->ops);
	free(rd->iovs);
	free(rd);
	req->done(req, result);
}

static void q2read_done(struct blk_aio_op *op, int result)
{
	struct q2read *rd = op->opaque;
	if (result < 0 && rd->result == 0)
		rd->result = result;
	q2read_put(rd);
}

/* Cursor over the request's iovec. */
struct iocur {
	const struct blk_req *req;
	unsigned i;
	size_t at;
};

/* The next len bytes of the request as iovec slices appended at out. */
static unsigned slice(struct iocur *c, uint64_t len, struct iovec *out)
{
	unsigned n = 0;
	while (len) {
		const struct iovec *v = &c->req->iov[c->i];
		size_t take = v->iov_len - c->at < len ? v->iov_len - c->at : (size_t)len;
		out[n++] = (struct iovec){(uint8_t *)v->iov_base + c->at, take};
		len -= take;
		c->at += take;
		if (c->at == v->iov_len) {
			c->i++;
			c->at = 0;
		}
	}
	return n;
}

static int read_here(struct q2blk *d, const struct iovec *v, unsigned n, uint64_t off)
{
	for (unsigned i = 0; i < n; i++) {
		int r = qcow2_read(d->q, v[i].iov_base, off, v[i].iov_len);
		if (r < 0)
			return r;
		off += v[i].iov_len;
	}
	return 0;
}

/* Maps the whole request (under the backend lock) into engine ops. */
static int read_plan(struct q2blk *d, struct blk_req *req, struct q2read *rd, unsigned *nops)
{
	struct iocur c = {req, 0, 0};
	unsigned used = 0;
	for (uint64_t off = req->offset, end = req->offset + req->len; off < end;) {
		uint64_t host, run;
		int r = qcow2_map(d->q, off, end - off, &host, &run);
		if (r < 0)
			return r;
		struct iovec *v = rd->iovs + used;
		unsigned n = slice(&c, run, v);
		if (host) {
			rd->ops[(*nops)++] = (struct blk_aio_op){
				.op = BLK_OP_READ, .fd = qcow2_fd(d->q), .offset = host, .len = run,
				.iov = v, .niov = n, .done = q2read_done, .opaque = rd};
			used += n;
		} else if ((r = read_here(d, v, n, off)) < 0) {
			return r;
		}
		off += run;
	}
	return 0;
}

static void read_async(struct q2blk *d, struct blk_req *req)
{
	/* Parts: at most one per cluster (+2 for partial ends); slices: the
	 * request's segments, each split at most once per part boundary. */
	size_t parts = req->len / qcow2_cluster_size(d->q) + 2;
	struct q2read *rd = calloc(1, sizeof(*rd));
	if (rd) {
		rd->ops = calloc(parts, sizeof(*rd->ops));
		rd->iovs = calloc(parts + req->niov, sizeof(*rd->iovs));
	}
	if (!rd || !rd->ops || !rd->iovs) {
		if (rd) {
			free(rd->ops);
			free(rd->iovs);
		}
		free(rd);
		req->done(req, explain(d, read_req(d, req)));
		return;
	}
	rd->req = req;
	unsigned nops = 0;
	int r = read_plan(d, req, rd, &nops);
	rd->pending = 1; /* ours until every op is handed over */
	if (r < 0) {
		rd->result = explain(d, r);
		nops = 0;
	}
	rd->pending += (int)nops;
	for (unsigned i = 0; i < nops; i++)
		blk_aio_submit(req->aio, &rd->ops[i]);
	q2read_put(rd);
}

static void q2blk_submit(struct blk_backend *b, struct blk_req *req)
{
	struct q2blk *d = b->priv;
	int r;
	if (req->op == BLK_OP_READ && req->aio) {
		read_async(d, req);
		return;
	}
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
	/* Changed L2 tables and refcounts stay in the library's cache (written
	 * in a safe order: a kill -9 leaks clusters at worst); they reach the
	 * file on FLUSH, on eviction, at q2blk_quiesce (pause) and at close. */
	req->done(req, explain(d, r));
}

/* The VM pauses (kvzd then copies or snapshots the file): the cached
 * metadata goes to the file, refcounts before the L2 entries using them. */
static int q2blk_quiesce(struct blk_backend *b)
{
	struct q2blk *d = b->priv;
	return explain(d, qcow2_commit(d->q));
}

/* qcow2_resize writes a larger L1 table first where the new size needs
 * one, then the header's size, each behind a barrier (the order the
 * library keeps for every metadata change). */
static int q2blk_grow(struct blk_backend *b, uint64_t new_size, char *err, size_t errlen)
{
	struct q2blk *d = b->priv;
	int r = qcow2_resize(d->q, new_size);
	if (r < 0)
		snprintf(err, errlen, "%s", qcow2_error(d->q));
	return r;
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
	.quiesce = q2blk_quiesce,
	.grow = q2blk_grow,
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
	/* The same exclusive/shared lock as raw images: two writers corrupt.
	 * Taken here, before qcow2_open may write the header, also for an
	 * incoming migration (blk_open_opts.lock_later): a qcow2 image is not
	 * opened beside a running source, so it does not move on shared
	 * storage live (QEMU's inactive images would be needed). */
	char qerr[300];
	if (flock(d->lock_fd, (readonly ? LOCK_SH : LOCK_EX) | LOCK_NB) < 0) {
		snprintf(err, errlen, "disk %s: %s", path,
			 errno == EWOULDBLOCK ? "in use by another process" : strerror(errno));
	} else if (qcow2_open(path, d->lock_fd, readonly ? 0 : QCOW2_OPEN_WRITE, &d->q, qerr,
			      sizeof(qerr)) < 0) {
		snprintf(err, errlen, "disk %s", qerr);
	} else {
		d->b = (struct blk_backend){.ops = &q2blk_ops, .size = qcow2_size(d->q),
					    .readonly = readonly, .priv = d, .lock_fd = d->lock_fd,
					    .locked = true};
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
