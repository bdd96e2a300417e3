/* Which pages of guest RAM may hold data, without touching them: a save
 * asks /proc/self/pagemap instead of reading (and zero-checking) every page
 * of an anonymous mapping, so its time follows the RAM the guest used, not
 * RAM size. A page of anonymous memory that is neither present (bit 63)
 * nor swapped (bit 62) was never written or was given back: it reads as
 * zeros. That is not true of a file mapping (a page not faulted in yet may
 * be in the file), so chunks of RAM mapped from a file are named by the
 * caller as must-read. Every present 4 KiB of a transparent huge page
 * counts as present: those are read, as they may hold data. */
#ifndef KVZ_VMM_PAGEMAP_H
#define KVZ_VMM_PAGEMAP_H

#include <stdbool.h>
#include <stdint.h>

#define PAGEMAP_BATCH 512u            /* entries per pread: 2 MiB of RAM */
#define PAGEMAP_CHUNK (2ull << 20)    /* granule of the must-read bitmap */

struct pagemap_reader {
	int fd;                       /* /proc/self/pagemap; -1: every page may hold data */
	uint64_t base_page;           /* host virtual page number of RAM offset 0 */
	uint64_t pages;               /* pages of RAM */
	const uint64_t *must_read;    /* one bit per PAGEMAP_CHUNK of RAM, or NULL */
	uint64_t first;               /* RAM page of e[0] */
	uint32_t n;                   /* valid entries in e */
	int error;                    /* errno of a failed read: every page counts since */
	uint64_t e[PAGEMAP_BATCH];
};

/* fd is an open /proc/self/pagemap of this process (or -1), host the
 * mapping of size bytes of RAM (page aligned). Nothing is read yet. */
void pagemap_reader_init(struct pagemap_reader *r, int fd, const void *host, uint64_t size,
			 const uint64_t *must_read);

/* False only when the page of RAM at that index surely reads as zeros. */
bool pagemap_may_hold_data(struct pagemap_reader *r, uint64_t page);
/* The first page in [page, end) that may hold data; end when none. */
uint64_t pagemap_next_data(struct pagemap_reader *r, uint64_t page, uint64_t end);

#endif
