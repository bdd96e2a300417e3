/* Unit tests of the split-virtqueue walker with a fake guest RAM: good
 * chains, indirect tables, interrupt suppression, and the malformed input a
 * hostile guest can build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_guest_mem.h"
#include "virtqueue.h"

#define RAM_SIZE  (1u << 20)
#define QSIZE     8
#define DESC_GPA  0x1000
#define AVAIL_GPA 0x2000
#define USED_GPA  0x3000
#define BUF_GPA   0x10000
#define IND_GPA   0x20000

struct fixture {
	struct guest_mem mem;
	struct virtq vq;
	struct virtq_elem e;
};

static int setup(void **state)
{
	static struct fixture f;  /* the element is large: keep it off the stack */

	memset(&f, 0, sizeof(f));
	assert_int_equal(fake_guest_mem_init(&f.mem, RAM_SIZE, 0), 0);
	virtq_reset(&f.vq, QSIZE);
	f.vq.desc_gpa = DESC_GPA;
	f.vq.avail_gpa = AVAIL_GPA;
	f.vq.used_gpa = USED_GPA;
	assert_int_equal(virtq_enable(&f.vq, &f.mem), 0);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	fake_guest_mem_destroy(&f->mem);
	return 0;
}

static struct virtq_desc *desc(struct fixture *f, uint64_t table_gpa, unsigned i)
{
	return (struct virtq_desc *)(f->mem.host + table_gpa) + i;
}

static void set_desc(struct fixture *f, uint64_t table, unsigned i, uint64_t addr,
		     uint32_t len, uint16_t flags, uint16_t next)
{
	*desc(f, table, i) = (struct virtq_desc){ addr, len, flags, next };
}

static uint16_t *avail(struct fixture *f)
{
	return (uint16_t *)(f->mem.host + AVAIL_GPA);
}

static uint16_t *used(struct fixture *f)
{
	return (uint16_t *)(f->mem.host + USED_GPA);
}

/* Driver side: publishes head as the next available entry. */
static void offer(struct fixture *f, uint16_t head)
{
	uint16_t idx = avail(f)[1];

	avail(f)[2 + idx % QSIZE] = head;
	avail(f)[1] = idx + 1;
}

static void test_simple_chain(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 3);
	set_desc(f, DESC_GPA, 3, BUF_GPA + 0x100, 512, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 5);
	set_desc(f, DESC_GPA, 5, BUF_GPA + 0x400, 1, VIRTQ_DESC_F_WRITE, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	assert_int_equal(f->e.head, 0);
	assert_int_equal(f->e.nout, 1);
	assert_int_equal(f->e.nin, 2);
	assert_int_equal(f->e.out_len, 16);
	assert_int_equal(f->e.in_len, 513);
	assert_ptr_equal(f->e.iov[0].iov_base, f->mem.host + BUF_GPA);
	assert_ptr_equal(f->e.iov[1].iov_base, f->mem.host + BUF_GPA + 0x100);
	assert_ptr_equal(f->e.iov[2].iov_base, f->mem.host + BUF_GPA + 0x400);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 0);

	virtq_push(&f->vq, 0, 513);
	assert_int_equal(used(f)[1], 1);
	uint32_t *ring = (uint32_t *)(used(f) + 2);
	assert_int_equal(ring[0], 0);
	assert_int_equal(ring[1], 513);
	assert_false(f->vq.broken);
}

static bool page_bit(const uint64_t *bm, uint64_t gpa)
{
	return bm[gpa / 4096 / 64] >> (gpa / 4096 % 64) & 1;
}

/* While a migration logs kvz-vmm's own writes, a returned chain marks
 * exactly the used ring's page and its device-writable buffers' pages:
 * not the buffers the device only read, not the descriptor table or the
 * available ring (the guest's own writes, in KVM's log). */
static void test_dirty_log_of_vmm_writes(void **state)
{
	struct fixture *f = *state;
	uint64_t bm[RAM_SIZE / 4096 / 64] = {0};

	set_desc(f, DESC_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, DESC_GPA, 1, BUF_GPA + 0x5800, 0x1000, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_push(&f->vq, 0, 16);            /* not logging: nothing marked */
	assert_int_equal(guest_mem_log_start(&f->mem, NULL, 0), 0);
	guest_mem_take_dirty(&f->mem, bm);
	for (size_t i = 0; i < sizeof(bm) / sizeof(bm[0]); i++)
		assert_int_equal(bm[i], 0);

	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_push(&f->vq, 0, 0x1000);
	guest_mem_take_dirty(&f->mem, bm);
	unsigned n = 0;
	for (uint64_t gpa = 0; gpa < RAM_SIZE; gpa += 4096)
		n += page_bit(bm, gpa);
	assert_int_equal(n, 3);
	assert_true(page_bit(bm, USED_GPA));
	assert_true(page_bit(bm, BUF_GPA + 0x5000));
	assert_true(page_bit(bm, BUF_GPA + 0x6000));

	/* taken means cleared; a stopped log marks nothing */
	memset(bm, 0, sizeof(bm));
	guest_mem_take_dirty(&f->mem, bm);
	assert_int_equal(bm[BUF_GPA / 4096 / 64], 0);
	guest_mem_log_stop(&f->mem);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_push(&f->vq, 0, 0x1000);
	assert_int_equal(guest_mem_log_start(&f->mem, NULL, 0), 0);   /* starts clear */
	guest_mem_take_dirty(&f->mem, bm);
	assert_int_equal(bm[BUF_GPA / 4096 / 64], 0);
	assert_int_equal(bm[USED_GPA / 4096 / 64], 0);
	guest_mem_log_stop(&f->mem);
	free(f->mem.vmm_dirty_buf);
	f->mem.vmm_dirty_buf = NULL;
}

static void test_index_wraps(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 1, BUF_GPA, 8, 0, 0);
	/* Both sides near the 16-bit wrap: 65535 -> 0 must keep working. */
	avail(f)[1] = 65534;
	f->vq.last_avail = 65534;
	f->vq.used_idx = 65534;
	for (int i = 0; i < 4; i++) {
		offer(f, 1);
		assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
		virtq_push(&f->vq, f->e.head, 0);
	}
	assert_int_equal(f->vq.last_avail, 2);
	assert_int_equal(used(f)[1], 2);
}

static void expect_broken(struct fixture *f, const char *why)
{
	assert_int_equal(virtq_pop(&f->vq, &f->e), -1);
	assert_true(f->vq.broken);
	assert_non_null(strstr(f->vq.error, why));
	/* Stays broken: nothing more is processed until a reset. */
	assert_int_equal(virtq_pop(&f->vq, &f->e), -1);
}

static void test_loop(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, DESC_GPA, 1, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, 0);
	offer(f, 0);
	expect_broken(f, "loops");
}

static void test_self_loop(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 2, BUF_GPA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	offer(f, 2);
	expect_broken(f, "loops");
}

static void test_next_out_of_range(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT, QSIZE);
	offer(f, 0);
	expect_broken(f, "beyond table");
}

static void test_head_out_of_range(void **state)
{
	struct fixture *f = *state;

	offer(f, QSIZE + 3);
	expect_broken(f, "head");
}

static void test_avail_idx_too_far(void **state)
{
	struct fixture *f = *state;

	avail(f)[1] = QSIZE + 1;
	expect_broken(f, "ahead");
}

static void test_buffer_outside_ram(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, RAM_SIZE - 4, 8, 0, 0);  /* crosses the end */
	offer(f, 0);
	expect_broken(f, "outside guest RAM");
}

static void test_buffer_addr_overflow(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, UINT64_MAX - 8, 4096, 0, 0);
	offer(f, 0);
	expect_broken(f, "outside guest RAM");
}

static void test_buffer_in_hole(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, GUEST_MEM_HOLE_START, 8, 0, 0);
	offer(f, 0);
	expect_broken(f, "outside guest RAM");
}

static void test_readable_after_writable(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, BUF_GPA, 8, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	set_desc(f, DESC_GPA, 1, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	expect_broken(f, "readable");
}

static void test_zero_length_ignored(void **state)
{
	struct fixture *f = *state;

	/* A zero-length descriptor maps nothing, even at a bogus address. */
	set_desc(f, DESC_GPA, 0, UINT64_MAX, 0, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, DESC_GPA, 1, BUF_GPA, 8, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	assert_int_equal(f->e.nout, 0);
	assert_int_equal(f->e.nin, 1);
}

static void test_indirect(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	set_desc(f, IND_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, IND_GPA, 1, BUF_GPA + 64, 100, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
	set_desc(f, IND_GPA, 2, BUF_GPA + 256, 1, VIRTQ_DESC_F_WRITE, 0);
	set_desc(f, DESC_GPA, 4, IND_GPA, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 4);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	assert_int_equal(f->e.head, 4);
	assert_int_equal(f->e.nout, 1);
	assert_int_equal(f->e.nin, 2);
	assert_int_equal(f->e.in_len, 101);
}

static void test_indirect_not_negotiated(void **state)
{
	struct fixture *f = *state;

	set_desc(f, IND_GPA, 0, BUF_GPA, 16, 0, 0);
	set_desc(f, DESC_GPA, 0, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "not negotiated");
}

static void test_indirect_nested(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	set_desc(f, IND_GPA, 0, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	set_desc(f, DESC_GPA, 0, IND_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "nested");
}

static void test_indirect_bad_length(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	set_desc(f, DESC_GPA, 0, IND_GPA, 17, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "length");
}

static void test_indirect_loop(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	set_desc(f, IND_GPA, 0, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, IND_GPA, 1, BUF_GPA, 16, VIRTQ_DESC_F_NEXT, 0);
	set_desc(f, DESC_GPA, 0, IND_GPA, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "loops");
}

static void test_indirect_outside_ram(void **state)
{
	struct fixture *f = *state;

	f->vq.indirect = true;
	set_desc(f, DESC_GPA, 0, RAM_SIZE - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "outside guest RAM");
}

static void test_too_many_segments(void **state)
{
	struct fixture *f = *state;

	/* One direct segment, then an indirect table of the maximum size:
	 * one more than an element can hold. */
	f->vq.indirect = true;
	for (unsigned i = 0; i < VIRTQ_MAX_SEGS; i++)
		set_desc(f, IND_GPA, i, BUF_GPA, 1, i + 1 < VIRTQ_MAX_SEGS ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	set_desc(f, DESC_GPA, 0, BUF_GPA, 1, VIRTQ_DESC_F_NEXT, 1);
	set_desc(f, DESC_GPA, 1, IND_GPA, VIRTQ_MAX_SEGS * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(f, 0);
	expect_broken(f, "segments");
}

static void test_enable_checks(void **state)
{
	struct fixture *f = *state;
	struct virtq vq;

	virtq_reset(&vq, 6);
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = USED_GPA;
	assert_int_equal(virtq_enable(&vq, &f->mem), -1);
	assert_non_null(strstr(vq.error, "power of two"));

	virtq_reset(&vq, QSIZE);
	vq.desc_gpa = DESC_GPA + 8;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = USED_GPA;
	assert_int_equal(virtq_enable(&vq, &f->mem), -1);
	assert_non_null(strstr(vq.error, "misaligned"));

	virtq_reset(&vq, QSIZE);
	vq.desc_gpa = DESC_GPA;
	vq.avail_gpa = AVAIL_GPA;
	vq.used_gpa = RAM_SIZE - 16;
	assert_int_equal(virtq_enable(&vq, &f->mem), -1);
	assert_non_null(strstr(vq.error, "outside"));
	assert_false(vq.enabled);
	assert_int_equal(virtq_pop(&vq, &f->e), -1);
}

static void test_no_interrupt_flag(void **state)
{
	struct fixture *f = *state;

	set_desc(f, DESC_GPA, 0, BUF_GPA, 8, 0, 0);
	offer(f, 0);
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_push(&f->vq, 0, 0);
	assert_true(virtq_need_interrupt(&f->vq));
	avail(f)[0] = VIRTQ_AVAIL_F_NO_INTERRUPT;
	assert_false(virtq_need_interrupt(&f->vq));
}

static void test_event_idx(void **state)
{
	struct fixture *f = *state;

	f->vq.event_idx = true;
	set_desc(f, DESC_GPA, 0, BUF_GPA, 8, 0, 0);
	for (int i = 0; i < 3; i++)
		offer(f, 0);
	/* used_event = 1: the driver wants an interrupt once entry 1 is used. */
	avail(f)[2 + QSIZE] = 1;
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_push(&f->vq, 0, 0);
	assert_true(virtq_need_interrupt(&f->vq));  /* first one always */
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_push(&f->vq, 0, 0);
	assert_true(virtq_need_interrupt(&f->vq));  /* used idx passed 1 */
	assert_int_equal(virtq_pop(&f->vq, &f->e), 1);
	virtq_push(&f->vq, 0, 0);
	assert_false(virtq_need_interrupt(&f->vq)); /* event 1 already signalled */

	/* rearm publishes avail_event = what we consumed, and reports new work. */
	assert_false(virtq_rearm(&f->vq));
	assert_int_equal(used(f)[2 + 4 * QSIZE], 3);
	offer(f, 0);
	assert_true(virtq_rearm(&f->vq));
}

static void test_iov_copy(void **state)
{
	(void)state;
	uint8_t a[3], b[5], out[8];
	struct iovec iov[2] = { { a, sizeof(a) }, { b, sizeof(b) } };
	const uint8_t src[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	assert_int_equal(virtq_buf_to_iov(iov, 2, 0, src, 8), 8);
	assert_int_equal(a[2], 3);
	assert_int_equal(b[0], 4);
	memset(out, 0, sizeof(out));
	assert_int_equal(virtq_iov_to_buf(iov, 2, 2, out, 8), 6);
	assert_int_equal(out[0], 3);
	assert_int_equal(out[5], 8);
	assert_int_equal(virtq_iov_to_buf(iov, 2, 9, out, 8), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_simple_chain),
		T(test_dirty_log_of_vmm_writes),
		T(test_index_wraps),
		T(test_loop),
		T(test_self_loop),
		T(test_next_out_of_range),
		T(test_head_out_of_range),
		T(test_avail_idx_too_far),
		T(test_buffer_outside_ram),
		T(test_buffer_addr_overflow),
		T(test_buffer_in_hole),
		T(test_readable_after_writable),
		T(test_zero_length_ignored),
		T(test_indirect),
		T(test_indirect_not_negotiated),
		T(test_indirect_nested),
		T(test_indirect_bad_length),
		T(test_indirect_loop),
		T(test_indirect_outside_ram),
		T(test_too_many_segments),
		T(test_enable_checks),
		T(test_no_interrupt_flag),
		T(test_event_idx),
		T(test_iov_copy),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
