/* guest_mem's log of kvz-vmm's own writes into guest RAM (guest_mem.h).
 * A file of its own so that the tests' and fuzzers' fake guest memory
 * links the same code. */
#include "guest_mem.h"

#include <errno.h>
#include <stdio.h>
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

/* Fetches and clears the bits of mask in *src (a writer may be setting
 * bits concurrently: none is lost) and ORs them into *dst. */
static void take_word(uint64_t *src, uint64_t *dst, uint64_t mask)
{
	if (__atomic_load_n(src, __ATOMIC_RELAXED) & mask)
		*dst |= __atomic_fetch_and(src, ~mask, __ATOMIC_RELAXED) & mask;
}

static void take_words(uint64_t *src, uint64_t *dst, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		take_word(&src[i], &dst[i], ~0ull);
}

/* The kernel's log is indexed by guest physical page, out by RAM offset:
 * low RAM maps word for word, RAM from 4 GiB up shifts down by the hole
 * (lo_size is then exactly 3 GiB, a whole number of words). Bits outside
 * RAM are never taken: the writer would read past the mapping. */
static void take_gpa_log(const struct guest_mem *m, uint64_t *log, uint64_t *out)
{
	uint64_t lo_pages = m->lo_size / 4096, full = lo_pages / 64;
	take_words(log, out, full);
	if (lo_pages % 64)
		take_word(&log[full], &out[full], (1ull << (lo_pages % 64)) - 1);
	if (!m->hi_size)
		return;
	uint64_t hi_pages = m->hi_size / 4096, hi_first = GUEST_MEM_HI_START / 4096 / 64;
	take_words(log + hi_first, out + full, hi_pages / 64);
	if (hi_pages % 64)
		take_word(&log[hi_first + hi_pages / 64], &out[full + hi_pages / 64],
			  (1ull << (hi_pages % 64)) - 1);
}

/* Publishes (log non-NULL) or withdraws the kernel's log and tells every
 * logger. Returns 0, or -1 with err from the first logger that failed. */
static int set_vhost_log(struct guest_mem *m, uint64_t *log, char *err, size_t errlen)
{
	int rc = 0;
	__atomic_store_n(&m->vhost_log, log, __ATOMIC_RELEASE);
	for (unsigned i = 0; i < m->nloggers; i++) {
		char why[256] = "";
		if (m->loggers[i].log_changed(m->loggers[i].opaque, why, sizeof(why)) < 0 && rc == 0) {
			snprintf(err, errlen, "%s", why);
			rc = -1;
		}
	}
	return rc;
}

static uint64_t *clear_buf(uint64_t **buf, uint64_t words)
{
	if (!*buf)
		*buf = calloc(words, sizeof(uint64_t));
	if (*buf)
		memset(*buf, 0, words * sizeof(uint64_t));
	return *buf;
}

int guest_mem_log_start(struct guest_mem *m, char *err, size_t errlen)
{
	if (!clear_buf(&m->vmm_dirty_buf, guest_mem_bitmap_words(m)) ||
	    (m->nloggers && !clear_buf(&m->vhost_log_buf, guest_mem_gpa_log_words(m)))) {
		snprintf(err, errlen, "dirty log: out of memory");
		return -1;
	}
	__atomic_store_n(&m->vmm_dirty, m->vmm_dirty_buf, __ATOMIC_RELEASE);
	if (m->nloggers && set_vhost_log(m, m->vhost_log_buf, err, errlen) < 0) {
		guest_mem_log_stop(m);
		return -1;
	}
	return 0;
}

/* The allocations stay until guest_mem_destroy: a device thread may still
 * be marking through the pointer it loaded, and a logger that failed to
 * stop may still hold the kernel log's address. */
void guest_mem_log_stop(struct guest_mem *m)
{
	__atomic_store_n(&m->vmm_dirty, NULL, __ATOMIC_RELEASE);
	char why[256];
	if (__atomic_load_n(&m->vhost_log, __ATOMIC_ACQUIRE))
		set_vhost_log(m, NULL, why, sizeof(why));   /* loggers warn themselves */
}

void guest_mem_take_dirty(const struct guest_mem *m, uint64_t *out)
{
	uint64_t *bm = __atomic_load_n(&m->vmm_dirty, __ATOMIC_ACQUIRE);
	if (bm)
		take_words(bm, out, guest_mem_bitmap_words(m));
	uint64_t *log = __atomic_load_n(&m->vhost_log, __ATOMIC_ACQUIRE);
	if (log)
		take_gpa_log(m, log, out);
}

int guest_mem_add_logger(struct guest_mem *m, const struct guest_mem_logger *l)
{
	if (m->nloggers == GUEST_MEM_MAX_LOGGERS)
		return -ENOSPC;
	m->loggers[m->nloggers++] = *l;
	return 0;
}

void guest_mem_remove_logger(struct guest_mem *m, const void *opaque)
{
	for (unsigned i = 0; i < m->nloggers; i++)
		if (m->loggers[i].opaque == opaque) {
			m->loggers[i] = m->loggers[--m->nloggers];
			return;
		}
}
