/* qcow2: the guest-visible read, write, discard and write-zeroes paths.
 *
 * Ordering on allocation (lazy refcounts off): refcounts and data are
 * written, and the new L2 entries wait in the L2 cache; they reach the
 * disk after a barrier (flush) at q2_l2_commit. A new L2 table is written
 * and flushed before its L1 entry. Clusters are freed only after the
 * entries that dropped them are on disk and flushed. A crash thus leaks
 * at worst. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2_internal.h"

static bool is_zero_entry(const struct qcow2 *q, uint64_t e)
{
	return q->version >= 3 && !(e & QCOW2_OFLAG_COMPRESSED) && (e & QCOW2_OFLAG_ZERO);
}

/* Host offset of a normal (uncompressed, not zero) entry, validated. */
static int data_offset(struct qcow2 *q, uint64_t e, uint64_t *off)
{
	uint64_t reserved = QCOW2_L2_RESERVED_MASK | (q->version < 3 ? QCOW2_OFLAG_ZERO : 0);
	if (e & reserved)
		return q2_fail(q, -EIO, "L2 entry 0x%llx has reserved bits set",
			       (unsigned long long)e);
	*off = e & QCOW2_OFFSET_MASK;
	if (*off & (q->cluster_size - 1))
		return q2_fail(q, -EIO, "data cluster offset %llu is not cluster aligned",
			       (unsigned long long)*off);
	return *off ? q2_check_data_range(q, *off, q->cluster_size, "data cluster") : 0;
}

/* Reads part of guest cluster gc from wherever the chain has it. */
static int read_in_cluster(struct qcow2 *q, uint64_t gc, uint32_t in, size_t len, uint8_t *buf)
{
	uint64_t e, off, goff = (gc << q->cluster_bits) + in;
	int r = q2_l2_get(q, gc, &e);
	if (r < 0)
		return r;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint8_t *tmp = malloc(q->cluster_size);
		if (!tmp)
			return q2_fail(q, -ENOMEM, "out of memory");
		r = q2_read_compressed(q, e, tmp);
		if (r == 0)
			memcpy(buf, tmp + in, len);
		free(tmp);
		return r;
	}
	if (is_zero_entry(q, e)) {
		memset(buf, 0, len);
		return 0;
	}
	if ((r = data_offset(q, e, &off)) < 0)
		return r;
	if (off == 0)
		return q2_backing_read(q, buf, goff, len);
	return q2_pread(q, buf, len, off + in, "data cluster");
}

static int check_range(struct qcow2 *q, uint64_t off, size_t len)
{
	if (off > q->size || len > q->size - off)
		return q2_fail(q, -EINVAL, "request at %llu+%zu beyond the virtual size",
			       (unsigned long long)off, len);
	return 0;
}

/* Host offset of guest cluster gc when it is plain data in this image
 * (0 otherwise, or on error). */
static int plain_offset(struct qcow2 *q, uint64_t gc, uint64_t *host)
{
	uint64_t e;
	*host = 0;
	int r = q2_l2_get(q, gc, &e);
	if (r < 0 || e & QCOW2_OFLAG_COMPRESSED || is_zero_entry(q, e))
		return r;
	return data_offset(q, e, host);
}

/* Guest bytes from off that lie in host clusters following each other
 * (one pread instead of one per cluster: sequential reads). */
static int read_run(struct qcow2 *q, uint64_t off, size_t len, uint8_t *p, size_t *done)
{
	uint64_t gc = off >> q->cluster_bits, host;
	uint32_t in = (uint32_t)(off & (q->cluster_size - 1));
	size_t n = q->cluster_size - in < len ? q->cluster_size - in : len;
	int r = plain_offset(q, gc, &host);
	if (r < 0 || host == 0) {
		*done = n;
		return r < 0 ? r : read_in_cluster(q, gc, in, n, p);
	}
	for (uint64_t k = 1, next; n < len; k++) {
		if ((r = plain_offset(q, gc + k, &next)) < 0)
			return r;
		if (next != host + (k << q->cluster_bits))
			break;
		n += q->cluster_size < len - n ? q->cluster_size : len - n;
	}
	*done = n;
	return q2_pread(q, p, n, host + in, "data clusters");
}

int qcow2_map(struct qcow2 *q, uint64_t off, uint64_t len, uint64_t *host, uint64_t *run)
{
	int r = check_range(q, off, len);
	if (r < 0)
		return r;
	uint64_t gc = off >> q->cluster_bits, first;
	uint32_t in = (uint32_t)(off & (q->cluster_size - 1));
	uint64_t n = q->cluster_size - in < len ? q->cluster_size - in : len;
	if ((r = plain_offset(q, gc, &first)) < 0)
		return r;
	*host = first ? first + in : 0;
	for (uint64_t k = 1, next; first && n < len; k++) {
		if ((r = plain_offset(q, gc + k, &next)) < 0)
			return r;
		if (next != first + (k << q->cluster_bits))
			break;
		n += q->cluster_size < len - n ? q->cluster_size : len - n;
	}
	*run = n;
	return 0;
}

int qcow2_read(struct qcow2 *q, void *buf, uint64_t off, size_t len)
{
	int r = check_range(q, off, len);
	uint8_t *p = buf;
	while (r == 0 && len) {
		size_t n = 0;
		r = read_run(q, off, len, p, &n);
		off += n;
		p += n;
		len -= n;
	}
	return r;
}

/* A new L2 table for gc's L1 entry when it has none: zeroed, flushed,
 * then linked. */
int q2_l2_ensure(struct qcow2 *q, uint64_t gc)
{
	uint32_t l1i = (uint32_t)(gc / q->l2_entries);
	if (q->l1[l1i] & QCOW2_OFFSET_MASK)
		return 0;
	uint64_t off;
	int r = q2_alloc(q, 1, &off);
	if (r < 0)
		return r;
	if ((r = q2_meta_add(q, off >> q->cluster_bits)) < 0)
		return r;
	uint8_t *z = calloc(1, q->cluster_size);
	if (!z)
		return q2_fail(q, -ENOMEM, "out of memory");
	r = q2_pwrite(q, z, q->cluster_size, off, "L2 table");
	free(z);
	if (r == 0)
		r = q2_barrier(q);
	return r < 0 ? r : q2_l1_set(q, l1i, off | QCOW2_OFLAG_COPIED);
}

/* Frees what an entry pointed to, once the entry is no longer on disk. */
static int free_entry(struct qcow2 *q, uint64_t e)
{
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, len;
		q2_compressed_span(q, e, &off, &len);
		uint64_t first = off >> q->cluster_bits, last = (off + len - 1) >> q->cluster_bits;
		int r = q2_check_data_range(q, off, len, "compressed cluster");
		for (uint64_t c = first; c <= last && r == 0; c++)
			r = q2_refcount_add(q, c, -1);
		return r;
	}
	uint64_t off = e & QCOW2_OFFSET_MASK;
	if (!off)
		return 0;
	int r = q2_check_data_range(q, off, q->cluster_size, "freed cluster");
	return r < 0 ? r : q2_free_cluster(q, off);
}

static int free_entries(struct qcow2 *q, const uint64_t *old, size_t n)
{
	bool any = false;
	for (size_t i = 0; i < n; i++)
		any |= (old[i] & ~(QCOW2_OFLAG_ZERO | QCOW2_OFLAG_COPIED)) != 0;
	if (!any)
		return 0;
	int r = q2_l2_commit(q);
	if (r == 0)
		r = q2_barrier(q);
	for (size_t i = 0; i < n && r == 0; i++)
		r = free_entry(q, old[i]);
	return r;
}

/* Whether a write may go straight to the entry's host cluster. */
static int in_place(struct qcow2 *q, uint64_t e, uint64_t *off)
{
	*off = 0;
	if (e & QCOW2_OFLAG_COMPRESSED || is_zero_entry(q, e))
		return 0;
	int r = data_offset(q, e, off);
	if (r < 0 || !*off)
		return r;
	if (!(e & QCOW2_OFLAG_COPIED))
		return q2_fail(q, -EIO, "cluster at %llu is shared (refcount > 1)",
			       (unsigned long long)*off);
	return 0;
}

struct wchunk {
	uint64_t gc0;     /* first guest cluster */
	uint32_t n;       /* clusters */
	uint32_t in0;     /* offset in the first cluster */
	size_t len;
	const uint8_t *buf;
};

/* Full new content of guest cluster gc: old content under the new bytes. */
static int build_cluster(struct qcow2 *q, const struct wchunk *w, uint64_t gc, uint8_t *out)
{
	uint64_t cstart = gc << q->cluster_bits, wstart = (w->gc0 << q->cluster_bits) + w->in0;
	uint64_t lo = wstart > cstart ? wstart : cstart;
	uint64_t hi = wstart + w->len < cstart + q->cluster_size ? wstart + w->len
								  : cstart + q->cluster_size;
	if (lo > cstart || hi < cstart + q->cluster_size) {
		uint64_t vis = q->size - cstart < q->cluster_size ? q->size - cstart : q->cluster_size;
		memset(out, 0, q->cluster_size);
		int r = read_in_cluster(q, gc, 0, vis, out);
		if (r < 0)
			return r;
	}
	memcpy(out + (lo - cstart), w->buf + (lo - wstart), hi - lo);
	return 0;
}

static void overlap(const struct qcow2 *q, const struct wchunk *w, uint64_t gc,
		    uint64_t *lo, uint64_t *hi)
{
	uint64_t cstart = gc << q->cluster_bits, wstart = (w->gc0 << q->cluster_bits) + w->in0;
	*lo = wstart > cstart ? wstart : cstart;
	*hi = wstart + w->len < cstart + q->cluster_size ? wstart + w->len
							 : cstart + q->cluster_size;
}

/* A run of guest bytes going to consecutive host bytes: one pwrite. */
struct run {
	uint64_t host;      /* where buf[lo - wstart] goes; 0: no run */
	uint64_t lo, hi;    /* guest range */
};

static int run_flush(struct qcow2 *q, const struct wchunk *w, struct run *run)
{
	if (!run->host)
		return 0;
	uint64_t wstart = (w->gc0 << q->cluster_bits) + w->in0;
	int r = q2_pwrite(q, w->buf + (run->lo - wstart), run->hi - run->lo, run->host,
			  "data clusters");
	run->host = 0;
	return r;
}

/* Guest bytes [lo, hi) going to host: added to the run when they follow
 * on in both, else the run is written and a new one starts. */
static int run_add(struct qcow2 *q, const struct wchunk *w, struct run *run, uint64_t host,
		   uint64_t lo, uint64_t hi)
{
	if (run->host && run->host + (run->hi - run->lo) == host) {
		run->hi = hi;
		return 0;
	}
	int r = run_flush(q, w, run);
	if (r == 0)
		*run = (struct run){host, lo, hi};
	return r;
}

/* Clusters of the chunk that can be written in place get it now (runs of
 * consecutive host clusters in one pwrite); the others are marked in
 * fresh[] with their old entry in old[]. */
static int write_in_place(struct qcow2 *q, const struct wchunk *w, bool *fresh,
			  uint64_t *old, uint32_t *nfresh)
{
	struct run run = {0, 0, 0};
	for (uint32_t i = 0; i < w->n; i++) {
		uint64_t gc = w->gc0 + i, e, off = 0, lo, hi;
		int r = q2_l2_get(q, gc, &e);
		if (r == 0)
			r = in_place(q, e, &off);
		if (r < 0)
			return r;
		fresh[i] = off == 0;
		old[i] = off ? 0 : e;
		if (fresh[i]) {
			(*nfresh)++;
			if ((r = run_flush(q, w, &run)) < 0)
				return r;
			continue;
		}
		overlap(q, w, gc, &lo, &hi);
		if ((r = run_add(q, w, &run, off + (lo - (gc << q->cluster_bits)), lo, hi)) < 0)
			return r;
	}
	return run_flush(q, w, &run);
}

/* Data of the fresh clusters, which get host clusters base, base + 1...
 * in order: runs of whole ones (consecutive in guest and host) go in one
 * pwrite from the caller's buffer, a partial one through cbuf with its
 * old content under the new bytes. */
static int write_fresh_data(struct qcow2 *q, const struct wchunk *w, const bool *fresh,
			    uint64_t base, uint8_t *cbuf)
{
	struct run run = {0, 0, 0};
	uint64_t k = 0;
	for (uint32_t i = 0; i < w->n; i++) {
		int r = 0;
		if (!fresh[i]) {
			if ((r = run_flush(q, w, &run)) < 0)
				return r;
			continue;
		}
		uint64_t gc = w->gc0 + i, host = base + (k++ << q->cluster_bits), lo, hi;
		overlap(q, w, gc, &lo, &hi);
		if (hi - lo < q->cluster_size) {
			if ((r = run_flush(q, w, &run)) == 0 && (r = build_cluster(q, w, gc, cbuf)) == 0)
				r = q2_pwrite(q, cbuf, q->cluster_size, host, "data cluster");
			if (r < 0)
				return r;
			continue;
		}
		if ((r = run_add(q, w, &run, host, lo, hi)) < 0)
			return r;
	}
	return run_flush(q, w, &run);
}

/* The fresh clusters: contiguous new host clusters and their data; their
 * L2 entries wait in the cache (written after a barrier by q2_l2_commit);
 * then whatever the old entries held is freed. */
static int write_fresh(struct qcow2 *q, const struct wchunk *w, const bool *fresh,
		       uint64_t *old, uint32_t nfresh, uint8_t *cbuf)
{
	uint64_t base, k = 0;
	int r = q2_l2_ensure(q, w->gc0);
	if (r == 0)
		r = q2_alloc(q, nfresh, &base);
	if (r == 0)
		r = write_fresh_data(q, w, fresh, base, cbuf);
	for (uint32_t i = 0; i < w->n && r == 0; i++)
		if (fresh[i])
			r = q2_l2_set(q, w->gc0 + i,
				      (base + (k++ << q->cluster_bits)) | QCOW2_OFLAG_COPIED);
	return r < 0 ? r : free_entries(q, old, w->n);
}

/* One chunk inside one L2 table. */
static int write_chunk(struct qcow2 *q, const struct wchunk *w)
{
	uint64_t *old = calloc(w->n, sizeof(uint64_t));
	bool *fresh = calloc(w->n, sizeof(bool));
	uint8_t *cbuf = malloc(q->cluster_size);
	uint32_t nfresh = 0;
	int r = old && fresh && cbuf ? 0 : q2_fail(q, -ENOMEM, "out of memory");
	if (r == 0)
		r = write_in_place(q, w, fresh, old, &nfresh);
	if (r == 0 && nfresh)
		r = write_fresh(q, w, fresh, old, nfresh, cbuf);
	free(cbuf);
	free(fresh);
	free(old);
	return r;
}

static int writable(struct qcow2 *q)
{
	return q->writable ? 0 : q2_fail(q, -EROFS, "image is read-only");
}

int qcow2_write(struct qcow2 *q, const void *buf, uint64_t off, size_t len)
{
	int r = writable(q);
	if (r == 0)
		r = check_range(q, off, len);
	const uint8_t *p = buf;
	while (r == 0 && len) {
		uint64_t gc = off >> q->cluster_bits;
		uint32_t in = (uint32_t)(off & (q->cluster_size - 1));
		uint64_t left_in_l2 = q->l2_entries - gc % q->l2_entries;
		uint64_t span = left_in_l2 * q->cluster_size - in;
		size_t n = span < len ? (size_t)span : len;
		struct wchunk w = {gc, (uint32_t)q2_div_round_up(in + n, q->cluster_size), in, n, p};
		r = write_chunk(q, &w);
		off += n;
		p += n;
		len -= n;
	}
	return r;
}

/* Whole clusters [gc, gc+n) inside one L2 table get entry `val`. */
static int set_clusters(struct qcow2 *q, uint64_t gc, uint64_t n, uint64_t val)
{
	uint64_t *old = calloc(n, sizeof(uint64_t));
	if (!old)
		return q2_fail(q, -ENOMEM, "out of memory");
	int r = 0;
	for (uint64_t i = 0; i < n && r == 0; i++)
		r = q2_l2_get(q, gc + i, &old[i]);
	bool change = false;
	for (uint64_t i = 0; i < n && r == 0; i++)
		change |= old[i] != val;
	if (r == 0 && change && val)
		r = q2_l2_ensure(q, gc);
	for (uint64_t i = 0; i < n && r == 0; i++) {
		if (old[i] != val && (q->l1[(gc + i) / q->l2_entries] & QCOW2_OFFSET_MASK))
			r = q2_l2_set(q, gc + i, val);
		if (old[i] & QCOW2_OFLAG_COMPRESSED)
			continue;
		uint64_t off;
		if (r == 0 && (old[i] & QCOW2_OFFSET_MASK) && (r = data_offset(q, old[i], &off)) == 0)
			old[i] = off; /* validated before it is freed */
		else if (r == 0)
			old[i] = 0;
	}
	if (r == 0)
		r = free_entries(q, old, n);
	free(old);
	return r;
}

/* What a dropped cluster should read as: zeros, except that a v2 image
 * over a base cannot say so (returns false: leave it). */
static bool drop_entry(const struct qcow2 *q, uint64_t *val)
{
	bool has_base = q->backing || q->backing_raw_fd >= 0;
	if (!has_base) {
		*val = 0;
		return true;
	}
	*val = QCOW2_OFLAG_ZERO;
	return q->version >= 3;
}

static int zero_or_drop(struct qcow2 *q, uint64_t off, size_t len, bool zeroes)
{
	int r = writable(q);
	if (r == 0)
		r = check_range(q, off, len);
	uint64_t cs = q->cluster_size, end = off + len;
	uint64_t first = q2_div_round_up(off, cs), last = end / cs; /* whole clusters */
	if (end == q->size)
		last = q2_div_round_up(end, cs); /* the tail cluster is whole too */
	uint64_t val;
	bool can = drop_entry(q, &val);
	if (zeroes && q->version >= 3)
		can = true, val = QCOW2_OFLAG_ZERO;
	uint8_t *z = zeroes ? calloc(1, cs) : NULL;
	if (zeroes && !z)
		return q2_fail(q, -ENOMEM, "out of memory");
	for (uint64_t p = off; r == 0 && zeroes && p < end;) {
		/* Partial clusters (and all of a v2 image over a base) get zero data. */
		uint64_t gc = p / cs, nxt = (gc + 1) * cs < end ? (gc + 1) * cs : end;
		if (!can || gc < first || gc >= last)
			r = qcow2_write(q, z, p, nxt - p);
		p = nxt;
	}
	free(z);
	for (uint64_t gc = first; r == 0 && can && gc < last;) {
		uint64_t n = q->l2_entries - gc % q->l2_entries;
		n = n < last - gc ? n : last - gc;
		r = set_clusters(q, gc, n, val);
		gc += n;
	}
	return r;
}

int qcow2_discard(struct qcow2 *q, uint64_t off, size_t len)
{
	return zero_or_drop(q, off, len, false);
}

int qcow2_write_zeroes(struct qcow2 *q, uint64_t off, size_t len)
{
	return zero_or_drop(q, off, len, true);
}

int qcow2_resize(struct qcow2 *q, uint64_t new_size)
{
	int r = writable(q);
	if (r < 0)
		return r;
	if (new_size < q->size)
		return q2_fail(q, -ENOTSUP, "shrinking is not supported");
	if (new_size > QCOW2_MAX_SIZE)
		return q2_fail(q, -EFBIG, "size %llu is too large", (unsigned long long)new_size);
	uint64_t per_l1 = (uint64_t)q->l2_entries * q->cluster_size;
	uint64_t need = q2_div_round_up(new_size, per_l1);
	if (need > q->l1_size && (r = q2_l1_grow(q, (uint32_t)need)) < 0)
		return r;
	uint8_t be[8];
	q2_put_be64(be, new_size);
	if ((r = q2_pwrite(q, be, 8, QH_SIZE, "header")) < 0)
		return r;
	q->size = new_size;
	return q2_barrier(q);
}

int qcow2_extent_at(struct qcow2 *q, uint64_t off, enum qcow2_extent *kind)
{
	*kind = QCOW2_EXT_ZERO;
	if (off >= q->size)
		return 0;
	uint64_t e;
	int r = q2_l2_get(q, off >> q->cluster_bits, &e);
	if (r < 0)
		return r;
	if (e & QCOW2_OFLAG_COMPRESSED || (!is_zero_entry(q, e) && (e & QCOW2_OFFSET_MASK))) {
		*kind = QCOW2_EXT_DATA;
		return 0;
	}
	if (is_zero_entry(q, e))
		return 0;
	if (q->backing)
		return qcow2_extent_at(q->backing, off, kind);
	if (q->backing_raw_fd >= 0 && off < q->backing_raw_size)
		*kind = QCOW2_EXT_DATA;
	return 0;
}
