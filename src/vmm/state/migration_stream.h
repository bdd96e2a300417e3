/* The live migration stream (docs/migration-stream.md): the snapshot's
 * content in an order a socket can carry. A header, then records: runs of
 * RAM pages (a zero page is a one-byte marker, any other page a marker and
 * its 4096 bytes; a page may come again in a later pass and the last copy
 * wins), then the snapshot's checksummed sections, then an end record.
 * Copying the disks (migrate "blk": true) adds, before the sections, one
 * disk record per writable disk (index and size) and then chunks of disk
 * data, interleaved with the RAM runs (a zero range is a marker; the last
 * copy of a chunk wins).
 * Written by the source's migration job, read by the target, which trusts
 * nothing it reads. */
#ifndef KVZ_VMM_MIGRATION_STREAM_H
#define KVZ_VMM_MIGRATION_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot_file.h"
#include "state_buf.h"
#include "state_registry.h"

#define MIG_MAGIC "KVZMIG\0\0"
#define MIG_VERSION 1u
#define MIG_HEADER_SIZE 24u
#define MIG_RUN_MAX 256u            /* pages in one RAM record */

#define MIG_DISK_MAX 8u              /* disks a stream may copy */
#define MIG_DISK_RUN_MAX (1u << 20)  /* bytes in one disk chunk record */

enum { MIG_REC_RAM = 'R', MIG_REC_SECTION = 'S', MIG_REC_END = 'E', MIG_REC_DISK = 'B',
       MIG_REC_DISK_DATA = 'D' };
enum { MIG_PAGE_ZERO = 0, MIG_PAGE_DATA = 1 };

/* Counters of what the writer sent (owned by the writer's thread; the
 * job copies them out for query-migrate). */
struct mig_counts {
	uint64_t bytes;            /* stream bytes written */
	uint64_t normal;           /* pages sent with their data */
	uint64_t duplicate;        /* zero pages sent as markers */
	uint64_t disk_bytes;       /* disk bytes covered by chunk records */
};

/* Called after every block written: returns non-zero to stop the stream
 * (cancel). The job rate-limits, throttles and reports progress here. */
typedef int (*mig_tick_fn)(void *opaque, const struct mig_counts *c);

struct mig_writer {
	int fd;
	struct state_buf buf;
	struct mig_counts counts;
	mig_tick_fn tick;
	void *opaque;
};

int mig_writer_begin(struct mig_writer *w, int fd, uint64_t ram_size, mig_tick_fn tick,
		     void *opaque, char *err, size_t errlen);
/* The pages of ram in [first_page, first_page + npages) whose bit is set
 * in bitmap (the whole RAM's; a first pass sets every bit). */
int mig_writer_page_range(struct mig_writer *w, const uint8_t *ram, uint64_t first_page,
			  uint64_t npages, const uint64_t *bitmap, char *err, size_t errlen);
int mig_writer_section(struct mig_writer *w, const struct state_entry *e, const void *data,
		       size_t len, char *err, size_t errlen);
/* Declares disk index (its size in bytes) before its chunks. */
int mig_writer_disk(struct mig_writer *w, uint32_t index, uint64_t size, char *err, size_t errlen);
/* A chunk of disk index at off: len bytes of data, or zeros (data NULL). */
int mig_writer_disk_data(struct mig_writer *w, uint32_t index, uint64_t off, const void *data,
			 uint32_t len, char *err, size_t errlen);
/* Writes what is buffered now (a pass's end); nothing when empty. */
int mig_writer_flush(struct mig_writer *w, char *err, size_t errlen);
/* The end record, and everything flushed. */
int mig_writer_end(struct mig_writer *w, char *err, size_t errlen);
void mig_writer_free(struct mig_writer *w);

/* Where the target writes disk chunks: its writable disks, in the
 * source's order. write gets a chunk inside the disk (checked), data NULL
 * for zeros; returns 0, or -1 with err. */
struct mig_disk_sink {
	unsigned n;
	uint64_t size[MIG_DISK_MAX];
	int (*write)(void *opaque, unsigned index, uint64_t off, const uint8_t *data, uint32_t len,
		     char *err, size_t errlen);
	void *opaque;
};

/* Reads a whole stream from fd into ram (ram_size bytes, must match the
 * source's) and its sections into out (checksums verified, not applied).
 * Disk records go to disks (NULL: a stream with disks is refused).
 * *received (atomic, may be NULL) counts stream bytes for query-migrate.
 * Returns 0, or -1 with one line in err; then ram (and the disks) hold a
 * partial copy the caller discards with the machine. */
int mig_read_stream(int fd, uint8_t *ram, uint64_t ram_size, const struct mig_disk_sink *disks,
		    struct snap_sections *out, uint64_t *received, char *err, size_t errlen);

#endif
