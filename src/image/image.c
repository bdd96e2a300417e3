/* kvz-image: raw and qcow2 images behind one set of calls. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image.h"
#include "parse.h"

bool img_parse_fmt(const char *s, enum img_fmt *f)
{
	if (!strcmp(s, "raw"))
		*f = IMG_RAW;
	else if (!strcmp(s, "qcow2"))
		*f = IMG_QCOW2;
	else
		return false;
	return true;
}

const char *img_fmt_name(enum img_fmt f)
{
	return f == IMG_QCOW2 ? "qcow2" : "raw";
}

bool img_parse_cluster_size(const char *s, unsigned *bits)
{
	uint64_t v;
	if (!kvz_parse_size(s, &v) || v < 512 || v > (2u << 20) || (v & (v - 1)))
		return false;
	for (*bits = 0; (1ull << *bits) < v; (*bits)++)
		;
	return true;
}

static int fail(struct img *im, int err, const char *path, const char *why)
{
	snprintf(im->err, sizeof(im->err), "%s: %s", path, why);
	return err;
}

static int probe(struct img *im, const char *path, int fd)
{
	unsigned char m[4] = {0};
	ssize_t n = pread(fd, m, 4, 0);
	if (n < 0)
		return fail(im, -errno, path, strerror(errno));
	im->fmt = n == 4 && m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && m[3] == 0xfb
		? IMG_QCOW2 : IMG_RAW;
	return 0;
}

int img_open(struct img *im, const char *path, const char *fmt, bool writable)
{
	memset(im, 0, sizeof(*im));
	im->fd = -1;
	im->writable = writable;
	if (fmt && !img_parse_fmt(fmt, &im->fmt))
		return fail(im, -EINVAL, fmt, "unknown format (raw or qcow2)");
	if (!fmt && writable)
		return fail(im, -EINVAL, path, "the format must be given (-f) to open it writable");
	int fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return fail(im, -errno, path, strerror(errno));
	int r = fmt ? 0 : probe(im, path, fd);
	struct stat st;
	if (r == 0 && fstat(fd, &st) < 0)
		r = fail(im, -errno, path, strerror(errno));
	if (r == 0 && !S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		r = fail(im, -EINVAL, path, "not a regular file or block device");
	if (r == 0 && im->fmt == IMG_QCOW2) {
		int flags = writable ? QCOW2_OPEN_WRITE : 0;
		r = qcow2_open(path, fd, flags, &im->q, im->err, sizeof(im->err));
		if (r == 0)
			im->size = qcow2_size(im->q);
		close(fd);
		return r;
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	im->fd = fd;
	im->size = S_ISBLK(st.st_mode) ? (uint64_t)lseek(fd, 0, SEEK_END) : (uint64_t)st.st_size;
	return 0;
}

static int raw_io(struct img *im, void *buf, uint64_t off, size_t len, bool write)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = write ? pwrite(im->fd, (char *)buf + done, len - done, (off_t)(off + done))
				  : pread(im->fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(im->err, sizeof(im->err), "%s at %llu: %s", write ? "write" : "read",
				 (unsigned long long)(off + done), strerror(errno));
			return -errno;
		}
		if (n == 0) {
			if (write)
				return -EIO;
			memset((char *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

static int q_result(struct img *im, int r)
{
	if (r < 0)
		snprintf(im->err, sizeof(im->err), "%s", qcow2_error(im->q));
	return r;
}

int img_read(struct img *im, void *buf, uint64_t off, size_t len)
{
	if (im->q)
		return q_result(im, qcow2_read(im->q, buf, off, len));
	return raw_io(im, buf, off, len, false);
}

int img_write(struct img *im, const void *buf, uint64_t off, size_t len)
{
	if (im->q)
		return q_result(im, qcow2_write(im->q, buf, off, len));
	return raw_io(im, (void *)buf, off, len, true);
}

int img_flush(struct img *im)
{
	if (im->q)
		return q_result(im, qcow2_flush(im->q));
	if (im->writable && fdatasync(im->fd) < 0) {
		snprintf(im->err, sizeof(im->err), "flush: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int img_close(struct img *im)
{
	int r = 0;
	if (im->q) {
		r = qcow2_close(im->q);
		im->q = NULL;
	}
	if (im->fd >= 0) {
		if (im->writable && fdatasync(im->fd) < 0)
			r = -errno;
		close(im->fd);
		im->fd = -1;
	}
	return r;
}

bool img_known_zero(struct img *im, uint64_t off, size_t len)
{
	if (im->q) {
		uint64_t cs = qcow2_cluster_size(im->q);
		for (uint64_t p = off - off % cs; p < off + len; p += cs) {
			enum qcow2_extent k;
			if (qcow2_extent_at(im->q, p, &k) < 0 || k != QCOW2_EXT_ZERO)
				return false;
		}
		return true;
	}
	off_t d = lseek(im->fd, (off_t)off, SEEK_DATA);
	if (d < 0)
		return errno == ENXIO; /* no data after off at all */
	return (uint64_t)d >= off + len;
}
