/* The qcow2 driver of the block layer (src/vmm/block/qcow2_blk.c): opened
 * by name and by probing (read-only only), multi-segment writes and reads,
 * flush, discard and write-zeroes through blk_submit, reads of mixed
 * cluster kinds through io_uring and the synchronous engine, read-only
 * refusals, the image lock, and a hostile image refused with one line. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "block.h"
#include "qcow2.h"

#define IMG_SIZE (8u << 20)

static char img[64];

static int setup(void **state)
{
	(void)state;
	snprintf(img, sizeof(img), "/tmp/kvz-test-q2blk-XXXXXX");
	int fd = mkstemp(img);
	assert_true(fd >= 0);
	close(fd);
	unlink(img);
	char err[256];
	struct qcow2_create_opts o = {IMG_SIZE, 12, NULL, NULL};
	assert_int_equal(qcow2_create(img, &o, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(img);
	return 0;
}

static struct blk_backend *open_q(const char *fmt, bool readonly, char *err, size_t errlen)
{
	struct blk_open_opts o = {.path = img, .format = fmt, .readonly = readonly};
	struct blk_backend *b = NULL;
	return blk_open(&o, &b, err, errlen) < 0 ? NULL : b;
}

struct rq {
	struct blk_req req;
	int result;
	bool done;
};

static void on_done(struct blk_req *req, int result)
{
	struct rq *r = (struct rq *)((char *)req - offsetof(struct rq, req));
	r->result = result;
	r->done = true;
}

static int submit(struct blk_backend *b, struct blk_aio *a, enum blk_op op, uint64_t off,
		  uint64_t len, struct iovec *iov, unsigned niov)
{
	struct rq r = {.req = {.op = op, .offset = off, .len = len, .iov = iov, .niov = niov,
			       .aio = a, .done = on_done}};
	blk_submit(b, &r.req);
	assert_true(r.done); /* synchronous completion */
	return r.result;
}

static void test_rw_flush_discard_zeroes(void **state)
{
	(void)state;
	char err[256];
	struct blk_aio *a = blk_aio_create(8, true, err, sizeof(err));
	assert_non_null(a);
	struct blk_backend *b = open_q("qcow2", false, err, sizeof(err));
	assert_non_null(b);
	assert_int_equal(b->size, IMG_SIZE);
	assert_string_equal(b->driver->name, "qcow2");
	static uint8_t w1[3000], w2[70000], r1[73000];
	memset(w1, 0x11, sizeof(w1));
	memset(w2, 0x22, sizeof(w2));
	struct iovec wv[2] = {{w1, sizeof(w1)}, {w2, sizeof(w2)}};
	uint64_t off = 4096 * 5 + 100; /* unaligned, crosses many clusters */
	assert_int_equal(submit(b, a, BLK_OP_WRITE, off, sizeof(w1) + sizeof(w2), wv, 2), 0);
	/* Completed, not flushed: the new L2 entries wait in the cache (no
	 * metadata write per request), the file is consistent all the same
	 * (what a kill -9 leaves). After blk_quiesce (the VM's pause) a copy
	 * of the file (kvzd's snapshot) is whole: the data, not even a leak. */
	struct qcow2 *copy;
	struct qcow2_check cc;
	assert_int_equal(qcow2_open(img, -1, 0, &copy, err, sizeof(err)), 0);
	assert_int_equal(qcow2_check(copy, &cc), 0);
	assert_int_equal(cc.corruptions, 0);
	assert_int_equal(qcow2_read(copy, r1, off, sizeof(w1)), 0);
	assert_memory_not_equal(r1, w1, sizeof(w1));
	qcow2_close(copy);
	assert_int_equal(blk_quiesce(b), 0);
	assert_int_equal(qcow2_open(img, -1, 0, &copy, err, sizeof(err)), 0);
	assert_int_equal(qcow2_read(copy, r1, off, sizeof(w1)), 0);
	assert_memory_equal(r1, w1, sizeof(w1));
	assert_int_equal(qcow2_check(copy, &cc), 0);
	assert_int_equal(cc.corruptions, 0);
	assert_int_equal(cc.leaks, 0);
	qcow2_close(copy);
	assert_int_equal(submit(b, a, BLK_OP_FLUSH, 0, 0, NULL, 0), 0);
	struct iovec rv[2] = {{r1, 1000}, {r1 + 1000, sizeof(r1) - 1000}};
	assert_int_equal(submit(b, a, BLK_OP_READ, off, sizeof(r1), rv, 2), 0);
	assert_memory_equal(r1, w1, sizeof(w1));
	assert_memory_equal(r1 + sizeof(w1), w2, sizeof(w2));
	assert_int_equal(submit(b, a, BLK_OP_WRITE_ZEROES, 8192 * 3, 8192, NULL, 0), 0);
	assert_int_equal(submit(b, a, BLK_OP_DISCARD, 4096 * 10, 4096 * 3, NULL, 0), 0);
	struct iovec one = {r1, 4096 * 3};
	assert_int_equal(submit(b, a, BLK_OP_READ, 4096 * 10, 4096 * 3, &one, 1), 0);
	for (size_t i = 0; i < 4096 * 3; i++)
		assert_int_equal(r1[i], 0);
	/* Beyond the disk: refused before the backend. */
	assert_int_not_equal(submit(b, a, BLK_OP_READ, IMG_SIZE - 10, 4096, &one, 1), 0);
	blk_close(b);
	blk_aio_destroy(a);
	/* What was written is in the file for any other reader. */
	struct qcow2 *q;
	assert_int_equal(qcow2_open(img, -1, 0, &q, err, sizeof(err)), 0);
	assert_int_equal(qcow2_read(q, r1, off, sizeof(w1)), 0);
	assert_memory_equal(r1, w1, sizeof(w1));
	struct qcow2_check c;
	assert_int_equal(qcow2_check(q, &c), 0);
	assert_int_equal(c.corruptions, 0);
	qcow2_close(q);
}

/* Waits for an asynchronous completion (io_uring engine). */
static int submit_wait(struct blk_backend *b, struct blk_aio *a, enum blk_op op, uint64_t off,
		       uint64_t len, struct iovec *iov, unsigned niov)
{
	struct rq r = {.req = {.op = op, .offset = off, .len = len, .iov = iov, .niov = niov,
			       .aio = a, .done = on_done}};
	blk_submit(b, &r.req);
	blk_aio_flush_submissions(a);
	while (!r.done)
		blk_aio_poll(a, true);
	return r.result;
}

/* Reads that mix this image's clusters (through the engine), zero,
 * compressed and unallocated ones (read at once), in odd-sized segments,
 * on io_uring and on the synchronous engine: the same bytes as the
 * library's own read. */
static void check_mixed_reads(bool sync)
{
	char err[256];
	struct qcow2 *q;
	assert_int_equal(qcow2_open(img, -1, QCOW2_OPEN_WRITE, &q, err, sizeof(err)), 0);
	static uint8_t data[1 << 20], want[1 << 20], got[1 << 20];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + i / 4096);
	assert_int_equal(qcow2_write(q, data, 0, 256 << 10), 0);          /* clusters 0-63 */
	assert_int_equal(qcow2_write_zeroes(q, 64 << 10, 16 << 10), 0);   /* zero clusters */
	assert_int_equal(qcow2_write_compressed(q, 100, data), 0);        /* compressed */
	assert_int_equal(qcow2_write(q, data, 500 << 10, 300 << 10), 0); /* partial ends */
	assert_int_equal(qcow2_read(q, want, 0, sizeof(want)), 0);
	assert_int_equal(qcow2_close(q), 0);
	struct blk_aio *a = blk_aio_create(16, sync, err, sizeof(err));
	assert_non_null(a);
	if (!sync && blk_aio_kind(a) != BLK_AIO_IO_URING) {
		blk_aio_destroy(a);
		print_message("io_uring unavailable here: the engine part is skipped\n");
		return;
	}
	struct blk_backend *b = open_q("qcow2", false, err, sizeof(err));
	assert_non_null(b);
	struct iovec v[64];
	size_t pos = 0;
	unsigned n = 0;
	while (pos < sizeof(got)) { /* segments of 1 byte to 37 KiB */
		size_t len = 1 + (n * 9973) % (37 << 10);
		len = len < sizeof(got) - pos ? len : sizeof(got) - pos;
		if (n == 63)
			len = sizeof(got) - pos;
		v[n++] = (struct iovec){got + pos, len};
		pos += len;
	}
	memset(got, 0xee, sizeof(got));
	assert_int_equal(submit_wait(b, a, BLK_OP_READ, 0, sizeof(got), v, n), 0);
	assert_memory_equal(got, want, sizeof(got));
	/* Unaligned start and end. */
	struct iovec one = {got, 333333};
	assert_int_equal(submit_wait(b, a, BLK_OP_READ, 4097, 333333, &one, 1), 0);
	assert_memory_equal(got, want + 4097, 333333);
	blk_close(b);
	blk_aio_destroy(a);
}

static void test_mixed_reads_io_uring(void **state)
{
	(void)state;
	check_mixed_reads(false);
}

static void test_mixed_reads_sync(void **state)
{
	(void)state;
	check_mixed_reads(true);
}

static void test_readonly_and_probe(void **state)
{
	(void)state;
	char err[256];
	struct blk_aio *a = blk_aio_create(8, true, err, sizeof(err));
	/* Probed: only for a read-only open is the magic trusted. */
	struct blk_backend *b = open_q(NULL, true, err, sizeof(err));
	assert_non_null(b);
	assert_string_equal(b->driver->name, "qcow2");
	static uint8_t buf[4096];
	struct iovec v = {buf, sizeof(buf)};
	assert_int_equal(submit(b, a, BLK_OP_WRITE, 0, sizeof(buf), &v, 1), -EROFS);
	/* Shared locks: a second reader is fine, a writer is not. */
	struct blk_backend *b2 = open_q("qcow2", true, err, sizeof(err));
	assert_non_null(b2);
	assert_null(open_q("qcow2", false, err, sizeof(err)));
	assert_non_null(strstr(err, "in use"));
	/* qcow2 locks before it reads its header even for an incoming
	 * migration (lock_later): it is never opened beside a writer. */
	struct blk_backend *b3 = NULL;
	struct blk_open_opts o = {.path = img, .format = "qcow2", .lock_later = true};
	assert_int_equal(blk_open(&o, &b3, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "in use"));
	blk_close(b2);
	blk_close(b);
	blk_aio_destroy(a);
}

static void test_hostile_image_refused(void **state)
{
	(void)state;
	int fd = open(img, O_RDWR);
	uint8_t huge[4] = {0x7f, 0xff, 0xff, 0xff}; /* l1_size */
	assert_int_equal(pwrite(fd, huge, 4, 36), 4);
	close(fd);
	char err[256];
	assert_null(open_q("qcow2", false, err, sizeof(err)));
	assert_non_null(strstr(err, "L1 table"));
	assert_null(strchr(err, '\n'));
	/* Raw is what the default gives: a qcow2-looking file opened as raw. */
	struct blk_backend *b = open_q("raw", false, err, sizeof(err));
	assert_non_null(b);
	assert_string_equal(b->driver->name, "raw");
	blk_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rw_flush_discard_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixed_reads_io_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mixed_reads_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly_and_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_image_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
