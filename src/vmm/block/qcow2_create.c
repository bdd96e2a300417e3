/* qcow2: creating a new, empty version 3 image. Layout: header cluster,
 * L1 table, refcount table, then the refcount blocks counting all of
 * these; written to a new file that must not exist yet. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2_internal.h"

struct layout {
	uint64_t cs, l1_entries, l1_clusters, rt_clusters, rb_clusters, total;
};

static void plan(struct layout *l, unsigned cbits, uint64_t size)
{
	l->cs = 1ull << cbits;
	uint64_t per_l1 = (l->cs / 8) * l->cs, rbe = l->cs / 2;
	l->l1_entries = q2_div_round_up(size, per_l1);
	l->l1_clusters = q2_div_round_up(l->l1_entries * 8, l->cs);
	l->rt_clusters = 1;
	l->rb_clusters = 1;
	for (;;) {
		uint64_t total = 1 + l->l1_clusters + l->rt_clusters + l->rb_clusters;
		uint64_t rb = q2_div_round_up(total, rbe);
		uint64_t rt = q2_div_round_up(rb * 8, l->cs);
		if (rb == l->rb_clusters && rt == l->rt_clusters) {
			l->total = total;
			return;
		}
		l->rb_clusters = rb;
		l->rt_clusters = rt;
	}
}

static size_t put_header(uint8_t *h, const struct layout *l, unsigned cbits,
			 const struct qcow2_create_opts *o)
{
	q2_put_be32(h, QCOW2_MAGIC);
	q2_put_be32(h + 4, 3);
	q2_put_be32(h + 20, cbits);
	q2_put_be64(h + QH_SIZE, o->size);
	q2_put_be32(h + QH_L1, (uint32_t)l->l1_entries);
	q2_put_be64(h + QH_L1 + 4, l->cs);
	q2_put_be64(h + QH_REFTABLE, (1 + l->l1_clusters) * l->cs);
	q2_put_be32(h + QH_REFTABLE + 8, (uint32_t)l->rt_clusters);
	q2_put_be32(h + 96, 4); /* refcount order: 16 bits */
	q2_put_be32(h + 100, QH_V3_LEN);
	size_t p = QH_V3_LEN;
	if (o->backing_fmt) {
		size_t n = strlen(o->backing_fmt);
		q2_put_be32(h + p, QCOW2_EXT_BACKING_FMT);
		q2_put_be32(h + p + 4, (uint32_t)n);
		memcpy(h + p + 8, o->backing_fmt, n);
		p += 8 + ((n + 7) & ~(size_t)7);
	}
	p += 8; /* end of extensions: type 0, length 0 */
	if (o->backing) {
		size_t n = strlen(o->backing);
		q2_put_be64(h + 8, p);
		q2_put_be32(h + 16, (uint32_t)n);
		memcpy(h + p, o->backing, n);
		p += n;
	}
	return p;
}

static int check_opts(const struct qcow2_create_opts *o, unsigned cbits, char *err, size_t errlen)
{
	const char *why = NULL;
	if (cbits < QCOW2_MIN_CLUSTER_BITS || cbits > QCOW2_MAX_CLUSTER_BITS)
		why = "cluster size must be a power of two from 512 bytes to 2 MiB";
	else if (o->size > QCOW2_MAX_SIZE)
		why = "size is too large";
	else if (o->backing && (strlen(o->backing) == 0 || strlen(o->backing) > QCOW2_MAX_BACKING_NAME))
		why = "backing file name must be 1 to 1023 bytes";
	else if (o->backing_fmt && strcmp(o->backing_fmt, "raw") && strcmp(o->backing_fmt, "qcow2"))
		why = "backing format must be raw or qcow2";
	else if (o->backing_fmt && !o->backing)
		why = "backing format given without a backing file";
	if (why)
		snprintf(err, errlen, "%s", why);
	return why ? -EINVAL : 0;
}

static int write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

static int write_layout(int fd, const struct layout *l, unsigned cbits,
			const struct qcow2_create_opts *o)
{
	uint8_t *buf = calloc(l->total, l->cs);
	if (!buf)
		return -ENOMEM;
	put_header(buf, l, cbits, o);
	uint64_t rt = 1 + l->l1_clusters, rb = rt + l->rt_clusters, rbe = l->cs / 2;
	for (uint64_t i = 0; i < l->rb_clusters; i++)
		q2_put_be64(buf + rt * l->cs + i * 8, (rb + i) * l->cs);
	for (uint64_t c = 0; c < l->total; c++)
		q2_put_be16(buf + (rb + c / rbe) * l->cs + (c % rbe) * 2, 1);
	int r = write_all(fd, buf, l->total * l->cs, 0);
	free(buf);
	if (r == 0 && fdatasync(fd) < 0)
		r = -errno;
	return r;
}

int qcow2_create(const char *path, const struct qcow2_create_opts *o, char *err, size_t errlen)
{
	unsigned cbits = o->cluster_bits ? o->cluster_bits : 16;
	int r = check_opts(o, cbits, err, errlen);
	if (r < 0)
		return r;
	if (o->backing && QH_V3_LEN + 48 + strlen(o->backing) > (1u << cbits)) {
		snprintf(err, errlen, "backing file name does not fit in the header cluster");
		return -EINVAL;
	}
	struct layout l;
	plan(&l, cbits, o->size);
	if (l.l1_entries * 8 > QCOW2_MAX_L1_BYTES) {
		snprintf(err, errlen, "size needs an L1 table beyond %u bytes; use bigger clusters",
			 QCOW2_MAX_L1_BYTES);
		return -EFBIG;
	}
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	r = write_layout(fd, &l, cbits, o);
	close(fd);
	if (r < 0) {
		unlink(path);
		snprintf(err, errlen, "%s: %s", path, strerror(-r));
	}
	return r;
}
