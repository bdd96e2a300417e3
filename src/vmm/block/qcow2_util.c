/* qcow2: error recording, bounded I/O on the image file, byte order. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "qcow2_internal.h"

int q2_fail(struct qcow2 *q, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char msg[200];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(q->err, sizeof(q->err), "%s: %s", q->path ? q->path : "qcow2", msg);
	return err < 0 ? err : -err;
}

int q2_pread(struct qcow2 *q, void *buf, size_t len, uint64_t off, const char *what)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(q->fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return q2_fail(q, -errno, "reading %s at %llu: %s", what,
				       (unsigned long long)off, strerror(errno));
		if (n == 0) /* past the end: reads as zeros, as in a sparse file */
			break;
		done += (size_t)n;
	}
	memset((char *)buf + done, 0, len - done);
	return 0;
}

int q2_pwrite(struct qcow2 *q, const void *buf, size_t len, uint64_t off, const char *what)
{
	size_t done = 0;
	q->unsynced = true;
	while (done < len) {
		ssize_t n = pwrite(q->fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return q2_fail(q, n < 0 ? -errno : -EIO, "writing %s at %llu: %s", what,
				       (unsigned long long)off, n < 0 ? strerror(errno) : "short write");
		done += (size_t)n;
	}
	if (off + len > q->file_size)
		q->file_size = off + len;
	return 0;
}

int q2_sync(struct qcow2 *q)
{
	if (fdatasync(q->fd) < 0)
		return q2_fail(q, -errno, "flush: %s", strerror(errno));
	q->unsynced = false;
	return 0;
}

uint64_t q2_be64(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | b[i];
	return v;
}

uint32_t q2_be32(const void *p)
{
	const uint8_t *b = p;
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

uint16_t q2_be16(const void *p)
{
	const uint8_t *b = p;
	return (uint16_t)(b[0] << 8 | b[1]);
}

void q2_put_be64(void *p, uint64_t v)
{
	uint8_t *b = p;
	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}

void q2_put_be32(void *p, uint32_t v)
{
	uint8_t *b = p;
	for (int i = 3; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
}

void q2_put_be16(void *p, uint16_t v)
{
	uint8_t *b = p;
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

uint64_t q2_div_round_up(uint64_t a, uint64_t b)
{
	return a / b + (a % b != 0);
}
