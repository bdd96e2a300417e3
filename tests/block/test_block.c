/* The block layer (src/vmm/block): opening images, the checks before a
 * backend, the raw backend, and both engines: many requests in flight,
 * completions out of order, flushes after what came before them, short
 * reads at the end of the file, and a ring that refuses every operation
 * but its own. Every engine test runs on io_uring and on the synchronous
 * fallback; io_uring tests skip with the reason where the kernel refuses
 * io_uring. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "block.h"

#define IMG_SIZE (1u << 20)

static char img[64];

static int setup(void **state)
{
	(void)state;
	snprintf(img, sizeof(img), "/tmp/kvz-test-block-XXXXXX");
	int fd = mkstemp(img);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(img);
	return 0;
}

/* An engine of the kind the test asks for, or a skip. */
static struct blk_aio *engine(bool sync)
{
	char err[256];
	struct blk_aio *a = blk_aio_create(64, sync, err, sizeof(err));
	assert_non_null(a);
	if (!sync && blk_aio_kind(a) != BLK_AIO_IO_URING) {
		blk_aio_destroy(a);
		print_message("io_uring unavailable on this kernel (disabled or filtered): skipped\n");
		skip();
	}
	return a;
}

static struct blk_backend *open_raw(bool readonly)
{
	char err[256];
	struct blk_open_opts o = { .path = img, .format = "raw", .readonly = readonly };
	struct blk_backend *b = NULL;
	if (blk_open(&o, &b, err, sizeof(err)) < 0)
		fail_msg("blk_open: %s", err);
	return b;
}

struct rq {
	struct blk_req req;
	struct iovec iov[2];
	int result;
	bool done;
	unsigned order;      /* completion rank */
};

static unsigned completions;

static void rq_done(struct blk_req *req, int result)
{
	struct rq *r = req->opaque;
	assert_false(r->done);   /* exactly once */
	r->result = result;
	r->done = true;
	r->order = completions++;
}

static void rq_init(struct rq *r, struct blk_aio *a, enum blk_op op, uint64_t off, void *buf, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->iov[0] = (struct iovec){ buf, len };
	r->req = (struct blk_req){ .op = op, .offset = off, .len = len, .iov = r->iov,
				   .niov = buf ? 1 : 0, .aio = a, .done = rq_done, .opaque = r };
}

static void wait_all(struct blk_aio *a, struct rq *r, unsigned n)
{
	for (int spins = 0; spins < 100000; spins++) {
		bool all = true;
		for (unsigned i = 0; i < n; i++)
			all &= r[i].done;
		if (all)
			return;
		blk_aio_poll(a, true);
	}
	fail_msg("requests did not complete");
}

/* ---- opening and checks ---- */

static void test_open_errors(void **state)
{
	(void)state;
	char err[256];
	struct blk_backend *b = NULL;
	struct blk_open_opts o = { .path = img, .format = "vmdk" };
	assert_int_equal(blk_open(&o, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown format 'vmdk'"));
	o = (struct blk_open_opts){ .path = "/nonexistent/x.img", .format = "raw" };
	assert_int_equal(blk_open(&o, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	o = (struct blk_open_opts){ .path = "/tmp", .format = "raw", .readonly = true };
	assert_int_equal(blk_open(&o, &b, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	/* Probing: nothing recognizes a file of zeros, so it is raw. */
	o = (struct blk_open_opts){ .path = img };
	assert_int_equal(blk_open(&o, &b, err, sizeof(err)), 0);
	assert_string_equal(b->driver->name, "raw");
	assert_int_equal(b->size, IMG_SIZE);
	/* A second writer is refused (the image lock). */
	struct blk_backend *b2 = NULL;
	o.format = "raw";
	assert_int_equal(blk_open(&o, &b2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "in use"));
	blk_close(b);
}

/* The lock moves as in a migration on shared storage: the target opens
 * beside the source (lock_later), takes the lock once the source dropped
 * it, and then the source cannot take it back. */
static void test_lock_handover(void **state)
{
	(void)state;
	char err[256];
	struct blk_backend *src = NULL, *dst = NULL;
	struct blk_open_opts o = { .path = img, .format = "raw" };
	assert_int_equal(blk_open(&o, &src, err, sizeof(err)), 0);
	assert_true(src->locked);
	o.lock_later = true;
	assert_int_equal(blk_open(&o, &dst, err, sizeof(err)), 0);
	assert_false(dst->locked);
	assert_int_equal(blk_lock(dst, true, img, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "in use by another process"));
	assert_false(dst->locked);
	assert_int_equal(blk_lock(src, false, img, err, sizeof(err)), 0);
	assert_int_equal(blk_lock(src, false, img, err, sizeof(err)), 0);  /* no-op */
	assert_int_equal(blk_lock(dst, true, img, err, sizeof(err)), 0);
	assert_int_equal(blk_lock(dst, true, img, err, sizeof(err)), 0);   /* no-op */
	assert_int_equal(blk_lock(src, true, img, err, sizeof(err)), -1);
	assert_false(src->locked);
	blk_close(src);
	blk_close(dst);
	/* A reader beside a reader: shared locks. */
	o = (struct blk_open_opts){ .path = img, .format = "raw", .readonly = true };
	assert_int_equal(blk_open(&o, &src, err, sizeof(err)), 0);
	assert_int_equal(blk_open(&o, &dst, err, sizeof(err)), 0);
	o.readonly = false;
	struct blk_backend *w = NULL;
	assert_int_equal(blk_open(&o, &w, err, sizeof(err)), -1);
	blk_close(src);
	blk_close(dst);
}

static void check_refusals(bool sync)
{
	struct blk_aio *a = engine(sync);
	struct blk_backend *b = open_raw(false);
	uint8_t buf[512];
	struct rq r;

	rq_init(&r, a, BLK_OP_READ, IMG_SIZE - 256, buf, sizeof(buf));   /* crosses the end */
	blk_submit(b, &r.req);
	assert_true(r.done);
	assert_int_equal(r.result, -EINVAL);
	rq_init(&r, a, BLK_OP_READ, UINT64_MAX - 100, buf, sizeof(buf)); /* wraps */
	blk_submit(b, &r.req);
	assert_int_equal(r.result, -EINVAL);
	rq_init(&r, a, BLK_OP_DISCARD, IMG_SIZE, NULL, 1);
	blk_submit(b, &r.req);
	assert_int_equal(r.result, -EINVAL);
	rq_init(&r, a, (enum blk_op)77, 0, NULL, 0);
	blk_submit(b, &r.req);
	assert_int_equal(r.result, -EOPNOTSUPP);
	blk_close(b);

	b = open_raw(true);
	memset(buf, 0x5a, sizeof(buf));
	enum blk_op writes[] = { BLK_OP_WRITE, BLK_OP_DISCARD, BLK_OP_WRITE_ZEROES };
	for (unsigned i = 0; i < 3; i++) {
		rq_init(&r, a, writes[i], 0, writes[i] == BLK_OP_WRITE ? buf : NULL, sizeof(buf));
		blk_submit(b, &r.req);
		assert_true(r.done);
		assert_int_equal(r.result, -EROFS);
	}
	/* A flush of a read-only disk has nothing to do and succeeds. */
	rq_init(&r, a, BLK_OP_FLUSH, 0, NULL, 0);
	blk_submit(b, &r.req);
	blk_aio_flush_submissions(a);
	wait_all(a, &r, 1);
	assert_int_equal(r.result, 0);
	blk_close(b);
	blk_aio_destroy(a);
	/* Nothing reached the file. */
	int fd = open(img, O_RDONLY);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
	close(fd);
	for (unsigned i = 0; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
}

static void test_refusals_uring(void **state) { (void)state; check_refusals(false); }
static void test_refusals_sync(void **state) { (void)state; check_refusals(true); }

/* ---- many in flight ---- */

#define NREQ 48
#define CHUNK 8192

static void check_many_in_flight(bool sync)
{
	struct blk_aio *a = engine(sync);
	struct blk_backend *b = open_raw(false);
	static uint8_t wbuf[NREQ][CHUNK], rbuf[NREQ][CHUNK];
	static struct rq r[NREQ];

	for (unsigned i = 0; i < NREQ; i++) {
		memset(wbuf[i], (int)(i * 7 + 1), CHUNK);
		/* Two segments each: the engine walks iovecs. */
		rq_init(&r[i], a, BLK_OP_WRITE, (uint64_t)i * CHUNK, wbuf[i], CHUNK / 2);
		r[i].iov[1] = (struct iovec){ wbuf[i] + CHUNK / 2, CHUNK / 2 };
		r[i].req.niov = 2;
		r[i].req.len = CHUNK;
		blk_submit(b, &r[i].req);
		/* raw's writes are copies into the page cache, made at once on
		 * either engine: io_uring would hand them to a kernel worker. */
		assert_true(r[i].done);
		assert_int_equal(r[i].result, 0);
	}
	assert_int_equal(blk_aio_in_flight(a), 0);
	for (unsigned i = 0; i < NREQ; i++) {
		rq_init(&r[i], a, BLK_OP_READ, (uint64_t)i * CHUNK, rbuf[i], CHUNK);
		blk_submit(b, &r[i].req);
	}
	if (!sync)   /* nothing went to the kernel before the batch is sent */
		assert_int_equal(blk_aio_in_flight(a), NREQ);
	blk_aio_flush_submissions(a);
	wait_all(a, r, NREQ);
	for (unsigned i = 0; i < NREQ; i++) {
		assert_int_equal(r[i].result, 0);
		assert_memory_equal(rbuf[i], wbuf[i], CHUNK);
	}
	blk_close(b);
	blk_aio_destroy(a);
}

static void test_many_in_flight_uring(void **state) { (void)state; check_many_in_flight(false); }
static void test_many_in_flight_sync(void **state) { (void)state; check_many_in_flight(true); }

/* ---- engine-level ordering (io_uring only: the fallback is in order) ---- */

struct eop {
	struct blk_aio_op op;
	struct iovec iov;
	int result;
	bool done;
	unsigned order;
};

static void eop_done(struct blk_aio_op *op, int result)
{
	struct eop *e = op->opaque;
	e->result = result;
	e->done = true;
	e->order = completions++;
}

static void eop_init(struct eop *e, enum blk_op op, int fd, uint64_t off, void *buf, size_t len)
{
	memset(e, 0, sizeof(*e));
	e->iov = (struct iovec){ buf, len };
	e->op = (struct blk_aio_op){ .op = op, .fd = fd, .offset = off, .len = len, .iov = &e->iov,
				     .niov = buf ? 1 : 0, .done = eop_done, .opaque = e };
}

static void eop_wait(struct blk_aio *a, struct eop *e)
{
	for (int i = 0; i < 10000 && !e->done; i++)
		blk_aio_poll(a, true);
	assert_true(e->done);
}

/* A read from an empty pipe stays in flight; a file read submitted after
 * it completes first, and a flush waits for the pipe read. */
static void test_out_of_order_and_flush_barrier(void **state)
{
	(void)state;
	struct blk_aio *a = engine(false);
	int p[2];
	assert_int_equal(pipe(p), 0);
	int fd = open(img, O_RDWR);
	assert_true(fd >= 0);
	uint8_t pbuf[4], fbuf[512];
	struct eop slow, fast, flush;

	completions = 0;
	eop_init(&slow, BLK_OP_READ, p[0], 0, pbuf, sizeof(pbuf));
	eop_init(&fast, BLK_OP_READ, fd, 0, fbuf, sizeof(fbuf));
	eop_init(&flush, BLK_OP_FLUSH, fd, 0, NULL, 0);
	blk_aio_submit(a, &slow.op);
	blk_aio_submit(a, &fast.op);
	blk_aio_submit(a, &flush.op);
	blk_aio_flush_submissions(a);
	eop_wait(a, &fast);
	assert_false(slow.done);
	assert_int_equal(fast.result, 0);
	/* Give a flush that did not wait every chance to complete. */
	usleep(20000);
	blk_aio_poll(a, false);
	assert_false(flush.done);
	assert_int_equal(write(p[1], "abcd", 4), 4);
	eop_wait(a, &slow);
	eop_wait(a, &flush);
	assert_int_equal(slow.result, 0);
	assert_memory_equal(pbuf, "abcd", 4);
	assert_int_equal(flush.result, 0);
	assert_true(fast.order < slow.order);
	assert_true(slow.order < flush.order);
	close(fd);
	close(p[0]);
	close(p[1]);
	blk_aio_destroy(a);
}

/* A file shorter than the read: the rest reads as zeros; a short read
 * mid-way is continued. */
static void check_short_read(bool sync)
{
	struct blk_aio *a = engine(sync);
	int fd = open(img, O_RDWR);
	assert_int_equal(ftruncate(fd, 1000), 0);
	assert_int_equal(pwrite(fd, "xyz", 3, 997), 3);
	uint8_t buf[2048];
	memset(buf, 0xee, sizeof(buf));
	struct eop e;
	eop_init(&e, BLK_OP_READ, fd, 512, buf, sizeof(buf));
	blk_aio_submit(a, &e.op);
	blk_aio_flush_submissions(a);
	eop_wait(a, &e);
	assert_int_equal(e.result, 0);
	assert_memory_equal(buf + 485, "xyz", 3);
	for (size_t i = 488; i < sizeof(buf); i++)
		assert_int_equal(buf[i], 0);
	/* Errors come back as -errno. */
	eop_init(&e, BLK_OP_WRITE, -1, 0, buf, 16);
	blk_aio_submit(a, &e.op);
	blk_aio_flush_submissions(a);
	eop_wait(a, &e);
	assert_int_equal(e.result, -EBADF);
	close(fd);
	blk_aio_destroy(a);
}

static void test_short_read_uring(void **state) { (void)state; check_short_read(false); }
static void test_short_read_sync(void **state) { (void)state; check_short_read(true); }

/* More ops than the depth wait in the engine and all complete. */
static void test_backlog_beyond_depth(void **state)
{
	(void)state;
	char err[256];
	struct blk_aio *a = blk_aio_create(4, false, err, sizeof(err));
	assert_non_null(a);
	if (blk_aio_kind(a) != BLK_AIO_IO_URING) {
		blk_aio_destroy(a);
		skip();
	}
	int fd = open(img, O_RDWR);
	static uint8_t bufs[32][512];
	static struct eop e[32];
	for (unsigned i = 0; i < 32; i++) {
		memset(bufs[i], (int)i, 512);
		eop_init(&e[i], i == 16 ? BLK_OP_FLUSH : BLK_OP_WRITE, fd, i * 512u, i == 16 ? NULL : bufs[i], 512);
		blk_aio_submit(a, &e[i].op);
	}
	assert_int_equal(blk_aio_in_flight(a), 32);
	blk_aio_flush_submissions(a);
	for (unsigned i = 0; i < 32; i++)
		eop_wait(a, &e[i]);
	for (unsigned i = 0; i < 32; i++) {
		assert_int_equal(e[i].result, 0);
		if (i < 16)
			assert_true(e[i].order < e[16].order);   /* the flush came after them */
	}
	uint8_t got[512];
	assert_int_equal(pread(fd, got, 512, 31 * 512), 512);
	assert_memory_equal(got, bufs[31], 512);
	close(fd);
	blk_aio_destroy(a);
}

/* ---- discard and write-zeroes on raw ---- */

static void test_raw_zeroes_and_discard(void **state)
{
	(void)state;
	struct blk_aio *a = engine(true);
	struct blk_backend *b = open_raw(false);
	int fd = open(img, O_RDWR);
	uint8_t buf[8192];
	memset(buf, 0x77, sizeof(buf));
	assert_int_equal(pwrite(fd, buf, sizeof(buf), 0), sizeof(buf));
	struct rq r;
	rq_init(&r, a, BLK_OP_WRITE_ZEROES, 4096, NULL, 4096);
	blk_submit(b, &r.req);
	assert_int_equal(r.result, 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), sizeof(buf));
	assert_int_equal(buf[4095], 0x77);
	for (unsigned i = 4096; i < 8192; i++)
		assert_int_equal(buf[i], 0);
	rq_init(&r, a, BLK_OP_DISCARD, 0, NULL, 4096);
	blk_submit(b, &r.req);
	assert_int_equal(r.result, 0);
	close(fd);
	blk_close(b);
	blk_aio_destroy(a);
}

/* ---- the ring is no way around seccomp ---- */

static void test_ring_restricted(void **state)
{
	(void)state;
	struct blk_aio *a = engine(false);
	/* What a compromised VMM would want from its ring. */
	uint8_t forbidden[] = { IORING_OP_OPENAT, IORING_OP_OPENAT2, IORING_OP_SOCKET,
				IORING_OP_CONNECT, IORING_OP_UNLINKAT, IORING_OP_FALLOCATE,
				IORING_OP_READ, IORING_OP_WRITE, IORING_OP_SENDMSG, IORING_OP_NOP };
	for (unsigned i = 0; i < sizeof(forbidden); i++)
		assert_int_equal(blk_aio_try_opcode(a, forbidden[i]), -EACCES);
	/* Its own operations pass the restriction (and fail on fd -1). */
	assert_int_equal(blk_aio_try_opcode(a, IORING_OP_READV), -EBADF);
	assert_int_equal(blk_aio_try_opcode(a, IORING_OP_FSYNC), -EBADF);
	blk_aio_destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_handover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_in_flight_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_in_flight_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_order_and_flush_barrier, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_read_uring, setup, teardown),
		cmocka_unit_test_setup_teardown(test_short_read_sync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backlog_beyond_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_raw_zeroes_and_discard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ring_restricted, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
