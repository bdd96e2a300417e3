/* Host-only guest memory for unit tests and fuzzers: a malloc'd buffer
 * with the same lookup rules as the VMM's guest_mem (guest_mem.h), so the
 * virtqueue code runs without KVM or a memfd. */
#include "fake_guest_mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int fake_guest_mem_init(struct guest_mem *m, uint64_t lo_size, uint64_t hi_size)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	m->host = aligned_alloc(4096, lo_size + hi_size);
	if (!m->host)
		return -ENOMEM;
	memset(m->host, 0, lo_size + hi_size);
	m->lo_size = lo_size;
	m->hi_size = hi_size;
	m->size = lo_size + hi_size;
	return 0;
}

void fake_guest_mem_destroy(struct guest_mem *m)
{
	free(m->host);
	m->host = NULL;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (gpa < m->lo_size)
		return len <= m->lo_size - gpa ? m->host + gpa : NULL;
	if (gpa < GUEST_MEM_HI_START)
		return NULL;
	uint64_t off = gpa - GUEST_MEM_HI_START;
	if (off >= m->hi_size || len > m->hi_size - off)
		return NULL;
	return m->host + m->lo_size + off;
}

int guest_mem_discard(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint8_t *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memset(p, 0, len);
	return 0;
}
