/* qcow2: opening (header, tables, metadata set, chain), closing, and the
 * small accessors. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2_internal.h"

static void free_image(struct qcow2 *q)
{
	q2_backing_close(q);
	for (int i = 0; i < QCOW2_L2_CACHE; i++)
		free(q->l2c[i].l2);
	for (int i = 0; i < QCOW2_RB_CACHE; i++)
		free(q->rbc[i].rb);
	if (q->fd >= 0)
		close(q->fd);
	free(q->l1);
	free(q->reftable);
	free(q->meta);
	free(q->backing_name);
	free(q->backing_fmt);
	free(q->path);
	free(q);
}

static int load_tables(struct qcow2 *q, int flags, struct q2_ident *ids, unsigned depth)
{
	int r = q2_header_load(q);
	if (r == 0)
		r = q2_l1_load(q);
	if (r == 0 && q->refcount_bits == 16)
		r = q2_refcount_load(q);
	if (r == 0)
		r = q2_meta_build(q);
	if (r == 0)
		r = q2_backing_open(q, flags, ids, depth);
	if (r == 0 && q->writable)
		r = q2_header_clear_autoclear(q);
	return r;
}

int q2_open_chain(const char *path, int fd, int flags, struct q2_ident *ids,
		  unsigned depth, struct qcow2 **out, char *err, size_t errlen)
{
	*out = NULL;
	struct qcow2 *q = calloc(1, sizeof(*q));
	if (!q) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	q->backing_raw_fd = -1;
	q->writable = flags & QCOW2_OPEN_WRITE;
	q->unordered = flags & QCOW2_OPEN_UNORDERED;
	q->depth = depth;
	q->path = strdup(path);
	int mode = (q->writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
	q->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : open(path, mode);
	int r = 0;
	if (!q->path)
		r = q2_fail(q, -ENOMEM, "out of memory");
	else if (q->fd < 0)
		r = q2_fail(q, -errno, "%s", strerror(errno));
	if (r == 0 && fd < 0) {
		struct stat st;
		if (fstat(q->fd, &st) < 0)
			r = q2_fail(q, -errno, "%s", strerror(errno));
		else
			ids[depth] = (struct q2_ident){st.st_dev, st.st_ino};
	}
	if (r == 0)
		r = load_tables(q, flags, ids, depth);
	if (r < 0) {
		snprintf(err, errlen, "%s", q->err);
		free_image(q);
		return r;
	}
	*out = q;
	return 0;
}

int qcow2_open(const char *path, int fd, int flags, struct qcow2 **out, char *err,
	       size_t errlen)
{
	struct q2_ident ids[QCOW2_MAX_CHAIN] = {{0}};
	if (fd >= 0) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			return -errno;
		}
		ids[0] = (struct q2_ident){st.st_dev, st.st_ino};
	}
	return q2_open_chain(path, fd, flags, ids, 0, out, err, errlen);
}

int qcow2_commit(struct qcow2 *q)
{
	if (!q->writable)
		return 0;
	int r = q2_l2_commit(q);
	return r < 0 ? r : q2_refcount_writeback(q);
}

int qcow2_flush(struct qcow2 *q)
{
	if (!q->writable)
		return 0;
	int r = q2_l2_commit(q);
	if (r == 0)
		r = q2_refcount_writeback(q);
	return r < 0 ? r : q2_sync(q);
}

int qcow2_close(struct qcow2 *q)
{
	if (!q)
		return 0;
	int r = qcow2_flush(q);
	free_image(q);
	return r;
}

const char *qcow2_error(const struct qcow2 *q)
{
	return q->err;
}

uint64_t qcow2_size(const struct qcow2 *q)
{
	return q->size;
}

unsigned qcow2_cluster_size(const struct qcow2 *q)
{
	return q->cluster_size;
}

int qcow2_fd(const struct qcow2 *q)
{
	return q->fd;
}

unsigned qcow2_version(const struct qcow2 *q)
{
	return q->version;
}

const char *qcow2_backing_name(const struct qcow2 *q)
{
	return q->backing_name;
}

const char *qcow2_backing_format(const struct qcow2 *q)
{
	if (q->backing)
		return "qcow2";
	return q->backing_raw_fd >= 0 ? "raw" : NULL;
}

unsigned qcow2_chain_depth(const struct qcow2 *q)
{
	unsigned d = 0;
	for (const struct qcow2 *b = q; b && (b->backing || b->backing_raw_fd >= 0); b = b->backing)
		d++;
	return d;
}
