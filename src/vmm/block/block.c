/* The block layer's front (block.h): the driver table, opening an image by
 * format name or by probing, and the checks every request passes before a
 * backend sees it. */
#include "block.h"

#include "blk_dirty.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* raw last: it is what an image is when nothing else recognizes it. */
static const struct blk_driver *const drivers[] = {
	&blk_driver_qcow2,
	&blk_driver_raw,
};

#define NDRIVERS (sizeof(drivers) / sizeof(drivers[0]))

static const struct blk_driver *by_name(const char *name)
{
	for (size_t i = 0; i < NDRIVERS; i++)
		if (strcmp(drivers[i]->name, name) == 0)
			return drivers[i];
	return NULL;
}

static const struct blk_driver *probe(const char *path, char *err, size_t errlen)
{
	uint8_t head[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
		return NULL;
	}
	ssize_t n = pread(fd, head, sizeof(head), 0);
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "disk %s: %s", path, strerror(e));
		return NULL;
	}
	for (size_t i = 0; i < NDRIVERS; i++)
		if (drivers[i]->probe && drivers[i]->probe(head, (size_t)n))
			return drivers[i];
	return &blk_driver_raw;
}

int blk_open(const struct blk_open_opts *o, struct blk_backend **out, char *err, size_t errlen)
{
	const struct blk_driver *d;

	if (o->format) {
		d = by_name(o->format);
		if (!d) {
			snprintf(err, errlen, "disk %s: unknown format '%s'", o->path, o->format);
			return -1;
		}
	} else {
		d = probe(o->path, err, errlen);
		if (!d)
			return -1;
	}
	struct blk_backend *b = NULL;
	if (d->open(o->path, o->readonly, &b, err, errlen) < 0)
		return -1;
	b->driver = d;
	if (!o->lock_later && blk_lock(b, true, o->path, err, errlen) < 0) {
		b->ops->close(b);
		return -1;
	}
	int r = pthread_mutex_init(&b->lock, NULL);
	if (r) {
		snprintf(err, errlen, "disk %s: %s", o->path, strerror(r));
		b->ops->close(b);
		return -1;
	}
	*out = b;
	return 0;
}

int blk_lock(struct blk_backend *b, bool on, const char *path, char *err, size_t errlen)
{
	if (b->locked == on)
		return 0;
	int how = !on ? LOCK_UN : b->readonly ? LOCK_SH : LOCK_EX;
	if (flock(b->lock_fd, how | LOCK_NB) < 0) {
		snprintf(err, errlen, "disk %s: %s", path,
			 errno == EWOULDBLOCK ? "in use by another process" : strerror(errno));
		return -1;
	}
	b->locked = on;
	return 0;
}

void blk_close(struct blk_backend *b)
{
	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	blk_dirty_free(b->dirty);
	b->ops->close(b);
}

int blk_quiesce(struct blk_backend *b)
{
	if (!b || !b->ops->quiesce)
		return 0;
	pthread_mutex_lock(&b->lock);
	int r = b->ops->quiesce(b);
	pthread_mutex_unlock(&b->lock);
	return r;
}

int blk_grow(struct blk_backend *b, uint64_t new_size, char *err, size_t errlen)
{
	if (b->readonly) {
		snprintf(err, errlen, "the image is read-only");
		return -EROFS;
	}
	if (new_size % BLK_SECTOR) {
		snprintf(err, errlen, "size %llu is not a multiple of %u bytes",
			 (unsigned long long)new_size, BLK_SECTOR);
		return -EINVAL;
	}
	if (new_size < b->size) {
		snprintf(err, errlen, "shrinking from %llu to %llu bytes is not supported",
			 (unsigned long long)b->size, (unsigned long long)new_size);
		return -ENOTSUP;
	}
	if (new_size > BLK_MAX_SIZE) {
		snprintf(err, errlen, "size %llu is above the limit of %llu bytes",
			 (unsigned long long)new_size, BLK_MAX_SIZE);
		return -EFBIG;
	}
	if (new_size == b->size)
		return 0;
	if (!b->ops->grow) {
		snprintf(err, errlen, "the %s format cannot grow", b->driver ? b->driver->name : "image's");
		return -ENOTSUP;
	}
	pthread_mutex_lock(&b->lock);
	int r = b->ops->grow(b, new_size, err, errlen);
	if (r == 0)
		b->size = new_size;
	pthread_mutex_unlock(&b->lock);
	return r;
}

static int check(const struct blk_backend *b, const struct blk_req *req)
{
	if (req->op > BLK_OP_WRITE_ZEROES)
		return -EOPNOTSUPP;
	/* A flush of a read-only image has nothing to do, and succeeds (a
	 * guest may flush every disk it has). */
	if (req->op == BLK_OP_FLUSH)
		return 0;
	if (req->op != BLK_OP_READ && b->readonly)
		return -EROFS;
	if ((req->op == BLK_OP_DISCARD || req->op == BLK_OP_WRITE_ZEROES) &&
	    !(b->ops->caps & BLK_CAP_DISCARD))
		return -EOPNOTSUPP;
	if (req->offset > b->size || req->len > b->size - req->offset)
		return -EINVAL;
	return 0;
}

/* A tracked write's completion: the bitmap first, then the caller, which
 * may reuse req at once. Failed writes mark too: part may have landed. */
static void tracked_done(struct blk_req *req, int result)
{
	blk_done_fn done = req->caller_done;
	blk_dirty_mark(__atomic_load_n(&req->tracked->dirty, __ATOMIC_ACQUIRE), req->offset, req->len);
	done(req, result);
}

static bool changes_data(enum blk_op op)
{
	return op == BLK_OP_WRITE || op == BLK_OP_DISCARD || op == BLK_OP_WRITE_ZEROES;
}

void blk_submit(struct blk_backend *b, struct blk_req *req)
{
	int r = check(b, req);

	if (r < 0) {
		req->done(req, r);
		return;
	}
	if (changes_data(req->op) && __atomic_load_n(&b->dirty, __ATOMIC_ACQUIRE)) {
		req->caller_done = req->done;
		req->tracked = b;
		req->done = tracked_done;
	}
	if (b->ops->caps & BLK_CAP_THREADSAFE) {
		b->ops->submit(b, req);
		return;
	}
	pthread_mutex_lock(&b->lock);
	b->ops->submit(b, req);
	pthread_mutex_unlock(&b->lock);
}
