/* Dirty-block tracking of a disk for migration without shared storage
 * (migration_disk.c): one bit per BLK_DIRTY_CHUNK bytes, set by every
 * completed write, discard and write-zeroes (blk_submit wraps their done
 * when the backend has a bitmap). Marked at completion, not submission:
 * a copier that clears a bit and then reads the chunk either reads the
 * new data or sees the bit set again by the completion that follows.
 *
 * Thread safety: marks come from every queue's thread at once and the
 * copier takes bits on its own thread; all bit operations are atomic. The
 * bitmap lives as long as the backend (blk_close frees it), so a late
 * completion never touches freed memory; tracking is switched on and off. */
#ifndef KVZ_VMM_BLK_DIRTY_H
#define KVZ_VMM_BLK_DIRTY_H

#include <stdbool.h>
#include <stdint.h>

#define BLK_DIRTY_CHUNK (64u << 10)

struct blk_backend;

struct blk_dirty {
	uint64_t size;             /* disk bytes covered */
	uint64_t nbits, words;
	bool enabled;              /* atomic */
	uint64_t *bits;            /* atomic words */
	struct blk_dirty *older;   /* made for an earlier size; freed with this */
};

struct blk_dirty *blk_dirty_new(uint64_t size);
void blk_dirty_free(struct blk_dirty *d);
/* Sets the bits of [off, off+len) when enabled; clamped to the disk. */
void blk_dirty_mark(struct blk_dirty *d, uint64_t off, uint64_t len);
void blk_dirty_enable(struct blk_dirty *d, bool on);
/* ORs the set bits into into (d->words words) and clears them. Returns how
 * many bits were newly set in into. */
uint64_t blk_dirty_take(struct blk_dirty *d, uint64_t *into);
uint64_t blk_dirty_count(const uint64_t *bits, uint64_t words);

/* Starts tracking the backend's writes (the bitmap made on first use, or
 * anew when the disk was resized since; all bits clear). Returns 0, or -1
 * when out of memory. */
int blk_dirty_start(struct blk_backend *b);
void blk_dirty_stop(struct blk_backend *b);

#endif
