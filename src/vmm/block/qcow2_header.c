/* qcow2: reading and validating the header and its extensions. Every
 * field that later code trusts as a size or an offset is bounded here. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qcow2_internal.h"

/* Incompatible features we implement: dirty (refused for writing) and
 * corrupt (likewise). External data files, zstd, extended L2 are not. */
#define KNOWN_INCOMPAT (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int check_fields(struct qcow2 *q, const uint8_t *h)
{
	if (q2_be32(h + 32) != 0)
		return q2_fail(q, -ENOTSUP, "encrypted images are not supported");
	if (q->size > QCOW2_MAX_SIZE)
		return q2_fail(q, -EINVAL, "virtual size %llu is too large",
			       (unsigned long long)q->size);
	if ((uint64_t)q->l1_size * 8 > QCOW2_MAX_L1_BYTES)
		return q2_fail(q, -EINVAL, "L1 table of %u entries is too large", q->l1_size);
	uint64_t per_l1 = (uint64_t)q->l2_entries * q->cluster_size;
	if (q2_div_round_up(q->size, per_l1) > q->l1_size)
		return q2_fail(q, -EINVAL, "L1 table (%u entries) too small for the virtual size",
			       q->l1_size);
	uint64_t l1_bytes = (uint64_t)q->l1_size * 8;
	uint64_t cmask = q->cluster_size - 1;
	if (q->l1_size && ((q->l1_offset & cmask) || q->l1_offset < q->cluster_size ||
			   q->l1_offset + l1_bytes > q->file_size))
		return q2_fail(q, -EINVAL, "L1 table offset %llu is invalid",
			       (unsigned long long)q->l1_offset);
	uint64_t rt_bytes = (uint64_t)q->reftable_clusters * q->cluster_size;
	if (rt_bytes > QCOW2_MAX_REFTABLE_BYTES)
		return q2_fail(q, -EINVAL, "refcount table of %u clusters is too large",
			       q->reftable_clusters);
	if (q->reftable_clusters == 0 || (q->reftable_offset & cmask) ||
	    q->reftable_offset < q->cluster_size || q->reftable_offset + rt_bytes > q->file_size)
		return q2_fail(q, -EINVAL, "refcount table offset %llu is invalid",
			       (unsigned long long)q->reftable_offset);
	if (ranges_overlap(q->l1_offset, l1_bytes, q->reftable_offset, rt_bytes))
		return q2_fail(q, -EINVAL, "L1 table and refcount table overlap");
	return 0;
}

static int check_features(struct qcow2 *q, const uint8_t *h)
{
	if (q->version < 3)
		return 0;
	if (q->incompat & ~KNOWN_INCOMPAT)
		return q2_fail(q, -ENOTSUP, "unsupported incompatible features 0x%llx",
			       (unsigned long long)(q->incompat & ~KNOWN_INCOMPAT));
	if (q->header_length > QH_V3_LEN && h[QH_V3_LEN] != 0)
		return q2_fail(q, -ENOTSUP, "compression type %u is not supported", h[QH_V3_LEN]);
	if (!q->writable)
		return 0;
	if (q->incompat & QCOW2_INCOMPAT_CORRUPT)
		return q2_fail(q, -EROFS, "image is marked corrupt; repair it first (qemu-img check -r all)");
	if (q->incompat & QCOW2_INCOMPAT_DIRTY)
		return q2_fail(q, -EROFS, "image has dirty lazy refcounts; repair it first (qemu-img check -r all)");
	return 0;
}

/* Header extensions: a list of (type, length, data padded to 8) ending
 * in type 0, all inside the first cluster. */
static int parse_extensions(struct qcow2 *q, const uint8_t *h, uint64_t start, uint64_t end)
{
	uint64_t p = start;
	while (p + 8 <= end) {
		uint32_t type = q2_be32(h + p), len = q2_be32(h + p + 4);
		p += 8;
		if (type == QCOW2_EXT_END)
			return 0;
		if (len > end - p)
			return q2_fail(q, -EINVAL, "header extension 0x%x overruns the header", type);
		if (type == QCOW2_EXT_BACKING_FMT) {
			if (len == 0 || len > 32)
				return q2_fail(q, -EINVAL, "backing format name of %u bytes", len);
			q->backing_fmt = strndup((const char *)h + p, len);
			if (!q->backing_fmt)
				return q2_fail(q, -ENOMEM, "out of memory");
		}
		p += (len + 7) & ~7ull;
	}
	return 0;
}

static int parse_backing_name(struct qcow2 *q, const uint8_t *h, uint64_t hdr_end)
{
	uint64_t off = q2_be64(h + 8);
	uint32_t len = q2_be32(h + 16);
	if (off == 0)
		return 0;
	if (len == 0 || len > QCOW2_MAX_BACKING_NAME || off < hdr_end ||
	    off + len > q->cluster_size)
		return q2_fail(q, -EINVAL, "backing file name (offset %llu, %u bytes) is invalid",
			       (unsigned long long)off, len);
	if (memchr(h + off, 0, len))
		return q2_fail(q, -EINVAL, "backing file name contains a NUL byte");
	q->backing_name = strndup((const char *)h + off, len);
	return q->backing_name ? 0 : q2_fail(q, -ENOMEM, "out of memory");
}

static int read_fixed(struct qcow2 *q, uint8_t *h)
{
	if (q->file_size < QH_V2_LEN)
		return q2_fail(q, -EINVAL, "not a qcow2 image (file too short)");
	int r = q2_pread(q, h, QH_V3_LEN, 0, "header");
	if (r < 0)
		return r;
	if (q2_be32(h) != QCOW2_MAGIC)
		return q2_fail(q, -EINVAL, "not a qcow2 image (bad magic)");
	q->version = q2_be32(h + 4);
	if (q->version != 2 && q->version != 3)
		return q2_fail(q, -ENOTSUP, "qcow2 version %u is not supported", q->version);
	q->cluster_bits = q2_be32(h + 20);
	if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return q2_fail(q, -EINVAL, "cluster bits %u out of range", q->cluster_bits);
	q->cluster_size = 1u << q->cluster_bits;
	return 0;
}

static int load_v3_fields(struct qcow2 *q, const uint8_t *h)
{
	q->refcount_bits = 16;
	q->header_length = QH_V2_LEN;
	if (q->version < 3)
		return 0;
	q->incompat = q2_be64(h + 72);
	q->compat = q2_be64(h + 80);
	q->autoclear = q2_be64(h + 88);
	uint32_t order = q2_be32(h + 96);
	q->header_length = q2_be32(h + 100);
	if (q->header_length < QH_V3_LEN || q->header_length > q->cluster_size ||
	    q->header_length % 8)
		return q2_fail(q, -EINVAL, "header length %u is invalid", q->header_length);
	if (order > 6)
		return q2_fail(q, -EINVAL, "refcount order %u is invalid", order);
	q->refcount_bits = 1u << order;
	if (q->refcount_bits != 16 && q->writable)
		return q2_fail(q, -ENOTSUP, "writing needs 16-bit refcounts (image has %u)",
			       q->refcount_bits);
	return 0;
}

int q2_header_load(struct qcow2 *q)
{
	struct stat st;
	if (fstat(q->fd, &st) < 0)
		return q2_fail(q, -errno, "stat: %s", strerror(errno));
	q->file_size = (uint64_t)st.st_size;
	uint8_t fixed[QH_V3_LEN];
	int r = read_fixed(q, fixed);
	if (r < 0)
		return r;
	uint8_t *h = malloc(q->cluster_size);
	if (!h)
		return q2_fail(q, -ENOMEM, "out of memory");
	r = q2_pread(q, h, q->cluster_size, 0, "header");
	if (r < 0)
		goto out;
	q->size = q2_be64(h + QH_SIZE);
	q->l1_size = q2_be32(h + QH_L1);
	q->l1_offset = q2_be64(h + QH_L1 + 4);
	q->reftable_offset = q2_be64(h + QH_REFTABLE);
	q->reftable_clusters = q2_be32(h + QH_REFTABLE + 8);
	q->nb_snapshots = q2_be32(h + 60);
	q->l2_entries = q->cluster_size / 8;
	r = load_v3_fields(q, h);
	if (r < 0)
		goto out;
	q->rb_entries = (uint32_t)((uint64_t)q->cluster_size * 8 / q->refcount_bits);
	if ((r = check_fields(q, h)) < 0 || (r = check_features(q, h)) < 0)
		goto out;
	if (q->writable && q->nb_snapshots)
		r = q2_fail(q, -ENOTSUP, "writing images with internal snapshots is not supported");
	if (r == 0 && q->version >= 3)
		r = parse_extensions(q, h, q->header_length, q->cluster_size);
	if (r == 0)
		r = parse_backing_name(q, h, q->header_length);
out:
	free(h);
	return r;
}

/* Autoclear bits name extensions (bitmaps, ...) a writer that does not
 * maintain them must disown before changing the image. */
int q2_header_clear_autoclear(struct qcow2 *q)
{
	if (q->version < 3 || q->autoclear == 0)
		return 0;
	uint8_t z[8] = {0};
	int r = q2_pwrite(q, z, 8, QH_AUTOCLEAR, "header");
	if (r == 0)
		q->autoclear = 0;
	return r < 0 ? r : q2_sync(q);
}
