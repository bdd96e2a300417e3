/* qcow2 internals shared by the qcow2_*.c files: the in-memory image,
 * on-disk constants, and the functions each file offers the others. */
#ifndef KVZ_QCOW2_INTERNAL_H
#define KVZ_QCOW2_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "qcow2.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
/* QEMU's own limits on table sizes: bigger ones are absurd. */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)
/* Virtual sizes above this are refused (QEMU: 2^63 minus a bit; we stay
 * well inside what the L1 limit lets any cluster size address). */
#define QCOW2_MAX_SIZE (1ull << 56)
#define QCOW2_MAX_BACKING_NAME 1023

/* L1/L2 entry bits. */
#define QCOW2_OFLAG_COPIED (1ull << 63)
#define QCOW2_OFLAG_COMPRESSED (1ull << 62)
#define QCOW2_OFLAG_ZERO 1ull
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L2_RESERVED_MASK 0x3f000000000001feull /* non-compressed */
#define QCOW2_L1_RESERVED_MASK 0x7f000000000001ffull
#define QCOW2_REFT_RESERVED_MASK 0x1ffull

/* Incompatible features. */
#define QCOW2_INCOMPAT_DIRTY (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ull << 1)

/* Header field offsets. */
#define QH_SIZE 24
#define QH_L1 36        /* l1_size (u32) then l1_table_offset (u64) */
#define QH_REFTABLE 48  /* offset (u64) then clusters (u32) */
#define QH_INCOMPAT 72
#define QH_AUTOCLEAR 88
#define QH_V2_LEN 72
#define QH_V3_LEN 104

#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FMT 0xe2792acau

#define QCOW2_L2_CACHE 16
#define QCOW2_RB_CACHE 8

struct qcow2_table_slot {
	uint64_t offset;   /* host offset of the table; 0: slot empty */
	uint64_t used;     /* LRU stamp */
	bool dirty;        /* changed in memory, not yet written */
	uint64_t *l2;      /* cluster_size bytes, big-endian on disk, host here */
	uint16_t *rb;
};

/* One image of a chain. Bases are opened read-only. */
struct qcow2 {
	int fd;
	bool writable, unordered;
	bool unsynced;             /* written since the last fdatasync */
	char *path;
	char err[256];

	unsigned version, cluster_bits;
	uint32_t cluster_size;
	uint64_t size;
	uint64_t file_size;        /* grows as clusters are allocated */
	uint32_t l2_entries;       /* entries per L2 table */
	uint32_t rb_entries;       /* refcounts per refcount block */
	unsigned refcount_bits;
	uint64_t incompat, compat, autoclear;
	uint32_t header_length;
	uint32_t nb_snapshots;

	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t *l1;              /* host order */

	uint64_t reftable_offset;
	uint32_t reftable_clusters;
	uint64_t *reftable;        /* host order, reftable_clusters * cs / 8 */
	uint64_t reftable_entries;

	uint64_t free_hint;        /* first cluster index possibly free */
	uint64_t alloc_end;        /* past the last cluster ever allocated */
	uint64_t ctail;            /* compressed output: next byte; 0 none */

	/* Host cluster indices holding L2 tables or refcount blocks, sorted:
	 * data and new allocations must never land on them. */
	uint64_t *meta;
	size_t nmeta, meta_cap;

	struct qcow2_table_slot l2c[QCOW2_L2_CACHE];
	struct qcow2_table_slot rbc[QCOW2_RB_CACHE];
	uint64_t stamp;

	char *backing_name, *backing_fmt;
	/* The image below: a qcow2 or, when backing_raw_fd >= 0, raw. */
	struct qcow2 *backing;
	int backing_raw_fd;
	uint64_t backing_raw_size;
	unsigned depth;
};

/* qcow2_util.c */
int q2_fail(struct qcow2 *q, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int q2_pread(struct qcow2 *q, void *buf, size_t len, uint64_t off, const char *what);
int q2_pwrite(struct qcow2 *q, const void *buf, size_t len, uint64_t off, const char *what);
int q2_sync(struct qcow2 *q);
uint64_t q2_be64(const void *p);
uint32_t q2_be32(const void *p);
uint16_t q2_be16(const void *p);
void q2_put_be64(void *p, uint64_t v);
void q2_put_be32(void *p, uint32_t v);
void q2_put_be16(void *p, uint16_t v);
uint64_t q2_div_round_up(uint64_t a, uint64_t b);

/* qcow2_header.c */
int q2_header_load(struct qcow2 *q);
int q2_header_clear_autoclear(struct qcow2 *q);

/* qcow2_meta.c: the set of metadata clusters, overlap checks. */
int q2_meta_add(struct qcow2 *q, uint64_t cluster);
bool q2_meta_has(const struct qcow2 *q, uint64_t cluster);
bool q2_is_meta(const struct qcow2 *q, uint64_t cluster);
void q2_meta_remove(struct qcow2 *q, uint64_t cluster);
/* 0 when [off, off+len) is inside the file and touches no metadata. */
int q2_check_data_range(struct qcow2 *q, uint64_t off, uint64_t len, const char *what);
int q2_meta_build(struct qcow2 *q);

/* qcow2_l2.c */
int q2_l1_load(struct qcow2 *q);
/* The L2 entry of guest cluster gc (0 when no L2 table). */
int q2_l2_get(struct qcow2 *q, uint64_t gc, uint64_t *entry);
/* Cached table for L1 index (must be allocated). */
int q2_l2_table(struct qcow2 *q, uint64_t l2_offset, uint64_t **table);
/* Changes the cached table; written by q2_l2_commit. */
int q2_l2_set(struct qcow2 *q, uint64_t gc, uint64_t entry);
int q2_l2_commit(struct qcow2 *q);
int q2_l1_set(struct qcow2 *q, uint32_t idx, uint64_t entry);
int q2_l1_grow(struct qcow2 *q, uint32_t new_l1_size);

/* qcow2_refcount.c */
int q2_refcount_load(struct qcow2 *q);
int q2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *rc);
int q2_refcount_add(struct qcow2 *q, uint64_t cluster, int delta);
/* Allocates n contiguous clusters (refcount 1, written but not flushed);
 * returns the host offset of the first. */
int q2_alloc(struct qcow2 *q, uint64_t n, uint64_t *offset);
int q2_refcount_writeback(struct qcow2 *q);
/* Writes back refcounts then flushes unless unordered or nothing was
 * written since the last flush: the barrier between writing something
 * and referencing it. */
int q2_barrier(struct qcow2 *q);
/* Drops a reference to a host cluster, freeing it at 0. */
int q2_free_cluster(struct qcow2 *q, uint64_t offset);

/* qcow2_compress.c */
int q2_read_compressed(struct qcow2 *q, uint64_t entry, void *out);
int q2_compressed_span(const struct qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len);

/* qcow2_open.c: images already open below in the chain, by identity. */
struct q2_ident {
	dev_t dev;
	ino_t ino;
};
int q2_open_chain(const char *path, int fd, int flags, struct q2_ident *ids,
		  unsigned depth, struct qcow2 **out, char *err, size_t errlen);

/* qcow2_io.c */
int q2_l2_ensure(struct qcow2 *q, uint64_t gc);

/* qcow2_backing.c */
int q2_backing_open(struct qcow2 *q, int flags, struct q2_ident *ids, unsigned depth);
int q2_backing_read(struct qcow2 *q, void *buf, uint64_t off, size_t len);
void q2_backing_close(struct qcow2 *q);

#endif
