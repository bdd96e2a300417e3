#include "ct_stream.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mig_stream.h"
#include "write_all.h"

#define CHUNK (1u << 20)

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (56 - 8 * i));
}

bool ct_image_name_ok(const char *name, size_t n)
{
	if (n == 0 || n > CT_IMAGE_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* ---- receiving ---- */

/* n bytes from sock into fd at off. */
static int receive_range(int sock, int fd, uint64_t off, uint64_t n, char *err, size_t len)
{
	char *chunk = malloc(CHUNK);
	if (!chunk) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	int rc = 0;
	for (uint64_t done = 0; rc == 0 && done < n;) {
		size_t k = n - done < CHUNK ? (size_t)(n - done) : CHUNK;
		if (mig_read_all(sock, chunk, k)) {
			snprintf(err, len, "stream cut inside a record: %s", mig_io_why());
			rc = -1;
		} else if (pwrite(fd, chunk, k, (off_t)(off + done)) != (ssize_t)k) {
			snprintf(err, len, "writing a received record: %s", strerror(errno));
			rc = -1;
		}
		done += k;
	}
	free(chunk);
	return rc;
}

static int receive_image(int sock, int dfd, uint64_t rlen, char *err, size_t len)
{
	unsigned char nl;
	char name[CT_IMAGE_NAME_MAX + 1];
	if (rlen < 1 || mig_read_all(sock, &nl, 1)) {
		snprintf(err, len, "an image record without its name");
		return -1;
	}
	if (nl == 0 || nl > CT_IMAGE_NAME_MAX || 1 + (uint64_t)nl > rlen ||
	    mig_read_all(sock, name, nl)) {
		snprintf(err, len, "an image record with a bad name length %u", nl);
		return -1;
	}
	name[nl] = 0;
	uint64_t data = rlen - 1 - nl;
	if (!ct_image_name_ok(name, nl) || strlen(name) != nl) {
		snprintf(err, len, "an image name that is not a plain file name");
		return -1;
	}
	if (data > CT_IMAGE_MAX_BYTES) {
		snprintf(err, len, "image %s of %llu bytes is over its limit", name,
			 (unsigned long long)data);
		return -1;
	}
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, len, "image %s: %s", name,
			 errno == EEXIST ? "sent twice" : strerror(errno));
		return -1;
	}
	/* No fsync: criu restore reads the images at once from the page
	 * cache, and a crash before the commit discards the move anyway;
	 * each fsync was time in the frozen window. */
	int rc = receive_range(sock, fd, 0, data, err, len);
	close(fd);
	return rc;
}

struct recv_state {
	bool seen_d, seen_c;
	uint64_t disk_size;
	unsigned images;
};

static int receive_disk_size(int sock, const struct ct_sink *s, struct recv_state *st,
			     uint64_t rlen, char *err, size_t len)
{
	unsigned char b[8];
	if (st->seen_d || rlen != 8) {
		snprintf(err, len, "a malformed or repeated disk record");
		return -1;
	}
	if (mig_read_all(sock, b, 8)) {
		snprintf(err, len, "stream cut inside a record: %s", mig_io_why());
		return -1;
	}
	st->disk_size = get_u64(b);
	if (st->disk_size == 0 || st->disk_size > s->max_disk) {
		snprintf(err, len, "a private image of %llu bytes (limit %llu)",
			 (unsigned long long)st->disk_size, (unsigned long long)s->max_disk);
		return -1;
	}
	if (ftruncate(s->disk_fd, (off_t)st->disk_size) < 0) {
		snprintf(err, len, "cannot size the private image: %s", strerror(errno));
		return -1;
	}
	st->seen_d = true;
	return 0;
}

static int receive_block(int sock, const struct ct_sink *s, const struct recv_state *st,
			 uint64_t rlen, char *err, size_t len)
{
	unsigned char b[8];
	if (!st->seen_d || rlen < 8) {
		snprintf(err, len, "a disk range before the disk or without its offset");
		return -1;
	}
	if (mig_read_all(sock, b, 8)) {
		snprintf(err, len, "stream cut inside a record: %s", mig_io_why());
		return -1;
	}
	uint64_t off = get_u64(b), n = rlen - 8;
	if (off > st->disk_size || n > st->disk_size - off) {
		snprintf(err, len, "a disk range at %llu+%llu outside the image's %llu bytes",
			 (unsigned long long)off, (unsigned long long)n,
			 (unsigned long long)st->disk_size);
		return -1;
	}
	return receive_range(sock, s->disk_fd, off, n, err, len);
}

static int receive_pages(int sock, const struct ct_sink *s, struct recv_state *st, uint64_t rlen,
			 char *err, size_t len)
{
	unsigned char k;
	if (!st->seen_d || st->seen_c || rlen != 1) {
		snprintf(err, len, "a checkpoint record out of order or malformed");
		return -1;
	}
	if (mig_read_all(sock, &k, 1)) {
		snprintf(err, len, "stream cut inside a record: %s", mig_io_why());
		return -1;
	}
	if (k > 10) {
		snprintf(err, len, "%u pre-dumps (at most 10)", k);
		return -1;
	}
	st->seen_c = true;
	/* The private area's bulk is here, the source still runs: flushed
	 * now, the fsync at the end covers only the frozen part's changes. */
	if (fsync(s->disk_fd) < 0) {
		snprintf(err, len, "fsync of the private image: %s", strerror(errno));
		return -1;
	}
	return s->pages(s->arg, sock, k, err, len);
}

/* One record of kind with body length rlen; 1 at the end. */
static int receive_one(int sock, const struct ct_sink *s, struct recv_state *st,
		       unsigned char kind, uint64_t rlen, char *err, size_t len)
{
	switch (kind) {
	case 'D':
		return receive_disk_size(sock, s, st, rlen, err, len);
	case 'B':
		return receive_block(sock, s, st, rlen, err, len);
	case 'C':
		return receive_pages(sock, s, st, rlen, err, len);
	case 'I':
		if (!st->seen_c || ++st->images > CT_IMAGES_MAX) {
			snprintf(err, len, "an image record %s", st->seen_c ? "too many" :
				 "before the checkpoint");
			return -1;
		}
		return receive_image(sock, s->images_fd, rlen, err, len);
	case 'E':
		if (rlen != 0 || !st->seen_c || st->images == 0) {
			snprintf(err, len, "the stream ended before the checkpoint's images");
			return -1;
		}
		return 1;
	default:
		snprintf(err, len, "unexpected record kind 0x%02x", kind);
		return -1;
	}
}

int ct_stream_receive(int sock, const struct ct_sink *s, char *err, size_t len)
{
	struct recv_state st = {0};
	for (;;) {
		unsigned char kind;
		uint64_t rlen;
		if (mig_read_header(sock, &kind, &rlen, err, len))
			return -1;
		if (!st.seen_d && kind != 'D') {
			snprintf(err, len, "the stream does not start with the private image");
			return -1;
		}
		int rc = receive_one(sock, s, &st, kind, rlen, err, len);
		if (rc < 0)
			return -1;
		if (rc == 1)
			break;
	}
	if (fsync(s->disk_fd) < 0) {
		snprintf(err, len, "fsync of the private image: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- sending ---- */

/* A block's sum (FNV-1a over 64-bit words, then mixed): tells a changed
 * block from an unchanged one; the container can only fool it about its
 * own data. */
static uint64_t block_sum(const unsigned char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ n;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	return h ^ (h >> 33);
}

static size_t block_len(const struct ct_disk_sums *s, uint64_t i)
{
	uint64_t off = i * CT_BLOCK;
	return s->size - off < CT_BLOCK ? (size_t)(s->size - off) : CT_BLOCK;
}

static int send_block(int sock, uint64_t off, const unsigned char *p, size_t n, char *err,
		      size_t len)
{
	unsigned char o[8];
	put_u64(o, off);
	if (mig_send_header(sock, 'B', 8 + n) || kvz_write_all(sock, o, 8) ||
	    kvz_write_all(sock, p, n)) {
		snprintf(err, len, "sending the private image: %s", mig_io_why());
		return -1;
	}
	return 0;
}

/* A pass over the private image: its first copy, or (delta) what
 * changed since. */
struct scan {
	int sock, fd;
	struct ct_disk_sums *s;
	unsigned char *buf;
	bool delta;
	uint64_t sent;
	ct_progress_fn progress;
	void *arg;
};

static int scan_block(struct scan *c, uint64_t i, char *err, size_t len)
{
	size_t n = block_len(c->s, i);
	if (pread(c->fd, c->buf, n, (off_t)(i * CT_BLOCK)) != (ssize_t)n) {
		snprintf(err, len, "reading the private image: %s", strerror(errno));
		return -1;
	}
	uint64_t sum = block_sum(c->buf, n);
	if (c->delta && sum == c->s->sum[i])
		return 0;
	if (send_block(c->sock, i * CT_BLOCK, c->buf, n, err, len))
		return -1;
	c->s->sum[i] = sum;
	c->sent += n;
	if (c->progress && !c->progress(c->arg, c->sent)) {
		snprintf(err, len, "cancelled");
		return -1;
	}
	return 0;
}

/* The blocks holding data (SEEK_DATA/SEEK_HOLE), each marked in seen. */
static int scan_data(struct scan *c, unsigned char *seen, char *err, size_t len)
{
	off_t pos = 0;
	while ((uint64_t)pos < c->s->size) {
		off_t data = lseek(c->fd, pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		off_t hole = data < 0 ? -1 : lseek(c->fd, data, SEEK_HOLE);
		if (hole < 0) {
			snprintf(err, len, "scanning the private image: %s", strerror(errno));
			return -1;
		}
		for (uint64_t i = (uint64_t)data / CT_BLOCK; i * CT_BLOCK < (uint64_t)hole; i++) {
			if (seen[i])
				continue;
			seen[i] = 1;
			if (scan_block(c, i, err, len))
				return -1;
		}
		pos = hole;
	}
	return 0;
}

/* Data that became a hole since it was sent: zeros where it was. */
static int send_new_holes(struct scan *c, const unsigned char *seen, char *err, size_t len)
{
	memset(c->buf, 0, CT_BLOCK);
	for (uint64_t i = 0; i < c->s->nblocks; i++) {
		size_t n = block_len(c->s, i);
		uint64_t zero = block_sum(c->buf, n);
		if (seen[i] || c->s->sum[i] == zero)
			continue;
		if (send_block(c->sock, i * CT_BLOCK, c->buf, n, err, len))
			return -1;
		c->s->sum[i] = zero;
		c->sent += n;
	}
	return 0;
}

static int scan_image(struct scan *c, char *err, size_t len)
{
	unsigned char *seen = calloc(c->s->nblocks ? c->s->nblocks : 1, 1);
	c->buf = malloc(CT_BLOCK);
	int rc = -1;
	if (!seen || !c->buf)
		snprintf(err, len, "out of memory");
	else
		rc = scan_data(c, seen, err, len);
	if (rc == 0 && c->delta)
		rc = send_new_holes(c, seen, err, len);
	free(seen);
	free(c->buf);
	return rc;
}

int ct_send_disk(int sock, int fd, struct ct_disk_sums *sums, ct_progress_fn progress, void *arg,
		 uint64_t *sent, char *err, size_t len)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size <= 0) {
		snprintf(err, len, "the private image: %s", st.st_size <= 0 ? "empty" : strerror(errno));
		return -1;
	}
	sums->size = (uint64_t)st.st_size;
	sums->nblocks = (sums->size + CT_BLOCK - 1) / CT_BLOCK;
	sums->sum = calloc(sums->nblocks, sizeof(*sums->sum));
	unsigned char *zero = calloc(1, CT_BLOCK), size[8];
	if (!sums->sum || !zero) {
		free(zero);
		snprintf(err, len, "out of memory");
		return -1;
	}
	for (uint64_t i = 0; i < sums->nblocks; i++)
		sums->sum[i] = block_sum(zero, block_len(sums, i));
	free(zero);
	put_u64(size, sums->size);
	if (mig_send_header(sock, 'D', 8) || kvz_write_all(sock, size, 8)) {
		snprintf(err, len, "sending the private image: %s", mig_io_why());
		return -1;
	}
	struct scan c = {.sock = sock, .fd = fd, .s = sums, .progress = progress, .arg = arg};
	int rc = scan_image(&c, err, len);
	*sent = c.sent;
	return rc;
}

int ct_send_disk_delta(int sock, int fd, struct ct_disk_sums *sums, uint64_t *sent, char *err,
		       size_t len)
{
	struct scan c = {.sock = sock, .fd = fd, .s = sums, .delta = true};
	int rc = scan_image(&c, err, len);
	*sent = c.sent;
	return rc;
}

void ct_disk_sums_free(struct ct_disk_sums *sums)
{
	free(sums->sum);
	sums->sum = NULL;
}

static int send_image(int sock, int dfd, const char *name, uint64_t *sent, char *err, size_t len)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		snprintf(err, len, "image %s: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	unsigned char nl = (unsigned char)strlen(name);
	int rc = mig_send_header(sock, 'I', 1 + nl + (uint64_t)st.st_size) ||
		 kvz_write_all(sock, &nl, 1) || kvz_write_all(sock, name, nl) ? -1 : 0;
	char *chunk = rc ? NULL : malloc(CHUNK);
	for (uint64_t done = 0; rc == 0 && done < (uint64_t)st.st_size;) {
		ssize_t n = chunk ? pread(fd, chunk, CHUNK, (off_t)done) : -1;
		if (n <= 0 || kvz_write_all(sock, chunk, (size_t)n))
			rc = -1;
		done += n > 0 ? (uint64_t)n : 0;
	}
	if (rc)
		snprintf(err, len, "sending image %s: %s", name, mig_io_why());
	*sent += 1 + nl + (uint64_t)st.st_size;
	free(chunk);
	close(fd);
	return rc;
}

int ct_send_images(int sock, int dfd, uint64_t *sent, char *err, size_t len)
{
	int dup_fd = dup(dfd);
	DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
	if (!d) {
		snprintf(err, len, "reading the images: %s", strerror(errno));
		if (dup_fd >= 0)
			close(dup_fd);
		return -1;
	}
	rewinddir(d);
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		struct stat st;
		if (!ct_image_name_ok(e->d_name, n) || (n > 4 && !strcmp(e->d_name + n - 4, ".log")) ||
		    fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		rc = send_image(sock, dfd, e->d_name, sent, err, len);
	}
	closedir(d);
	return rc;
}
