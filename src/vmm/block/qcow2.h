/* qcow2 images (version 2 read, version 3 read/write): the public API.
 *
 * Synchronous: every call completes its I/O with pread/pwrite/fdatasync
 * before returning. Not thread-safe: one caller at a time (the block
 * adapter serializes with its own lock).
 *
 * Errors: functions return 0 or a negative errno; qcow2_error() then
 * holds one line saying what was wrong (for the image given to open or
 * create, the message is passed back through err/errlen). */
#ifndef KVZ_QCOW2_H
#define KVZ_QCOW2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct qcow2;

/* Open flags. */
enum {
	QCOW2_OPEN_WRITE = 1 << 0,      /* top image writable (bases never are) */
	QCOW2_OPEN_NO_BACKING = 1 << 1, /* refuse images that name a backing file */
	QCOW2_OPEN_UNORDERED = 1 << 2,  /* no interim flushes (a new image being
	                                  * filled by convert; flushed at close) */
};

/* Deepest backing chain accepted (QEMU's limit is similar). */
#define QCOW2_MAX_CHAIN 16

struct qcow2_create_opts {
	uint64_t size;            /* virtual size, bytes */
	unsigned cluster_bits;    /* 9..21; 0 means 16 (64 KiB) */
	const char *backing;      /* NULL: none; stored as given */
	const char *backing_fmt;  /* "raw" or "qcow2"; NULL: probe at open */
};

/* Opens path; fd < 0 opens by name, otherwise uses fd (dup'ed) and path
 * is only used to resolve a relative backing file name and in messages. */
int qcow2_open(const char *path, int fd, int flags, struct qcow2 **out,
	       char *err, size_t errlen);
int qcow2_create(const char *path, const struct qcow2_create_opts *o,
		 char *err, size_t errlen);
/* Flushes (when writable) and frees; returns the flush's result. */
int qcow2_close(struct qcow2 *q);

const char *qcow2_error(const struct qcow2 *q);
uint64_t qcow2_size(const struct qcow2 *q);
unsigned qcow2_cluster_size(const struct qcow2 *q);
unsigned qcow2_version(const struct qcow2 *q);
/* The backing file name as stored in the header (NULL when none). */
const char *qcow2_backing_name(const struct qcow2 *q);
const char *qcow2_backing_format(const struct qcow2 *q);
/* Depth of the chain below this image (0: no backing file). */
unsigned qcow2_chain_depth(const struct qcow2 *q);

int qcow2_read(struct qcow2 *q, void *buf, uint64_t off, size_t len);
/* Where the guest bytes from off (len at most) are: *host != 0: the next
 * *run bytes are at *host in the file qcow2_fd() reads (consecutive host
 * clusters, checked like a read's); *host == 0: the next *run bytes need
 * qcow2_read (zero, compressed, from a base). For reads elsewhere (an I/O
 * engine); valid until the next call that changes the image. */
int qcow2_map(struct qcow2 *q, uint64_t off, uint64_t len, uint64_t *host, uint64_t *run);
int qcow2_fd(const struct qcow2 *q);
int qcow2_write(struct qcow2 *q, const void *buf, uint64_t off, size_t len);
int qcow2_flush(struct qcow2 *q);
/* Writes every changed table (ordered as a flush orders them) without
 * the final fdatasync: afterwards the file alone, as any other reader or
 * a copy sees it, is a consistent image holding every completed write. */
int qcow2_commit(struct qcow2 *q);
/* Whole clusters inside [off, off+len) are dropped (read back as zeros,
 * or as the backing file when no zero flag can be set: v2 with backing
 * keeps its data); partial clusters are left alone. */
int qcow2_discard(struct qcow2 *q, uint64_t off, size_t len);
/* Reads back as zeros afterwards; whole clusters become zero clusters
 * (v3) without data. */
int qcow2_write_zeroes(struct qcow2 *q, uint64_t off, size_t len);
/* Writes one whole guest cluster compressed (convert's output); falls
 * back to an ordinary write when it does not shrink. The cluster must
 * not be allocated yet. */
int qcow2_write_compressed(struct qcow2 *q, uint64_t cluster_index, const void *data);
/* Grows the virtual size (shrinking is refused). */
int qcow2_resize(struct qcow2 *q, uint64_t new_size);

/* Where a guest range comes from, for convert and info. */
enum qcow2_extent {
	QCOW2_EXT_DATA,      /* stored in this image or a base */
	QCOW2_EXT_ZERO,      /* reads as zeros */
};
/* Kind of the cluster holding off, in the whole chain (stops at the
 * first image that has it). */
int qcow2_extent_at(struct qcow2 *q, uint64_t off, enum qcow2_extent *kind);

struct qcow2_check {
	uint64_t leaks;           /* clusters with refcount > references */
	uint64_t corruptions;     /* refcount < references, bad pointers, ... */
	uint64_t allocated;       /* guest clusters with data in this image */
	uint64_t compressed;
	uint64_t file_clusters;
	char first_problem[200];
};
/* Recomputes every refcount from the metadata and compares. Read only. */
int qcow2_check(struct qcow2 *q, struct qcow2_check *res);

#endif
