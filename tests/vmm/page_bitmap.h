/* Reading a dirty bitmap (one bit per 4 KiB page, 64 to a word) in the
 * dirty log tests. */
#ifndef KVZ_TESTS_PAGE_BITMAP_H
#define KVZ_TESTS_PAGE_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

/* Whether the page holding byte off (an address or RAM offset) is set. */
static inline bool page_bit(const uint64_t *bm, uint64_t off)
{
	return bm[off / 4096 / 64] >> (off / 4096 % 64) & 1;
}

static inline unsigned page_count(const uint64_t *bm, uint64_t words)
{
	unsigned n = 0;
	for (uint64_t i = 0; i < words; i++)
		n += (unsigned)__builtin_popcountll(bm[i]);
	return n;
}

#endif
