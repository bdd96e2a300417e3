/* The kernel's (vhost-net's) dirty log as guest_mem keeps it for live
 * migration: loggers are told when it starts and stops, a failing logger
 * leaves both logs off, and a sync moves its bits (indexed by guest
 * physical page, the PCI hole included) to the migration's bitmap (indexed
 * by RAM offset), fetched and cleared atomically while a writer keeps
 * setting bits, never a bit outside RAM. No RAM is mapped: the log code
 * only reads the sizes. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guest_mem.h"
#include "page_bitmap.h"

#define GIB (1ull << 30)

struct fake_logger {
	int calls;
	bool saw_log;      /* guest_mem.vhost_log at the last call */
	bool fail;
	struct guest_mem *m;
};

static int log_changed(void *opaque, char *err, size_t errlen)
{
	struct fake_logger *l = opaque;
	l->calls++;
	l->saw_log = __atomic_load_n(&l->m->vhost_log, __ATOMIC_ACQUIRE) != NULL;
	if (l->fail && l->saw_log) {
		snprintf(err, errlen, "fake logger refuses");
		return -1;
	}
	return 0;
}

static void init(struct guest_mem *m, uint64_t lo, uint64_t hi)
{
	memset(m, 0, sizeof(*m));
	m->memfd = -1;
	m->lo_size = lo;
	m->hi_size = hi;
	m->size = lo + hi;
}

static void fini(struct guest_mem *m)
{
	guest_mem_log_stop(m);
	free(m->vmm_dirty_buf);
	free(m->vhost_log_buf);
}

/* What vhost's set_bit does: bit gpa/4096 of a little-endian bitmap. */
static void kernel_marks(struct guest_mem *m, uint64_t gpa)
{
	uint64_t pg = gpa / 4096;
	__atomic_fetch_or(&m->vhost_log[pg / 64], 1ull << (pg % 64), __ATOMIC_RELAXED);
}

static void add(struct guest_mem *m, struct fake_logger *l)
{
	l->m = m;
	struct guest_mem_logger g = { log_changed, l };
	assert_int_equal(guest_mem_add_logger(m, &g), 0);
}

/* RAM across the hole (3 GiB low, 1 GiB + 3 pages high): each edge page
 * lands at its RAM offset; the hole and past the end are left alone. */
static void test_gpa_log_to_offsets(void **state)
{
	(void)state;
	struct guest_mem m;
	init(&m, 3 * GIB, GIB + 3 * 4096);
	struct fake_logger l = {0};
	add(&m, &l);
	char err[256] = "";
	assert_int_equal(guest_mem_log_start(&m, err, sizeof(err)), 0);
	assert_int_equal(l.calls, 1);
	assert_true(l.saw_log);
	assert_non_null(m.vhost_log);

	uint64_t hi_end = GUEST_MEM_HI_START + m.hi_size;
	kernel_marks(&m, 0);
	kernel_marks(&m, 3 * GIB - 4096);               /* last low page */
	kernel_marks(&m, GUEST_MEM_HI_START);           /* first high page */
	kernel_marks(&m, hi_end - 4096);                /* last high page */
	kernel_marks(&m, 3 * GIB + GIB / 2);            /* the hole: no RAM */
	kernel_marks(&m, hi_end);                       /* past the end, same word */

	uint64_t words = guest_mem_bitmap_words(&m);
	uint64_t *out = calloc(words, sizeof(uint64_t));
	assert_non_null(out);
	guest_mem_take_dirty(&m, out);
	assert_int_equal(page_count(out, words), 4);
	assert_true(page_bit(out, 0));
	assert_true(page_bit(out, 3 * GIB - 4096));
	assert_true(page_bit(out, 3 * GIB));
	assert_true(page_bit(out, m.size - 4096));

	memset(out, 0, words * sizeof(uint64_t));
	guest_mem_take_dirty(&m, out);   /* taken means cleared */
	assert_int_equal(page_count(out, words), 0);

	guest_mem_log_stop(&m);
	assert_int_equal(l.calls, 2);
	assert_false(l.saw_log);
	assert_null(m.vhost_log);
	guest_mem_take_dirty(&m, out);   /* off: nothing to take */
	assert_int_equal(page_count(out, words), 0);
	free(out);
	fini(&m);
}

/* Low RAM only, not a whole number of words: the last page is taken, the
 * bit after it (no RAM) is not. */
static void test_partial_word(void **state)
{
	(void)state;
	struct guest_mem m;
	init(&m, 100 * 4096, 0);
	struct fake_logger l = {0};
	add(&m, &l);
	assert_int_equal(guest_mem_log_start(&m, NULL, 0), 0);
	assert_int_equal(guest_mem_gpa_log_words(&m), 2);
	kernel_marks(&m, 99 * 4096);
	kernel_marks(&m, 100 * 4096);
	uint64_t out[2] = {0};
	guest_mem_take_dirty(&m, out);
	assert_int_equal(page_count(out, 2), 1);
	assert_true(page_bit(out, 99 * 4096));
	fini(&m);
}

/* One logger fails to start: the start fails with its line, every logger
 * is told to stop, both logs are off. */
static void test_failing_logger(void **state)
{
	(void)state;
	struct guest_mem m;
	init(&m, 64 * 4096, 0);
	struct fake_logger ok = {0}, bad = { .fail = true };
	add(&m, &ok);
	add(&m, &bad);
	char err[256] = "";
	assert_int_equal(guest_mem_log_start(&m, err, sizeof(err)), -1);
	assert_string_equal(err, "fake logger refuses");
	assert_null(m.vhost_log);
	assert_null(m.vmm_dirty);
	assert_int_equal(ok.calls, 2);
	assert_false(ok.saw_log);

	/* Without the failing one it starts; removed loggers are not told. */
	guest_mem_remove_logger(&m, &bad);
	assert_int_equal(guest_mem_log_start(&m, err, sizeof(err)), 0);
	assert_int_equal(bad.calls, 2);
	assert_int_equal(ok.calls, 3);
	assert_true(ok.saw_log);
	fini(&m);
}

/* No kernel data path: no kernel log at all, nobody told. */
static void test_no_loggers(void **state)
{
	(void)state;
	struct guest_mem m;
	init(&m, 64 * 4096, 0);
	assert_int_equal(guest_mem_log_start(&m, NULL, 0), 0);
	assert_null(m.vhost_log);
	assert_non_null(m.vmm_dirty);
	for (unsigned i = 0; i < GUEST_MEM_MAX_LOGGERS; i++) {
		struct guest_mem_logger g = { log_changed, &m.loggers[i] };
		assert_int_equal(guest_mem_add_logger(&m, &g), 0);
	}
	struct guest_mem_logger extra = { log_changed, &m };
	assert_int_equal(guest_mem_add_logger(&m, &extra), -ENOSPC);
	m.nloggers = 0;
	fini(&m);
}

#define RACE_SETS 200000

struct race {
	struct guest_mem m;
	bool done;
};

/* Sets the bits of one word in turn, each once it was taken since its last
 * set, as vhost keeps setting bits next to the ones a sync is clearing. */
static void *race_writer(void *arg)
{
	struct race *r = arg;
	for (uint64_t i = 0; i < RACE_SETS; i++) {
		uint64_t b = 1ull << (i % 64);
		while (__atomic_load_n(&r->m.vhost_log[0], __ATOMIC_RELAXED) & b)
			;   /* not yet taken: setting it again would merge two sets */
		__atomic_fetch_or(&r->m.vhost_log[0], b, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&r->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Every bit the kernel sets while syncs take them is taken exactly once
 * (a read-then-zero loses the bits set in between). */
static void test_concurrent_writer(void **state)
{
	(void)state;
	struct race r = {0};
	init(&r.m, 64 * 4096, 0);
	struct fake_logger l = {0};
	add(&r.m, &l);
	assert_int_equal(guest_mem_log_start(&r.m, NULL, 0), 0);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, race_writer, &r), 0);
	uint64_t taken = 0;
	/* A lost bit counts short: the writer still finishes (it was cleared). */
	while (!__atomic_load_n(&r.done, __ATOMIC_ACQUIRE)) {
		uint64_t out = 0;
		guest_mem_take_dirty(&r.m, &out);
		taken += (uint64_t)__builtin_popcountll(out);
	}
	pthread_join(t, NULL);
	uint64_t out = 0;
	guest_mem_take_dirty(&r.m, &out);
	taken += (uint64_t)__builtin_popcountll(out);
	assert_int_equal(taken, RACE_SETS);
	fini(&r.m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gpa_log_to_offsets),
		cmocka_unit_test(test_partial_word),
		cmocka_unit_test(test_failing_logger),
		cmocka_unit_test(test_no_loggers),
		cmocka_unit_test(test_concurrent_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
