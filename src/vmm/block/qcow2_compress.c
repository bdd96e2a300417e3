/* qcow2: compressed clusters (zlib's raw deflate with a 4 KiB window, as
 * QEMU writes them): reading, and writing them for convert's output. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "qcow2_internal.h"

/* Host byte range of a compressed cluster's data. */
int q2_compressed_span(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len)
{
	unsigned x = 62 - (q->cluster_bits - 8);
	*off = entry & ((1ull << x) - 1);
	uint64_t sectors = ((entry >> x) & ((1ull << (q->cluster_bits - 8)) - 1)) + 1;
	*len = sectors * 512 - (*off & 511);
	return 0;
}

static int inflate_cluster(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (inflateInit2(&z, -12) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)inlen;
	z.next_out = out;
	z.avail_out = (uInt)outlen;
	int ret = inflate(&z, Z_FINISH);
	bool full = z.avail_out == 0;
	inflateEnd(&z);
	/* The stored sectors may carry padding after the stream's end. */
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && full)
		return 0;
	return -EIO;
}

int q2_read_compressed(struct qcow2 *q, uint64_t entry, void *out)
{
	uint64_t off, len;
	q2_compressed_span(q, entry, &off, &len);
	/* The last compressed cluster may end before its last sector does. */
	if (off >= q->file_size)
		return q2_fail(q, -EIO, "compressed cluster at %llu points outside the image",
			       (unsigned long long)off);
	if (off + len > q->file_size)
		len = q->file_size - off;
	int r = q2_check_data_range(q, off, len, "compressed cluster");
	if (r < 0)
		return r;
	uint8_t *in = malloc(len);
	if (!in)
		return q2_fail(q, -ENOMEM, "out of memory");
	r = q2_pread(q, in, len, off, "compressed cluster");
	if (r == 0 && inflate_cluster(in, len, out, q->cluster_size) < 0)
		r = q2_fail(q, -EIO, "compressed cluster at %llu does not inflate",
			    (unsigned long long)off);
	free(in);
	return r;
}

static int deflate_cluster(const void *in, size_t len, uint8_t *out, size_t *outlen)
{
	z_stream z;
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = out;
	z.avail_out = (uInt)*outlen;
	int ret = deflate(&z, Z_FINISH);
	*outlen -= z.avail_out;
	deflateEnd(&z);
	return ret == Z_STREAM_END ? 0 : -ENOSPC; /* -ENOSPC: did not shrink */
}

/* Places len bytes in the packed compressed area: continues in the host
 * cluster of the previous one when it fits, else takes a new cluster.
 * Each host cluster is counted once per compressed cluster in it. */
static int place_compressed(struct qcow2 *q, size_t len, uint64_t *off)
{
	uint64_t cs = q->cluster_size;
	if (q->ctail && q->ctail % cs && (q->ctail % cs) + len <= cs) {
		*off = q->ctail;
		q->ctail += len;
		return q2_refcount_add(q, *off >> q->cluster_bits, 1);
	}
	int r = q2_alloc(q, 1, off);
	if (r == 0)
		q->ctail = *off + len;
	return r;
}

int qcow2_write_compressed(struct qcow2 *q, uint64_t gc, const void *data)
{
	if (!q->writable)
		return q2_fail(q, -EROFS, "image is read-only");
	if (gc >= q2_div_round_up(q->size, q->cluster_size))
		return q2_fail(q, -EINVAL, "cluster %llu beyond the virtual size",
			       (unsigned long long)gc);
	uint64_t old;
	int r = q2_l2_get(q, gc, &old);
	if (r < 0)
		return r;
	if (old & ~QCOW2_OFLAG_ZERO)
		return q2_fail(q, -EEXIST, "cluster %llu is already allocated",
			       (unsigned long long)gc);
	size_t clen = q->cluster_size - 512; /* must save at least a sector */
	uint8_t *buf = malloc(q->cluster_size);
	if (!buf)
		return q2_fail(q, -ENOMEM, "out of memory");
	if (deflate_cluster(data, q->cluster_size, buf, &clen) < 0) {
		free(buf);
		return qcow2_write(q, data, gc << q->cluster_bits, q->cluster_size);
	}
	uint64_t off;
	if ((r = q2_l2_ensure(q, gc)) == 0 && (r = place_compressed(q, clen, &off)) == 0)
		r = q2_pwrite(q, buf, clen, off, "compressed cluster");
	free(buf);
	if (r < 0)
		return r;
	unsigned x = 62 - (q->cluster_bits - 8);
	uint64_t extra = ((off + clen - 1) >> 9) - (off >> 9);
	return q2_l2_set(q, gc, QCOW2_OFLAG_COMPRESSED | extra << x | off);
}
