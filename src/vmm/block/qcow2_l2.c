/* qcow2: the L1 table (held whole in memory, written through) and a small
 * LRU cache of L2 tables written back: a changed table goes to disk only
 * at q2_l2_commit (guest flush, pause, before freeing clusters, close) or
 * eviction, and always after a barrier, so the data and refcounts its new
 * entries point at are durable before they are referenced. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2_internal.h"

int q2_l1_load(struct qcow2 *q)
{
	size_t n = q->l1_size ? q->l1_size : 1;
	q->l1 = calloc(n, sizeof(uint64_t));
	if (!q->l1)
		return q2_fail(q, -ENOMEM, "out of memory for the L1 table");
	if (q->l1_size == 0)
		return 0;
	int r = q2_pread(q, q->l1, (size_t)q->l1_size * 8, q->l1_offset, "L1 table");
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < q->l1_size; i++)
		q->l1[i] = q2_be64(&q->l1[i]);
	return 0;
}

static int l2_write(struct qcow2 *q, struct qcow2_table_slot *s)
{
	uint64_t *be = malloc(q->cluster_size);
	if (!be)
		return q2_fail(q, -ENOMEM, "out of memory");
	for (uint32_t i = 0; i < q->l2_entries; i++)
		q2_put_be64(&be[i], s->l2[i]);
	int r = q2_pwrite(q, be, q->cluster_size, s->offset, "L2 table");
	free(be);
	if (r == 0)
		s->dirty = false;
	return r;
}

/* Barrier, then every changed L2 table. */
int q2_l2_commit(struct qcow2 *q)
{
	bool any = false;
	for (int i = 0; i < QCOW2_L2_CACHE; i++)
		any |= q->l2c[i].offset && q->l2c[i].dirty;
	if (!any)
		return 0;
	int r = q2_barrier(q);
	for (int i = 0; i < QCOW2_L2_CACHE && r == 0; i++)
		if (q->l2c[i].offset && q->l2c[i].dirty)
			r = l2_write(q, &q->l2c[i]);
	return r;
}

static int l2_slot_for(struct qcow2 *q, uint64_t off, struct qcow2_table_slot **out)
{
	struct qcow2_table_slot *victim = &q->l2c[0];
	for (int i = 0; i < QCOW2_L2_CACHE; i++) {
		struct qcow2_table_slot *s = &q->l2c[i];
		if (s->offset == off) {
			*out = s;
			return 0;
		}
		if (s->used < victim->used)
			victim = s;
	}
	if (victim->offset && victim->dirty) {
		int r = q2_barrier(q);
		if (r == 0)
			r = l2_write(q, victim);
		if (r < 0)
			return r;
	}
	victim->offset = 0;
	*out = victim;
	return 0;
}

int q2_l2_table(struct qcow2 *q, uint64_t l2_offset, uint64_t **table)
{
	struct qcow2_table_slot *s;
	int r = l2_slot_for(q, l2_offset, &s);
	if (r < 0)
		return r;
	s->used = ++q->stamp;
	if (s->offset == l2_offset) {
		*table = s->l2;
		return 0;
	}
	if (!s->l2 && !(s->l2 = malloc(q->cluster_size)))
		return q2_fail(q, -ENOMEM, "out of memory for the L2 cache");
	r = q2_pread(q, s->l2, q->cluster_size, l2_offset, "L2 table");
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < q->l2_entries; i++)
		s->l2[i] = q2_be64(&s->l2[i]);
	s->offset = l2_offset;
	s->dirty = false;
	*table = s->l2;
	return 0;
}

int q2_l2_get(struct qcow2 *q, uint64_t gc, uint64_t *entry)
{
	uint64_t l1i = gc / q->l2_entries;
	*entry = 0;
	if (l1i >= q->l1_size)
		return q2_fail(q, -EIO, "guest cluster %llu beyond the L1 table",
			       (unsigned long long)gc);
	uint64_t l2off = q->l1[l1i] & QCOW2_OFFSET_MASK;
	if (!l2off)
		return 0;
	uint64_t *t;
	int r = q2_l2_table(q, l2off, &t);
	if (r < 0)
		return r;
	*entry = t[gc % q->l2_entries];
	return 0;
}

int q2_l2_set(struct qcow2 *q, uint64_t gc, uint64_t entry)
{
	uint64_t l2off = q->l1[gc / q->l2_entries] & QCOW2_OFFSET_MASK;
	uint64_t *t;
	int r = q2_l2_table(q, l2off, &t);
	if (r < 0)
		return r;
	t[gc % q->l2_entries] = entry;
	for (int i = 0; i < QCOW2_L2_CACHE; i++)
		if (q->l2c[i].offset == l2off)
			q->l2c[i].dirty = true;
	return 0;
}

int q2_l1_set(struct qcow2 *q, uint32_t idx, uint64_t entry)
{
	uint8_t be[8];
	q2_put_be64(be, entry);
	int r = q2_pwrite(q, be, 8, q->l1_offset + (uint64_t)idx * 8, "L1 entry");
	if (r == 0)
		q->l1[idx] = entry;
	return r;
}

/* A bigger L1 table: written whole elsewhere, then the header's two
 * L1 fields (12 adjacent bytes, one sector) switched, then the old table
 * freed. A crash in between leaves the old table or leaks the new one. */
int q2_l1_grow(struct qcow2 *q, uint32_t new_size)
{
	if (new_size <= q->l1_size)
		return 0;
	if ((uint64_t)new_size * 8 > QCOW2_MAX_L1_BYTES)
		return q2_fail(q, -EFBIG, "new size needs an L1 table beyond %u bytes",
			       QCOW2_MAX_L1_BYTES);
	uint64_t bytes = (uint64_t)new_size * 8;
	uint64_t nclus = q2_div_round_up(bytes, q->cluster_size);
	uint64_t *nl1 = calloc(nclus * q->cluster_size / 8, 8);
	uint8_t *be = calloc(nclus, q->cluster_size);
	if (!nl1 || !be) {
		free(nl1);
		free(be);
		return q2_fail(q, -ENOMEM, "out of memory");
	}
	memcpy(nl1, q->l1, (size_t)q->l1_size * 8);
	for (uint32_t i = 0; i < new_size; i++)
		q2_put_be64(be + (size_t)i * 8, nl1[i]);
	uint64_t off, old_off = q->l1_offset;
	uint64_t old_n = q2_div_round_up((uint64_t)q->l1_size * 8, q->cluster_size);
	int r = q2_alloc(q, nclus, &off);
	if (r == 0)
		r = q2_pwrite(q, be, nclus * q->cluster_size, off, "L1 table");
	if (r == 0)
		r = q2_barrier(q);
	uint8_t hdr[12];
	q2_put_be32(hdr, new_size);
	q2_put_be64(hdr + 4, off);
	if (r == 0)
		r = q2_pwrite(q, hdr, sizeof(hdr), QH_L1, "header");
	if (r == 0)
		r = q2_barrier(q);
	free(be);
	if (r < 0) {
		free(nl1);
		return r;
	}
	free(q->l1);
	q->l1 = nl1;
	q->l1_size = new_size;
	q->l1_offset = off;
	for (uint64_t i = 0; old_off && i < old_n && r == 0; i++)
		r = q2_free_cluster(q, old_off + i * q->cluster_size);
	return r;
}
