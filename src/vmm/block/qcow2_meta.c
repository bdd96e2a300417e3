/* qcow2: which host clusters hold metadata. A hostile image can point
 * an L2 entry at its own L1 table or refcount block, or leave a
 * metadata cluster with refcount 0 for the allocator to hand out; every
 * data access and every allocation is checked against this set. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2_internal.h"

static size_t meta_lower_bound(const struct qcow2 *q, uint64_t c)
{
	size_t lo = 0, hi = q->nmeta;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (q->meta[mid] < c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

bool q2_meta_has(const struct qcow2 *q, uint64_t cluster)
{
	size_t i = meta_lower_bound(q, cluster);
	return i < q->nmeta && q->meta[i] == cluster;
}

static int push(struct qcow2 *q, uint64_t c)
{
	if (q->nmeta == q->meta_cap) {
		size_t cap = q->meta_cap ? q->meta_cap * 2 : 64;
		uint64_t *n = realloc(q->meta, cap * sizeof(*n));
		if (!n)
			return q2_fail(q, -ENOMEM, "out of memory");
		q->meta = n;
		q->meta_cap = cap;
	}
	q->meta[q->nmeta++] = c;
	return 0;
}

/* Adds a cluster; a cluster already present is two tables in one place. */
int q2_meta_add(struct qcow2 *q, uint64_t cluster)
{
	size_t i = meta_lower_bound(q, cluster);
	if (i < q->nmeta && q->meta[i] == cluster)
		return q2_fail(q, -EINVAL, "metadata tables overlap at cluster %llu",
			       (unsigned long long)cluster);
	int r = push(q, cluster); /* grows the array; then moved into place */
	if (r < 0)
		return r;
	memmove(q->meta + i + 1, q->meta + i, (q->nmeta - 1 - i) * sizeof(*q->meta));
	q->meta[i] = cluster;
	return 0;
}

void q2_meta_remove(struct qcow2 *q, uint64_t cluster)
{
	size_t i = meta_lower_bound(q, cluster);
	if (i >= q->nmeta || q->meta[i] != cluster)
		return;
	memmove(q->meta + i, q->meta + i + 1, (q->nmeta - i - 1) * sizeof(*q->meta));
	q->nmeta--;
}

/* Header cluster, L1 table and refcount table: fixed ranges. */
static bool in_fixed_meta(const struct qcow2 *q, uint64_t c)
{
	uint64_t l1_first = q->l1_offset >> q->cluster_bits;
	uint64_t l1_n = q2_div_round_up((uint64_t)q->l1_size * 8, q->cluster_size);
	uint64_t rt_first = q->reftable_offset >> q->cluster_bits;
	if (c == 0)
		return true;
	if (q->l1_size && c >= l1_first && c < l1_first + l1_n)
		return true;
	return c >= rt_first && c < rt_first + q->reftable_clusters;
}

bool q2_is_meta(const struct qcow2 *q, uint64_t c)
{
	return in_fixed_meta(q, c) || q2_meta_has(q, c);
}

int q2_check_data_range(struct qcow2 *q, uint64_t off, uint64_t len, const char *what)
{
	if (off >= q->file_size || len > q->file_size + q->cluster_size - off)
		return q2_fail(q, -EIO, "%s at %llu points outside the image", what,
			       (unsigned long long)off);
	uint64_t first = off >> q->cluster_bits;
	uint64_t last = (off + len - 1) >> q->cluster_bits;
	for (uint64_t c = first; c <= last; c++)
		if (q2_is_meta(q, c))
			return q2_fail(q, -EIO, "%s at %llu overlaps metadata", what,
				       (unsigned long long)off);
	return 0;
}

/* A table pointer read from L1 or the refcount table. */
static int add_table(struct qcow2 *q, uint64_t off, const char *what)
{
	if (off & (q->cluster_size - 1))
		return q2_fail(q, -EIO, "%s offset %llu is not cluster aligned", what,
			       (unsigned long long)off);
	if (off + q->cluster_size > q->file_size)
		return q2_fail(q, -EIO, "%s at %llu points outside the image", what,
			       (unsigned long long)off);
	uint64_t c = off >> q->cluster_bits;
	if (in_fixed_meta(q, c))
		return q2_fail(q, -EIO, "%s at %llu overlaps the header or a top table", what,
			       (unsigned long long)off);
	return push(q, c);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* All tables at open: collected, then sorted once (a hostile image's
 * entries in falling order must not cost a sorted insert each). */
int q2_meta_build(struct qcow2 *q)
{
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t e = q->l1[i];
		if (e & QCOW2_L1_RESERVED_MASK)
			return q2_fail(q, -EIO, "L1 entry %u has reserved bits set", i);
		uint64_t off = e & QCOW2_OFFSET_MASK;
		if (off) {
			int r = add_table(q, off, "L2 table");
			if (r < 0)
				return r;
		}
	}
	for (uint64_t i = 0; q->reftable && i < q->reftable_entries; i++) {
		uint64_t e = q->reftable[i];
		if (e & QCOW2_REFT_RESERVED_MASK)
			return q2_fail(q, -EIO, "refcount table entry %llu has reserved bits set",
				       (unsigned long long)i);
		if (e) {
			int r = add_table(q, e, "refcount block");
			if (r < 0)
				return r;
		}
	}
	if (q->nmeta)
		qsort(q->meta, q->nmeta, sizeof(*q->meta), cmp_u64);
	for (size_t i = 1; i < q->nmeta; i++)
		if (q->meta[i] == q->meta[i - 1])
			return q2_fail(q, -EINVAL, "metadata tables overlap at cluster %llu",
				       (unsigned long long)q->meta[i]);
	return 0;
}
