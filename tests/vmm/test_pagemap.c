/* Which pages of anonymous guest RAM a save reads (state/pagemap.h): only
 * those /proc/self/pagemap shows present or swapped, plus every page of a
 * chunk named must-read (mapped from a snapshot file); every page when
 * pagemap cannot be read. And the snapshot writer fed by it writes exactly
 * the non-zero pages, at their offsets. Real anonymous memory, no KVM. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest_mem.h"
#include "state/pagemap.h"
#include "state/snapshot_file.h"

#define PAGE 4096u
#define RAM (64u << 20)
#define PAGES (RAM / PAGE)
#define CHUNK_PAGES (PAGEMAP_CHUNK / PAGE)

static const uint64_t touched[] = {3, 1000, PAGES - 1};

/* 64 MiB of guest RAM with 4 KiB pages (no huge page would fill the
 * neighbours of a touched page) and the pages of touched[] written. */
static int setup(void **state)
{
	struct guest_mem *m = calloc(1, sizeof(*m));
	if (!m || guest_mem_init(m, RAM, false) < 0)
		return -1;
	madvise(m->host, RAM, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < sizeof(touched) / sizeof(touched[0]); i++)
		memset(m->host + touched[i] * PAGE + 100, (int)(0x41 + i), 200);
	*state = m;
	return 0;
}

static int teardown(void **state)
{
	guest_mem_destroy(*state);
	free(*state);
	return 0;
}

static struct guest_mem *mem_or_skip(void **state)
{
	struct guest_mem *m = *state;
	if (m->pagemap_fd < 0) {
		print_message("skipped: /proc/self/pagemap cannot be opened here (%s)\n",
			      strerror(m->pagemap_errno));
		skip();
	}
	return m;
}

/* Every page next_data yields from 0, into out; returns how many. */
static size_t walk(struct pagemap_reader *r, uint64_t *out, size_t max)
{
	size_t n = 0;
	for (uint64_t p = pagemap_next_data(r, 0, PAGES); p < PAGES && n < max;
	     p = pagemap_next_data(r, p + 1, PAGES))
		out[n++] = p;
	return n;
}

static void test_only_touched_pages(void **state)
{
	struct guest_mem *m = mem_or_skip(state);
	struct pagemap_reader r;
	pagemap_reader_init(&r, m->pagemap_fd, m->host, RAM, NULL);
	uint64_t got[8];
	assert_int_equal(walk(&r, got, 8), 3);
	assert_memory_equal(got, touched, sizeof(touched));
	assert_false(pagemap_may_hold_data(&r, 4));
	assert_true(pagemap_may_hold_data(&r, 1000));
	assert_int_equal(r.error, 0);
}

static void test_discarded_page_is_skipped(void **state)
{
	struct guest_mem *m = mem_or_skip(state);
	assert_int_equal(guest_mem_discard(m, 1000 * PAGE, PAGE), 0);   /* balloon */
	struct pagemap_reader r;
	pagemap_reader_init(&r, m->pagemap_fd, m->host, RAM, NULL);
	uint64_t got[8];
	assert_int_equal(walk(&r, got, 8), 2);
	assert_int_equal(got[0], 3);
	assert_int_equal(got[1], PAGES - 1);
}

/* A chunk mapped from a snapshot file: its pages not present may be the
 * file's, so every one of them is yielded; other chunks by pagemap. */
static void test_must_read_chunk(void **state)
{
	struct guest_mem *m = mem_or_skip(state);
	uint64_t must[1] = {1ull << 5};
	struct pagemap_reader r;
	pagemap_reader_init(&r, m->pagemap_fd, m->host, RAM, must);
	uint64_t got[CHUNK_PAGES + 8];
	size_t n = walk(&r, got, CHUNK_PAGES + 8);
	assert_int_equal(n, CHUNK_PAGES + 3);
	assert_int_equal(got[0], 3);
	assert_int_equal(got[1], 1000);
	for (uint64_t i = 0; i < CHUNK_PAGES; i++)
		assert_int_equal(got[2 + i], 5 * CHUNK_PAGES + i);
	assert_int_equal(got[n - 1], PAGES - 1);
}

/* pagemap unreadable (here: a file that reads nothing): every page may
 * hold data, the error is kept for the caller's debug line. No fd: the
 * same, silently. */
static void test_unreadable_pagemap_reads_everything(void **state)
{
	struct guest_mem *m = *state;
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	struct pagemap_reader r;
	pagemap_reader_init(&r, fd, m->host, RAM, NULL);
	assert_int_equal(pagemap_next_data(&r, 4, PAGES), 4);
	assert_int_equal(r.error, EIO);
	assert_true(pagemap_may_hold_data(&r, 5));
	close(fd);
	pagemap_reader_init(&r, -1, m->host, RAM, NULL);
	assert_int_equal(pagemap_next_data(&r, 7, PAGES), 7);
	assert_int_equal(r.error, 0);
}

/* The writer fed by pagemap: touched pages read, the non-zero ones written
 * where they lie, a touched page that is all zeros again left a hole. */
static void test_writer_writes_exactly_the_data(void **state)
{
	struct guest_mem *m = mem_or_skip(state);
	memset(m->host + 2000 * PAGE, 0x77, PAGE);
	memset(m->host + 2000 * PAGE, 0, PAGE);   /* present, zero */
	char path[] = "/tmp/kvz-pagemap-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	char err[256] = "";
	struct snap_writer w;
	assert_int_equal(snap_writer_begin(&w, fd, RAM, NULL, err, sizeof(err)), 0);
	struct ram_iter it;
	struct pagemap_reader r;
	ram_iter_init(&it, RAM, NULL, -1);
	pagemap_reader_init(&r, m->pagemap_fd, m->host, RAM, NULL);
	ram_iter_use_pagemap(&it, &r);
	assert_int_equal(snap_writer_ram(&w, m->host, &it, err, sizeof(err)), 0);
	assert_int_equal(w.ram_read, 4 * PAGE);
	assert_int_equal(w.ram_written, 3 * PAGE);
	uint8_t *back = malloc(RAM);
	assert_non_null(back);
	assert_int_equal(pread(fd, back, RAM, (off_t)w.ram_offset), RAM);
	assert_memory_equal(back, m->host, RAM);
	assert_int_equal(lseek(fd, (off_t)w.ram_offset, SEEK_DATA), (off_t)(w.ram_offset + 3 * PAGE));
	free(back);
	snap_writer_free(&w);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_only_touched_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discarded_page_is_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_must_read_chunk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreadable_pagemap_reads_everything, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_writes_exactly_the_data, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
