/* Disk copy of a live migration (migration_disk.h). */
#include "migration_disk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/blk_dirty.h"
#include "block/block.h"

/* ---- one synchronous request through the block layer ---- */

struct sync_req {
	struct blk_req req;
	int result;
	bool done;
};

static void sync_done(struct blk_req *req, int result)
{
	struct sync_req *s = req->opaque;
	s->result = result;
	s->done = true;
}

static int blk_sync(struct blk_backend *b, struct blk_aio *aio, enum blk_op op, unsigned flags,
		    uint64_t off, void *data, uint64_t len)
{
	struct iovec iov = { data, len };
	struct sync_req s = { .req = { .op = op, .flags = flags, .offset = off, .len = len,
				       .iov = data ? &iov : NULL, .niov = data ? 1 : 0, .aio = aio,
				       .done = sync_done } };
	s.req.opaque = &s;
	blk_submit(b, &s.req);
	while (!s.done && blk_aio_in_flight(aio))
		blk_aio_poll(aio, true);
	return s.done ? s.result : -EIO;
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* ---- source ---- */

int mig_disks_start(struct mig_disks *s, struct blk_backend *const *disks, unsigned n,
		    char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	if (n == 0 || n > MIG_DISK_MAX) {
		snprintf(err, errlen, n ? "more than %u disks to copy" : "the machine has no writable disk to copy",
			 MIG_DISK_MAX);
		return -1;
	}
	s->aio = blk_aio_create(4, true, err, errlen);
	s->buf = aligned_alloc(4096, MIG_DISK_RUN_MAX);
	if (!s->aio || !s->buf) {
		if (s->aio)
			snprintf(err, errlen, "out of memory");
		mig_disks_stop(s);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		struct mig_disk *d = &s->d[i];
		d->b = disks[i];
		uint64_t nbits = (d->b->size + BLK_DIRTY_CHUNK - 1) / BLK_DIRTY_CHUNK;
		d->words = (nbits + 63) / 64;
		d->pending = calloc(d->words ? d->words : 1, sizeof(uint64_t));
		s->n = i + 1;
		if (!d->pending || blk_dirty_start(d->b) < 0) {
			snprintf(err, errlen, "out of memory");
			mig_disks_stop(s);
			return -1;
		}
		for (uint64_t bit = 0; bit < nbits; bit++)
			d->pending[bit / 64] |= 1ull << (bit % 64);
		s->total += d->b->size;
	}
	return 0;
}

void mig_disks_stop(struct mig_disks *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		if (s->d[i].b)
			blk_dirty_stop(s->d[i].b);
		free(s->d[i].pending);
	}
	if (s->aio)
		blk_aio_destroy(s->aio);
	free(s->buf);
	memset(s, 0, sizeof(*s));
}

int mig_disks_declare(struct mig_disks *s, struct mig_writer *w, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->n; i++)
		if (mig_writer_disk(w, i, s->d[i].b->size, err, errlen) < 0)
			return -1;
	return 0;
}

void mig_disks_collect(struct mig_disks *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		struct blk_dirty *dirty = __atomic_load_n(&s->d[i].b->dirty, __ATOMIC_ACQUIRE);
		/* The bitmap was made for this size: a disk resized since
		 * tracking began keeps its first size's words. */
		if (dirty && dirty->words <= s->d[i].words)
			blk_dirty_take(dirty, s->d[i].pending);
	}
}

uint64_t mig_disks_remaining(const struct mig_disks *s)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < s->n; i++)
		n += blk_dirty_count(s->d[i].pending, s->d[i].words) * BLK_DIRTY_CHUNK;
	return n;
}

static bool pending(const struct mig_disk *d, uint64_t bit)
{
	return d->pending[bit / 64] >> (bit % 64) & 1;
}

/* The chunks of buf (read at off) as zero and data records, runs of the
 * same kind merged. */
static int put_chunks(struct mig_writer *w, unsigned i, uint64_t off, const uint8_t *buf,
		      uint64_t len, char *err, size_t errlen)
{
	uint64_t at = 0;
	while (at < len) {
		uint64_t n = len - at < BLK_DIRTY_CHUNK ? len - at : BLK_DIRTY_CHUNK;
		bool zero = all_zero(buf + at, n);
		uint64_t end = at + n;
		while (end < len) {
			uint64_t m = len - end < BLK_DIRTY_CHUNK ? len - end : BLK_DIRTY_CHUNK;
			if (all_zero(buf + end, m) != zero)
				break;
			end += m;
		}
		if (mig_writer_disk_data(w, i, off + at, zero ? NULL : buf + at, (uint32_t)(end - at),
					 err, errlen) < 0)
			return -1;
		at = end;
	}
	return 0;
}

/* A run of pending chunks from bit: cleared, read, sent. */
static int send_run(struct mig_disks *s, struct mig_writer *w, unsigned i, uint64_t bit,
		    uint64_t nbits, uint64_t *next, char *err, size_t errlen)
{
	struct mig_disk *d = &s->d[i];
	uint64_t n = 0;
	while (bit + n < nbits && n < MIG_DISK_RUN_MAX / BLK_DIRTY_CHUNK && pending(d, bit + n)) {
		d->pending[(bit + n) / 64] &= ~(1ull << ((bit + n) % 64));
		n++;
	}
	*next = bit + n;
	uint64_t off = bit * BLK_DIRTY_CHUNK;
	uint64_t len = n * BLK_DIRTY_CHUNK;
	if (len > d->b->size - off)
		len = d->b->size - off;
	int r = blk_sync(d->b, s->aio, BLK_OP_READ, 0, off, s->buf, len);
	if (r < 0) {
		snprintf(err, errlen, "disk %u: read at %llu: %s", i, (unsigned long long)off, strerror(-r));
		return -1;
	}
	return put_chunks(w, i, off, s->buf, len, err, errlen);
}

int mig_disks_send(struct mig_disks *s, struct mig_writer *w, char *err, size_t errlen)
{
	for (unsigned i = 0; i < s->n; i++) {
		struct mig_disk *d = &s->d[i];
		uint64_t nbits = (d->b->size + BLK_DIRTY_CHUNK - 1) / BLK_DIRTY_CHUNK;
		if (nbits > d->words * 64)
			nbits = d->words * 64;
		for (uint64_t bit = 0; bit < nbits;) {
			if (!d->pending[bit / 64]) {
				bit = (bit / 64 + 1) * 64;
				continue;
			}
			if (!pending(d, bit)) {
				bit++;
				continue;
			}
			if (send_run(s, w, i, bit, nbits, &bit, err, errlen) < 0)
				return -1;
		}
	}
	return 0;
}

/* ---- target ---- */

struct sink_state {
	struct blk_backend *b[MIG_DISK_MAX];
	struct blk_aio *aio;
	uint8_t *zeros;            /* for a backend without write-zeroes */
};

static int sink_write(void *opaque, unsigned index, uint64_t off, const uint8_t *data, uint32_t len,
		      char *err, size_t errlen)
{
	struct sink_state *st = opaque;
	struct blk_backend *b = st->b[index];
	int r;
	if (data)
		r = blk_sync(b, st->aio, BLK_OP_WRITE, 0, off, (void *)data, len);
	else if (b->ops->caps & BLK_CAP_DISCARD)
		r = blk_sync(b, st->aio, BLK_OP_WRITE_ZEROES, BLK_REQ_UNMAP, off, NULL, len);
	else if (!st->zeros && !(st->zeros = calloc(1, MIG_DISK_RUN_MAX)))
		r = -ENOMEM;
	else
		r = blk_sync(b, st->aio, BLK_OP_WRITE, 0, off, st->zeros, len);
	if (r < 0) {
		snprintf(err, errlen, "disk %u: write at %llu: %s", index, (unsigned long long)off,
			 strerror(-r));
		return -1;
	}
	return 0;
}

int mig_disk_sink_init(struct mig_disk_sink *sink, struct blk_backend *const *disks, unsigned n,
		       char *err, size_t errlen)
{
	memset(sink, 0, sizeof(*sink));
	if (n > MIG_DISK_MAX)
		n = MIG_DISK_MAX;
	struct sink_state *st = calloc(1, sizeof(*st));
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	st->aio = blk_aio_create(4, true, err, errlen);
	if (!st->aio) {
		free(st);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		st->b[i] = disks[i];
		sink->size[i] = disks[i]->size;
	}
	sink->n = n;
	sink->write = sink_write;
	sink->opaque = st;
	return 0;
}

void mig_disk_sink_free(struct mig_disk_sink *sink)
{
	struct sink_state *st = sink->opaque;
	if (st) {
		blk_aio_destroy(st->aio);
		free(st->zeros);
		free(st);
	}
	memset(sink, 0, sizeof(*sink));
}
