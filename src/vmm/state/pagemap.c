#include "pagemap.h"

#include <errno.h>
#include <unistd.h>

#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PAGE 4096u

void pagemap_reader_init(struct pagemap_reader *r, int fd, const void *host, uint64_t size,
			 const uint64_t *must_read)
{
	r->fd = fd;
	r->base_page = (uint64_t)(uintptr_t)host / PAGE;
	r->pages = size / PAGE;
	r->must_read = must_read;
	r->first = 0;
	r->n = 0;
	r->error = 0;
}

/* The batch of entries holding page. False (r->error set) when the kernel
 * would not say: the caller then reads every page, which is always right. */
static bool load_batch(struct pagemap_reader *r, uint64_t page)
{
	uint64_t want = r->pages - page < PAGEMAP_BATCH ? r->pages - page : PAGEMAP_BATCH;
	ssize_t got;
	do
		got = pread(r->fd, r->e, want * sizeof(r->e[0]),
			    (off_t)((r->base_page + page) * sizeof(r->e[0])));
	while (got < 0 && errno == EINTR);
	if (got < (ssize_t)sizeof(r->e[0])) {
		r->error = got < 0 ? errno : EIO;
		return false;
	}
	r->first = page;
	r->n = (uint32_t)((size_t)got / sizeof(r->e[0]));
	return true;
}

bool pagemap_may_hold_data(struct pagemap_reader *r, uint64_t page)
{
	if (r->fd < 0 || r->error || page >= r->pages)
		return true;
	uint64_t chunk = page * PAGE / PAGEMAP_CHUNK;
	if (r->must_read && (r->must_read[chunk / 64] >> (chunk % 64) & 1))
		return true;
	if ((page < r->first || page - r->first >= r->n) && !load_batch(r, page))
		return true;
	return (r->e[page - r->first] & (PM_PRESENT | PM_SWAPPED)) != 0;
}

/* The scan over a batch is a tight loop: a 4 GiB guest that touched little
 * is a million entries, nearly all zero. */
uint64_t pagemap_next_data(struct pagemap_reader *r, uint64_t page, uint64_t end)
{
	while (page < end) {
		/* Loads the batch that holds page and checks must_read. */
		if (pagemap_may_hold_data(r, page))
			return page;
		/* Up to the end of the batch, or of page's chunk (not must-read)
		 * when some chunks are: the batch alone decides there. */
		uint64_t stop = r->first + r->n < end ? r->first + r->n : end;
		uint64_t chunk_end = (page * PAGE / PAGEMAP_CHUNK + 1) * (PAGEMAP_CHUNK / PAGE);
		if (r->must_read && chunk_end < stop)
			stop = chunk_end;
		for (page++; page < stop; page++)
			if (r->e[page - r->first] & (PM_PRESENT | PM_SWAPPED))
				return page;
	}
	return end;
}
