/* Copying the disks in a live migration without shared storage (QMP
 * migrate "blk": true), in the stream of state/migration_stream.h.
 *
 * Source: each writable disk's completed writes are tracked
 * (block/blk_dirty.h) from before the first pass; the first pass sends
 * every chunk (zero ranges as markers), each later pass, between RAM
 * passes, the chunks written since, and stop-and-copy the rest once the
 * devices are paused (their queues drained, blk_quiesce done). The job's
 * thread reads through the block layer on a synchronous engine of its own.
 *
 * Target: the chunks are written into the target's own disks (its --disk
 * options, in the same order) through the block layer, so raw and qcow2
 * both work; zero ranges become write-zeroes (holes where the format can). */
#ifndef KVZ_VMM_MIGRATION_DISK_H
#define KVZ_VMM_MIGRATION_DISK_H

#include <stdint.h>

#include "state/migration_stream.h"

struct blk_backend;
struct blk_aio;

struct mig_disk {
	struct blk_backend *b;
	uint64_t *pending;         /* chunks still to send (blk_dirty.h's layout) */
	uint64_t words;
};

struct mig_disks {
	unsigned n;
	struct mig_disk d[MIG_DISK_MAX];
	struct blk_aio *aio;
	uint8_t *buf;              /* MIG_DISK_RUN_MAX */
	uint64_t total;            /* bytes of all disks */
};

/* Source: starts tracking the n disks, every chunk pending (the first
 * pass). Returns 0, or -1 with err (nothing left tracking). */
int mig_disks_start(struct mig_disks *s, struct blk_backend *const *disks, unsigned n,
		    char *err, size_t errlen);
/* Stops tracking and frees everything (also after a failed start). */
void mig_disks_stop(struct mig_disks *s);
/* The disk records, once, before any chunk. */
int mig_disks_declare(struct mig_disks *s, struct mig_writer *w, char *err, size_t errlen);
/* Takes the chunks written since the last call into pending. */
void mig_disks_collect(struct mig_disks *s);
/* Bytes still pending. */
uint64_t mig_disks_remaining(const struct mig_disks *s);
/* Sends every pending chunk (and clears it). */
int mig_disks_send(struct mig_disks *s, struct mig_writer *w, char *err, size_t errlen);

/* Target: a sink writing into disks (n of them, n <= MIG_DISK_MAX) on a
 * synchronous engine. Returns 0, or -1 with err. */
int mig_disk_sink_init(struct mig_disk_sink *sink, struct blk_backend *const *disks, unsigned n,
		       char *err, size_t errlen);
void mig_disk_sink_free(struct mig_disk_sink *sink);

#endif
