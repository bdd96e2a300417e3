/* qcow2: refcount table and blocks, cluster allocation, and growing the
 * refcount table. Refcounts are always written (and flushed by the
 * caller's barrier) before anything references the clusters they count,
 * so a crash leaks clusters at worst. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2_internal.h"

int q2_refcount_load(struct qcow2 *q)
{
	q->reftable_entries = (uint64_t)q->reftable_clusters * q->cluster_size / 8;
	q->reftable = calloc(q->reftable_entries, 8);
	if (!q->reftable)
		return q2_fail(q, -ENOMEM, "out of memory for the refcount table");
	int r = q2_pread(q, q->reftable, q->reftable_entries * 8, q->reftable_offset,
			 "refcount table");
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < q->reftable_entries; i++)
		q->reftable[i] = q2_be64(&q->reftable[i]);
	q->alloc_end = q2_div_round_up(q->file_size, q->cluster_size);
	q->free_hint = 1;
	return 0;
}

static int rb_write(struct qcow2 *q, struct qcow2_table_slot *s)
{
	uint16_t *be = malloc(q->cluster_size);
	if (!be)
		return q2_fail(q, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < q->rb_entries; i++)
		q2_put_be16(&be[i], s->rb[i]);
	int r = q2_pwrite(q, be, q->cluster_size, s->offset, "refcount block");
	free(be);
	if (r == 0)
		s->dirty = false;
	return r;
}

int q2_refcount_writeback(struct qcow2 *q)
{
	for (int i = 0; i < QCOW2_RB_CACHE; i++) {
		struct qcow2_table_slot *s = &q->rbc[i];
		if (s->offset && s->dirty) {
			int r = rb_write(q, s);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int q2_barrier(struct qcow2 *q)
{
	int r = q2_refcount_writeback(q);
	if (r < 0 || q->unordered || !q->unsynced)
		return r;
	return q2_sync(q);
}

/* The cached refcount block at host offset off (loaded on a miss). */
static int rb_get(struct qcow2 *q, uint64_t off, bool fresh, uint16_t **rb)
{
	struct qcow2_table_slot *s = NULL, *victim = &q->rbc[0];
	for (int i = 0; i < QCOW2_RB_CACHE && !s; i++) {
		if (q->rbc[i].offset == off)
			s = &q->rbc[i];
		else if (q->rbc[i].used < victim->used)
			victim = &q->rbc[i];
	}
	if (!s) {
		s = victim;
		if (s->offset && s->dirty) {
			int r = rb_write(q, s);
			if (r < 0)
				return r;
		}
		s->offset = 0;
		if (!s->rb && !(s->rb = malloc(q->cluster_size)))
			return q2_fail(q, -ENOMEM, "out of memory for the refcount cache");
		if (fresh) {
			memset(s->rb, 0, q->cluster_size);
		} else {
			int r = q2_pread(q, s->rb, q->cluster_size, off, "refcount block");
			if (r < 0)
				return r;
			for (uint32_t i = 0; i < q->rb_entries; i++)
				s->rb[i] = q2_be16(&s->rb[i]);
		}
		s->offset = off;
	}
	s->used = ++q->stamp;
	*rb = s->rb;
	return 0;
}

static void rb_mark_dirty(struct qcow2 *q, uint64_t off)
{
	for (int i = 0; i < QCOW2_RB_CACHE; i++)
		if (q->rbc[i].offset == off)
			q->rbc[i].dirty = true;
}

static uint64_t rb_offset_of(const struct qcow2 *q, uint64_t cluster)
{
	uint64_t rt = cluster / q->rb_entries;
	return rt < q->reftable_entries ? q->reftable[rt] & ~QCOW2_REFT_RESERVED_MASK : 0;
}

int q2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *rc)
{
	*rc = 0;
	if (q->refcount_bits != 16)
		return q2_fail(q, -ENOTSUP, "refcounts of %u bits are not supported",
			       q->refcount_bits);
	uint64_t off = rb_offset_of(q, cluster);
	if (!off)
		return 0;
	uint16_t *rb;
	int r = rb_get(q, off, false, &rb);
	if (r == 0)
		*rc = rb[cluster % q->rb_entries];
	return r;
}

/* The refcount block covering cluster must exist. */
static int refcount_change(struct qcow2 *q, uint64_t cluster, int delta)
{
	uint64_t off = rb_offset_of(q, cluster);
	if (!off)
		return q2_fail(q, -EIO, "no refcount block for cluster %llu",
			       (unsigned long long)cluster);
	uint16_t *rb;
	int r = rb_get(q, off, false, &rb);
	if (r < 0)
		return r;
	uint16_t *e = &rb[cluster % q->rb_entries];
	int64_t v = (int64_t)*e + delta;
	if (v < 0 || v > 0xffff)
		return q2_fail(q, -EIO, "refcount of cluster %llu would be %lld",
			       (unsigned long long)cluster, (long long)v);
	*e = (uint16_t)v;
	rb_mark_dirty(q, off);
	if (v == 0 && cluster < q->free_hint)
		q->free_hint = cluster;
	return 0;
}

int q2_refcount_add(struct qcow2 *q, uint64_t cluster, int delta)
{
	return refcount_change(q, cluster, delta);
}

int q2_free_cluster(struct qcow2 *q, uint64_t offset)
{
	return refcount_change(q, offset >> q->cluster_bits, -1);
}

static int write_reftable_entry(struct qcow2 *q, uint64_t idx, uint64_t val)
{
	uint8_t be[8];
	q2_put_be64(be, val);
	int r = q2_pwrite(q, be, 8, q->reftable_offset + idx * 8, "refcount table entry");
	if (r == 0)
		q->reftable[idx] = val;
	return r;
}

static int grow_reftable(struct qcow2 *q, uint64_t need_idx);

/* A refcount block for the (all free) range holding cluster c, placed
 * at c itself and counting itself. */
static int new_refblock(struct qcow2 *q, uint64_t c)
{
	uint64_t rt = c / q->rb_entries;
	if (rt >= q->reftable_entries)
		return grow_reftable(q, rt);
	uint64_t off = c << q->cluster_bits;
	uint16_t *rb;
	int r = q2_meta_add(q, c);
	if (r == 0)
		r = rb_get(q, off, true, &rb);
	if (r < 0)
		return r;
	rb[c % q->rb_entries] = 1;
	rb_mark_dirty(q, off);
	if (c + 1 > q->alloc_end)
		q->alloc_end = c + 1;
	if ((r = q2_barrier(q)) < 0)
		return r;
	return write_reftable_entry(q, rt, off);
}

/* First cluster of a run of n free ones at or after the hint. */
static int find_free_run(struct qcow2 *q, uint64_t n, uint64_t *start)
{
	uint64_t run = 0, c = q->free_hint ? q->free_hint : 1;
	for (;; c++) {
		uint64_t rc = 0;
		if (c < q->alloc_end) {
			int r = q2_refcount_get(q, c, &rc);
			if (r < 0)
				return r;
		}
		if (rc == 0 && q2_is_meta(q, c))
			return q2_fail(q, -EIO, "metadata cluster %llu has refcount 0",
				       (unsigned long long)c);
		run = rc ? 0 : run + 1;
		if (run == n) {
			*start = c + 1 - n;
			return 0;
		}
	}
}

int q2_alloc(struct qcow2 *q, uint64_t n, uint64_t *offset)
{
	if (q->refcount_bits != 16)
		return q2_fail(q, -ENOTSUP, "allocation needs 16-bit refcounts");
	for (;;) {
		uint64_t s = 0;
		int r = find_free_run(q, n, &s);
		if (r < 0)
			return r;
		bool covered = true;
		for (uint64_t c = s; c < s + n && covered; c++) {
			if (rb_offset_of(q, c))
				continue;
			covered = false;
			if ((r = new_refblock(q, c)) < 0)
				return r;
		}
		if (!covered)
			continue; /* the run changed; search again */
		for (uint64_t c = s; c < s + n; c++)
			if ((r = refcount_change(q, c, 1)) < 0)
				return r;
		if (s == q->free_hint || n == 1)
			q->free_hint = s + n;
		if (s + n > q->alloc_end)
			q->alloc_end = s + n;
		*offset = s << q->cluster_bits;
		return 0;
	}
}

/* Sizes the new table and counts the refcount blocks needed for the
 * area [start, start + t + k) it and they occupy. */
static void plan_reftable(const struct qcow2 *q, uint64_t need_idx, uint64_t start,
			  uint64_t *t_out, uint64_t *k_out)
{
	uint64_t per = q->cluster_size / 8;
	uint64_t want = need_idx + 1 > 2 * q->reftable_entries ? need_idx + 1 : 2 * q->reftable_entries;
	uint64_t t = q2_div_round_up(want, per), k = 0;
	for (;;) {
		uint64_t end = start + t + k, nk = 0, last_rt = (end - 1) / q->rb_entries;
		for (uint64_t rt = start / q->rb_entries; rt <= last_rt; rt++)
			if (rt >= q->reftable_entries || q->reftable[rt] == 0)
				nk++;
		uint64_t nt = q2_div_round_up(last_rt + 1 > want ? last_rt + 1 : want, per);
		if (nk == k && nt == t)
			break;
		k = nk > k ? nk : k;
		t = nt > t ? nt : t;
	}
	*t_out = t;
	*k_out = k;
}

static int write_new_reftable(struct qcow2 *q, uint64_t *tab, uint64_t entries,
			      uint64_t off)
{
	uint8_t *be = malloc(entries * 8);
	if (!be)
		return q2_fail(q, -ENOMEM, "out of memory");
	for (uint64_t i = 0; i < entries; i++)
		q2_put_be64(be + i * 8, tab[i]);
	int r = q2_pwrite(q, be, entries * 8, off, "refcount table");
	free(be);
	return r;
}

/* Count every cluster of the area, in new blocks (written whole here)
 * or in existing ones (written back by the barrier). */
static int count_area(struct qcow2 *q, uint64_t *tab, uint64_t start, uint64_t end)
{
	uint16_t *blk = calloc(1, q->cluster_size);
	if (!blk)
		return q2_fail(q, -ENOMEM, "out of memory");
	int r = 0;
	for (uint64_t rt = start / q->rb_entries; r == 0 && rt <= (end - 1) / q->rb_entries; rt++) {
		uint64_t lo = rt * q->rb_entries, hi = lo + q->rb_entries;
		lo = lo < start ? start : lo;
		hi = hi > end ? end : hi;
		bool existing = rt < q->reftable_entries && q->reftable[rt];
		if (existing) {
			for (uint64_t c = lo; c < hi && r == 0; c++)
				r = refcount_change(q, c, 1);
			continue;
		}
		memset(blk, 0, q->cluster_size);
		for (uint64_t c = lo; c < hi; c++)
			q2_put_be16(&blk[c % q->rb_entries], 1);
		r = q2_pwrite(q, blk, q->cluster_size, tab[rt], "refcount block");
	}
	free(blk);
	return r;
}

/* A bigger refcount table at the end of the image, with the refcount
 * blocks that count it; the header switches to it in one sector write. */
static int grow_reftable(struct qcow2 *q, uint64_t need_idx)
{
	uint64_t start = q2_div_round_up(q->file_size, q->cluster_size);
	if (q->alloc_end > start)
		start = q->alloc_end;
	uint64_t t, k;
	plan_reftable(q, need_idx, start, &t, &k);
	if (t * q->cluster_size > QCOW2_MAX_REFTABLE_BYTES)
		return q2_fail(q, -EFBIG, "refcount table would exceed %u bytes",
			       QCOW2_MAX_REFTABLE_BYTES);
	uint64_t entries = t * q->cluster_size / 8, end = start + t + k;
	uint64_t *tab = calloc(entries, 8);
	if (!tab)
		return q2_fail(q, -ENOMEM, "out of memory");
	memcpy(tab, q->reftable, q->reftable_entries * 8);
	uint64_t next = start + t;
	for (uint64_t rt = start / q->rb_entries; rt <= (end - 1) / q->rb_entries; rt++)
		if (rt >= q->reftable_entries || q->reftable[rt] == 0)
			tab[rt] = (next++) << q->cluster_bits;
	uint64_t off = start << q->cluster_bits;
	int r = count_area(q, tab, start, end);
	if (r == 0)
		r = write_new_reftable(q, tab, entries, off);
	if (r == 0)
		r = q2_barrier(q);
	uint8_t hdr[12];
	q2_put_be64(hdr, off);
	q2_put_be32(hdr + 8, (uint32_t)t);
	if (r == 0)
		r = q2_pwrite(q, hdr, sizeof(hdr), QH_REFTABLE, "header");
	if (r == 0)
		r = q2_barrier(q);
	if (r < 0) {
		free(tab);
		return r;
	}
	for (uint64_t c = start + t; c < end && r == 0; c++)
		r = q2_meta_add(q, c);
	uint64_t old_off = q->reftable_offset, old_n = q->reftable_clusters;
	free(q->reftable);
	q->reftable = tab;
	q->reftable_entries = entries;
	q->reftable_offset = off;
	q->reftable_clusters = (uint32_t)t;
	q->alloc_end = end;
	for (uint64_t i = 0; i < old_n && r == 0; i++)
		r = q2_free_cluster(q, old_off + i * q->cluster_size);
	return r;
}
