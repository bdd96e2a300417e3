/* qcow2: consistency check. Counts every reference the metadata makes to
 * each host cluster and compares with the stored refcounts: more stored
 * than used is a leak (harmless), fewer is corruption. Read only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2_internal.h"

struct counter {
	struct qcow2 *q;
	struct qcow2_check *res;
	uint32_t *refs;
	uint64_t n;
};

static void problem(struct counter *k, const char *fmt, unsigned long long v)
{
	k->res->corruptions++;
	if (!k->res->first_problem[0])
		snprintf(k->res->first_problem, sizeof(k->res->first_problem), fmt, v);
}

static void count_range(struct counter *k, uint64_t off, uint64_t len, const char *what)
{
	uint64_t first = off >> k->q->cluster_bits;
	uint64_t last = (off + len - 1) >> k->q->cluster_bits;
	for (uint64_t c = first; c <= last; c++) {
		if (c >= k->n) {
			k->res->corruptions++;
			if (!k->res->first_problem[0])
				snprintf(k->res->first_problem, sizeof(k->res->first_problem),
					 "%s at %llu is outside the image", what,
					 (unsigned long long)off);
			return;
		}
		k->refs[c]++;
	}
}

static void count_l2_entry(struct counter *k, uint64_t e)
{
	struct qcow2 *q = k->q;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t off, len;
		q2_compressed_span(q, e, &off, &len);
		k->res->compressed++;
		k->res->allocated++;
		count_range(k, off, len, "compressed cluster");
		return;
	}
	uint64_t off = e & QCOW2_OFFSET_MASK;
	if (!off)
		return;
	if (off & (q->cluster_size - 1)) {
		problem(k, "data cluster %llu not aligned", (unsigned long long)off);
		return;
	}
	if (!(e & QCOW2_OFLAG_ZERO) || q->version < 3)
		k->res->allocated++;
	count_range(k, off, q->cluster_size, "data cluster");
}

static int count_l2(struct counter *k, uint64_t l2off)
{
	uint64_t *t;
	int r = q2_l2_table(k->q, l2off, &t);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < k->q->l2_entries; i++)
		count_l2_entry(k, t[i]);
	return 0;
}

static int count_all(struct counter *k)
{
	struct qcow2 *q = k->q;
	count_range(k, 0, q->cluster_size, "header");
	if (q->l1_size)
		count_range(k, q->l1_offset, (uint64_t)q->l1_size * 8, "L1 table");
	count_range(k, q->reftable_offset, (uint64_t)q->reftable_clusters * q->cluster_size,
		    "refcount table");
	for (uint64_t i = 0; i < q->reftable_entries; i++)
		if (q->reftable[i])
			count_range(k, q->reftable[i], q->cluster_size, "refcount block");
	for (uint32_t i = 0; i < q->l1_size; i++) {
		uint64_t l2 = q->l1[i] & QCOW2_OFFSET_MASK;
		if (!l2)
			continue;
		count_range(k, l2, q->cluster_size, "L2 table");
		int r = count_l2(k, l2);
		if (r < 0)
			return r;
	}
	return 0;
}

static int compare(struct counter *k)
{
	for (uint64_t c = 0; c < k->n; c++) {
		uint64_t stored;
		int r = q2_refcount_get(k->q, c, &stored);
		if (r < 0)
			return r;
		if (stored > k->refs[c]) {
			k->res->leaks++;
		} else if (stored < k->refs[c]) {
			k->res->corruptions++;
			if (!k->res->first_problem[0])
				snprintf(k->res->first_problem, sizeof(k->res->first_problem),
					 "cluster %llu: refcount %llu but %u references",
					 (unsigned long long)c, (unsigned long long)stored, k->refs[c]);
		}
	}
	return 0;
}

int qcow2_check(struct qcow2 *q, struct qcow2_check *res)
{
	memset(res, 0, sizeof(*res));
	if (q->refcount_bits != 16)
		return q2_fail(q, -ENOTSUP, "checking needs 16-bit refcounts");
	int r = q2_refcount_writeback(q);
	if (r < 0)
		return r;
	struct counter k = {q, res, NULL, q2_div_round_up(q->file_size, q->cluster_size)};
	if (q->alloc_end > k.n)
		k.n = q->alloc_end;
	res->file_clusters = k.n;
	k.refs = calloc(k.n ? k.n : 1, sizeof(uint32_t));
	if (!k.refs)
		return q2_fail(q, -ENOMEM, "out of memory for %llu clusters",
			       (unsigned long long)k.n);
	r = count_all(&k);
	if (r == 0)
		r = compare(&k);
	free(k.refs);
	return r;
}
