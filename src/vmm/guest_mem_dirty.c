/* guest_mem's log of kvz-vmm's own writes into guest RAM (guest_mem.h).
 * A file of its own so that the tests' and fuzzers' fake guest memory
 * links the same code. */
#include "guest_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void mark_offsets(uint64_t *bm, uint64_t off, uint64_t len)
{
	for (uint64_t pg = off / 4096, last = (off + len - 1) / 4096; pg <= last; pg++)
		__atomic_fetch_or(&bm[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
}

void guest_mem_mark_dirty_host(const struct guest_mem *m, const void *p, uint64_t len)
{
	uint64_t *bm = __atomic_load_n(&m->vmm_dirty, __ATOMIC_ACQUIRE);
	const uint8_t *b = p;
	if (!bm || len == 0 || b < m->host || b >= m->host + m->size)
		return;
	uint64_t off = (uint64_t)(b - m->host);
	mark_offsets(bm, off, len > m->size - off ? m->size - off : len);
}

void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);
	if (p)
		guest_mem_mark_dirty_host(m, p, len);
}

int guest_mem_log_start(struct guest_mem *m)
{
	if (!m->vmm_dirty_buf)
		m->vmm_dirty_buf = calloc(guest_mem_bitmap_words(m), sizeof(uint64_t));
	if (!m->vmm_dirty_buf)
		return -ENOMEM;
	memset(m->vmm_dirty_buf, 0, guest_mem_bitmap_words(m) * sizeof(uint64_t));
	__atomic_store_n(&m->vmm_dirty, m->vmm_dirty_buf, __ATOMIC_RELEASE);
	return 0;
}

/* The allocation stays until guest_mem_destroy: a device thread may still
 * be marking through the pointer it loaded. */
void guest_mem_log_stop(struct guest_mem *m)
{
	__atomic_store_n(&m->vmm_dirty, NULL, __ATOMIC_RELEASE);
}

void guest_mem_take_dirty(const struct guest_mem *m, uint64_t *out)
{
	uint64_t *bm = __atomic_load_n(&m->vmm_dirty, __ATOMIC_ACQUIRE);
	if (!bm)
		return;
	for (uint64_t i = 0, n = guest_mem_bitmap_words(m); i < n; i++)
		if (__atomic_load_n(&bm[i], __ATOMIC_RELAXED))
			out[i] |= __atomic_exchange_n(&bm[i], 0, __ATOMIC_RELAXED);
}
