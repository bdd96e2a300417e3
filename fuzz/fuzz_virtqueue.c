/* libFuzzer target: arbitrary descriptor tables and rings fed to the
 * virtqueue walker. The input's first bytes pick the queue size and the
 * negotiated features; the rest becomes guest RAM holding the rings at
 * fixed addresses, so every descriptor, index and flag is fuzzer-chosen.
 * Each popped chain is read and written end to end, so a segment that
 * escaped guest RAM shows up under AddressSanitizer. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fake_guest_mem.h"
#include "virtqueue.h"

#define LO_SIZE   0x10000u
#define HI_SIZE   0x2000u
#define DESC_GPA  0x0000u
#define AVAIL_GPA 0x4000u
#define USED_GPA  0x5000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const struct virtq_elem *e)
{
	volatile uint8_t sink = 0;

	for (unsigned i = 0; i < e->nout + e->nin; i++) {
		uint8_t *p = e->iov[i].iov_base;
		for (size_t j = 0; j < e->iov[i].iov_len; j += 64)
			sink ^= p[j];
		sink ^= p[e->iov[i].iov_len - 1];
		if (i >= e->nout)
			p[e->iov[i].iov_len - 1] = sink;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* One element is large (1024 iovecs): static, the fuzzer is single
	 * threaded. */
	static struct virtq_elem e;
	struct guest_mem mem;
	struct virtq vq;

	if (size < 3)
		return 0;
	uint16_t qsize = (data[1] & 0x80) ? (uint16_t)(data[0] | (data[1] & 0x7) << 8)
					  : (uint16_t)(1u << (data[0] % 11));
	if (fake_guest_mem_init(&mem, LO_SIZE, HI_SIZE) < 0)
		return 0;
	size_t n = size - 3 < LO_SIZE + HI_SIZE ? size - 3 : LO_SIZE + HI_SIZE;
	memcpy(mem.host, data + 3, n);

	virtq_reset(&vq, qsize);
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = USED_GPA;
	vq.indirect = data[2] & 1;
	vq.event_idx = data[2] & 2;
	vq.last_avail = (data[2] & 4) ? 0xfffe : 0;
	vq.used_idx = vq.last_avail;
	if (virtq_enable(&vq, &mem) == 0) {
		/* Never more pops than the queue can hold plus one: a walker
		 * that keeps returning chains would be a hang. */
		for (unsigned i = 0; i <= vq.size; i++) {
			int r = virtq_pop(&vq, &e);
			if (r <= 0)
				break;
			touch(&e);
			virtq_push(&vq, e.head, (uint32_t)e.in_len);
			(void)virtq_need_interrupt(&vq);
		}
		(void)virtq_rearm(&vq);
	}
	fake_guest_mem_destroy(&mem);
	return 0;
}
