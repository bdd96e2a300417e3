/* qcow2: the backing chain below an image. Bases are opened read-only;
 * a chain that comes back to an image already in it, or deeper than
 * QCOW2_MAX_CHAIN, is refused. Raw bases are never probed for a format
 * beyond the qcow2 magic, and only because they are read-only. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow2_internal.h"

static int backing_path(struct qcow2 *q, char *out, size_t len)
{
	int n;
	if (q->backing_name[0] == '/') {
		n = snprintf(out, len, "%s", q->backing_name);
	} else {
		char *copy = strdup(q->path);
		if (!copy)
			return q2_fail(q, -ENOMEM, "out of memory");
		n = snprintf(out, len, "%s/%s", dirname(copy), q->backing_name);
		free(copy);
	}
	if (n < 0 || (size_t)n >= len)
		return q2_fail(q, -ENAMETOOLONG, "backing file path is too long");
	return 0;
}

static int probe_format(struct qcow2 *q, int fd, bool *is_qcow2)
{
	uint8_t magic[4] = {0};
	ssize_t n = pread(fd, magic, 4, 0);
	if (n < 0)
		return q2_fail(q, -errno, "reading backing file: %s", strerror(errno));
	*is_qcow2 = n == 4 && q2_be32(magic) == QCOW2_MAGIC;
	return 0;
}

static int open_raw_base(struct qcow2 *q, int fd)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return q2_fail(q, -errno, "backing file: %s", strerror(errno));
	q->backing_raw_fd = fd;
	q->backing_raw_size = (uint64_t)st.st_size;
	return 0;
}

int q2_backing_open(struct qcow2 *q, int flags, struct q2_ident *ids, unsigned depth)
{
	if (!q->backing_name)
		return 0;
	if (flags & QCOW2_OPEN_NO_BACKING)
		return q2_fail(q, -EPERM, "image names a backing file, not allowed here");
	if (depth + 1 >= QCOW2_MAX_CHAIN)
		return q2_fail(q, -ELOOP, "backing chain deeper than %d", QCOW2_MAX_CHAIN);
	char path[4096];
	int r = backing_path(q, path, sizeof(path));
	if (r < 0)
		return r;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return q2_fail(q, -errno, "backing file %s: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
		close(fd);
		return q2_fail(q, -EINVAL, "backing file %s is not a file", path);
	}
	for (unsigned i = 0; i <= depth; i++)
		if (ids[i].dev == st.st_dev && ids[i].ino == st.st_ino) {
			close(fd);
			return q2_fail(q, -ELOOP, "backing chain loops back to %s", path);
		}
	bool is_qcow2 = false;
	const char *fmt = q->backing_fmt;
	if (fmt && strcmp(fmt, "raw") && strcmp(fmt, "qcow2")) {
		close(fd);
		return q2_fail(q, -ENOTSUP, "backing format %s is not supported", fmt);
	}
	if (fmt)
		is_qcow2 = strcmp(fmt, "qcow2") == 0;
	else if ((r = probe_format(q, fd, &is_qcow2)) < 0) {
		close(fd);
		return r;
	}
	if (!is_qcow2)
		return open_raw_base(q, fd);
	ids[depth + 1] = (struct q2_ident){st.st_dev, st.st_ino};
	char err[256];
	r = q2_open_chain(path, fd, 0, ids, depth + 1, &q->backing, err, sizeof(err));
	close(fd);
	if (r < 0)
		return q2_fail(q, r, "backing file: %s", err);
	return 0;
}

int q2_backing_read(struct qcow2 *q, void *buf, uint64_t off, size_t len)
{
	uint64_t have = 0;
	if (q->backing)
		have = q->backing->size;
	else if (q->backing_raw_fd >= 0)
		have = q->backing_raw_size;
	size_t n = off >= have ? 0 : (have - off < len ? (size_t)(have - off) : len);
	memset((char *)buf + n, 0, len - n);
	if (n == 0)
		return 0;
	if (q->backing) {
		int r = qcow2_read(q->backing, buf, off, n);
		if (r < 0)
			q2_fail(q, r, "%s", q->backing->err);
		return r;
	}
	size_t done = 0;
	while (done < n) {
		ssize_t got = pread(q->backing_raw_fd, (char *)buf + done, n - done,
				    (off_t)(off + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return q2_fail(q, -errno, "reading backing file: %s", strerror(errno));
		if (got == 0) {
			memset((char *)buf + done, 0, n - done);
			break;
		}
		done += (size_t)got;
	}
	return 0;
}

void q2_backing_close(struct qcow2 *q)
{
	if (q->backing)
		qcow2_close(q->backing);
	q->backing = NULL;
	if (q->backing_raw_fd >= 0)
		close(q->backing_raw_fd);
	q->backing_raw_fd = -1;
}
