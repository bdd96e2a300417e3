/* Dirty-block bitmap of a disk (blk_dirty.h). */
#include "blk_dirty.h"

#include <stdlib.h>

#include "block.h"

struct blk_dirty *blk_dirty_new(uint64_t size)
{
	struct blk_dirty *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->size = size;
	d->nbits = (size + BLK_DIRTY_CHUNK - 1) / BLK_DIRTY_CHUNK;
	d->words = (d->nbits + 63) / 64;
	d->bits = calloc(d->words ? d->words : 1, sizeof(uint64_t));
	if (!d->bits) {
		free(d);
		return NULL;
	}
	return d;
}

void blk_dirty_free(struct blk_dirty *d)
{
	while (d) {
		struct blk_dirty *older = d->older;
		free(d->bits);
		free(d);
		d = older;
	}
}

void blk_dirty_mark(struct blk_dirty *d, uint64_t off, uint64_t len)
{
	if (!d || !len || !__atomic_load_n(&d->enabled, __ATOMIC_ACQUIRE) || off >= d->size)
		return;
	uint64_t end = len > d->size - off ? d->size : off + len;
	for (uint64_t bit = off / BLK_DIRTY_CHUNK; bit <= (end - 1) / BLK_DIRTY_CHUNK; bit++)
		__atomic_fetch_or(&d->bits[bit / 64], 1ull << (bit % 64), __ATOMIC_RELEASE);
}

void blk_dirty_enable(struct blk_dirty *d, bool on)
{
	__atomic_store_n(&d->enabled, on, __ATOMIC_RELEASE);
}

uint64_t blk_dirty_take(struct blk_dirty *d, uint64_t *into)
{
	uint64_t added = 0;
	for (uint64_t i = 0; i < d->words; i++) {
		if (!__atomic_load_n(&d->bits[i], __ATOMIC_RELAXED))
			continue;
		uint64_t w = __atomic_exchange_n(&d->bits[i], 0, __ATOMIC_ACQ_REL);
		added += (uint64_t)__builtin_popcountll(w & ~into[i]);
		into[i] |= w;
	}
	return added;
}

uint64_t blk_dirty_count(const uint64_t *bits, uint64_t words)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(bits[i]);
	return n;
}

int blk_dirty_start(struct blk_backend *b)
{
	struct blk_dirty *d = __atomic_load_n(&b->dirty, __ATOMIC_ACQUIRE);
	if (!d || d->size != b->size) {
		/* A completion may still hold the old one: it stays, disabled,
		 * until blk_close. */
		struct blk_dirty *n = blk_dirty_new(b->size);
		if (!n)
			return -1;
		n->older = d;
		__atomic_store_n(&b->dirty, n, __ATOMIC_RELEASE);
		d = n;
	}
	for (uint64_t i = 0; i < d->words; i++)
		__atomic_store_n(&d->bits[i], 0, __ATOMIC_RELAXED);
	blk_dirty_enable(d, true);
	return 0;
}

void blk_dirty_stop(struct blk_backend *b)
{
	struct blk_dirty *d = __atomic_load_n(&b->dirty, __ATOMIC_ACQUIRE);
	if (d)
		blk_dirty_enable(d, false);
}
