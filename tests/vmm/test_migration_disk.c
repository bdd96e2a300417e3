/* Disk copy of a live migration without shared storage: the dirty-block
 * bitmap (block/blk_dirty.c) and its feed from blk_submit, the source's
 * passes and the target's sink (migration_disk.c) through a real stream
 * (state/migration_stream.c) into raw and qcow2 targets, and hostile disk
 * records refused with one line. */
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

#include "block/blk_dirty.h"
#include "block/block.h"
#include "block/qcow2.h"
#include "migration_disk.h"
#include "state/migration_stream.h"

#define DISK (4u << 20)
#define RAM_PAGES 4

/* ---- the bitmap ---- */

static void bitmap_marks_only_when_enabled(void **state)
{
	(void)state;
	struct blk_dirty *d = blk_dirty_new(DISK + 100);   /* a partial last chunk */
	assert_non_null(d);
	assert_int_equal(d->nbits, DISK / BLK_DIRTY_CHUNK + 1);
	blk_dirty_mark(d, 0, 4096);
	uint64_t got[2] = {0};
	assert_int_equal(blk_dirty_take(d, got), 0);
	blk_dirty_enable(d, true);
	/* One byte either side of a chunk boundary: two chunks. */
	blk_dirty_mark(d, BLK_DIRTY_CHUNK - 1, 2);
	/* Past the end: clamped; wholly outside: nothing. */
	blk_dirty_mark(d, DISK, UINT64_MAX);
	blk_dirty_mark(d, DISK + 100, 1);
	blk_dirty_mark(d, 5 * BLK_DIRTY_CHUNK, 0);
	assert_int_equal(blk_dirty_take(d, got), 3);
	assert_int_equal(got[0], 3);
	assert_int_equal(got[1], 1);
	/* Taken means cleared; a second take adds only what is new, and a
	 * bit already in into is not counted again. */
	blk_dirty_mark(d, 0, 1);
	blk_dirty_mark(d, 2 * BLK_DIRTY_CHUNK, 1);
	assert_int_equal(blk_dirty_take(d, got), 1);
	assert_int_equal(got[0], 7);
	assert_int_equal(blk_dirty_count(got, 2), 4);
	uint64_t none[2] = {0};
	assert_int_equal(blk_dirty_take(d, none), 0);
	blk_dirty_free(d);
}

/* ---- images ---- */

static void make_raw(char *path, size_t len, uint64_t size)
{
	snprintf(path, len, "/tmp/kvz-test-migdisk-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static struct blk_backend *open_img(const char *path, const char *fmt)
{
	char err[256];
	struct blk_backend *b = NULL;
	struct blk_open_opts o = { .path = path, .format = fmt };
	if (blk_open(&o, &b, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	return b;
}

struct done { int result; bool done; };

static void on_done(struct blk_req *req, int result)
{
	struct done *d = req->opaque;
	d->result = result;
	d->done = true;
}

static int io(struct blk_backend *b, struct blk_aio *aio, enum blk_op op, uint64_t off, void *buf,
	      uint64_t len)
{
	struct done d = {0};
	struct iovec iov = { buf, len };
	struct blk_req req = { .op = op, .offset = off, .len = len, .iov = buf ? &iov : NULL,
			       .niov = buf ? 1 : 0, .aio = aio, .done = on_done, .opaque = &d };
	blk_submit(b, &req);
	while (!d.done && blk_aio_in_flight(aio))
		blk_aio_poll(aio, true);
	assert_true(d.done);
	return d.result;
}

static struct blk_aio *sync_aio(void)
{
	char err[256];
	struct blk_aio *a = blk_aio_create(4, true, err, sizeof(err));
	assert_non_null(a);
	return a;
}

static void fill(uint8_t *buf, size_t len, uint32_t stamp)
{
	for (size_t i = 0; i < len; i += 4) {
		memcpy(buf + i, &stamp, len - i < 4 ? len - i : 4);
		stamp = stamp * 1103515245u + 12345u;
	}
}

/* Completed writes, discards and write-zeroes are marked; reads and
 * refused writes are not. */
static void submit_feeds_bitmap(void **state)
{
	(void)state;
	char path[64];
	make_raw(path, sizeof(path), DISK);
	struct blk_backend *b = open_img(path, "raw");
	struct blk_aio *aio = sync_aio();
	static uint8_t buf[8192];
	assert_int_equal(io(b, aio, BLK_OP_WRITE, 0, buf, 4096), 0);   /* before tracking */
	assert_int_equal(blk_dirty_start(b), 0);
	assert_int_equal(io(b, aio, BLK_OP_READ, 3 * BLK_DIRTY_CHUNK, buf, 4096), 0);
	assert_int_equal(io(b, aio, BLK_OP_WRITE, BLK_DIRTY_CHUNK, buf, 8192), 0);
	assert_int_equal(io(b, aio, BLK_OP_WRITE_ZEROES, 5 * BLK_DIRTY_CHUNK, NULL, 4096), 0);
	assert_int_equal(io(b, aio, BLK_OP_WRITE, DISK, buf, 4096), -EINVAL);
	uint64_t got[1] = {0};
	assert_int_equal(blk_dirty_take(b->dirty, got), 2);
	assert_int_equal(got[0], (1u << 1) | (1u << 5));
	blk_dirty_stop(b);
	assert_int_equal(io(b, aio, BLK_OP_WRITE, 0, buf, 4096), 0);
	assert_int_equal(blk_dirty_take(b->dirty, got), 0);
	/* Resized since (block_resize): the next tracking covers the new
	 * size, and writes past the old end are marked. */
	struct blk_dirty *old = b->dirty;
	b->size += 2 * BLK_DIRTY_CHUNK;
	assert_int_equal(blk_dirty_start(b), 0);
	assert_ptr_not_equal(b->dirty, old);
	assert_ptr_equal(b->dirty->older, old);
	assert_int_equal(b->dirty->nbits, DISK / BLK_DIRTY_CHUNK + 2);
	blk_dirty_mark(b->dirty, DISK + BLK_DIRTY_CHUNK, 1);
	uint64_t big[2] = {0};
	assert_int_equal(blk_dirty_take(b->dirty, big), 1);
	assert_int_equal(big[1], 2);
	b->size -= 2 * BLK_DIRTY_CHUNK;
	blk_aio_destroy(aio);
	blk_close(b);
	unlink(path);
}

/* ---- source -> stream -> target ---- */

static int memfd(void)
{
	int fd = memfd_create("stream", MFD_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static void write_pattern(struct blk_backend *b, struct blk_aio *aio, uint64_t off, uint64_t len,
			  uint32_t stamp)
{
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	fill(buf, len, stamp);
	assert_int_equal(io(b, aio, BLK_OP_WRITE, off, buf, len), 0);
	free(buf);
}

static void assert_same(struct blk_backend *a, struct blk_backend *b)
{
	struct blk_aio *aio = sync_aio();
	uint8_t *x = malloc(DISK), *y = malloc(DISK);
	assert_non_null(x);
	assert_non_null(y);
	assert_int_equal(io(a, aio, BLK_OP_READ, 0, x, DISK), 0);
	assert_int_equal(io(b, aio, BLK_OP_READ, 0, y, DISK), 0);
	assert_memory_equal(x, y, DISK);
	free(x);
	free(y);
	blk_aio_destroy(aio);
}

/* A first pass, writes while it "runs" (between passes), a dirty pass
 * that sends only those, and a final one; the target ends up equal. */
static void roundtrip(const char *target_fmt)
{
	char src_path[64], dst_path[64], err[512];
	make_raw(src_path, sizeof(src_path), DISK);
	struct blk_backend *src = open_img(src_path, "raw");
	struct blk_aio *aio = sync_aio();
	write_pattern(src, aio, 0, 3 * BLK_DIRTY_CHUNK, 1);        /* data, then a hole */
	write_pattern(src, aio, DISK - 4096, 4096, 2);              /* the last chunk */
	if (!strcmp(target_fmt, "qcow2")) {
		snprintf(dst_path, sizeof(dst_path), "/tmp/kvz-test-migdisk-q-%d", getpid());
		struct qcow2_create_opts o = { .size = DISK };
		assert_int_equal(qcow2_create(dst_path, &o, err, sizeof(err)), 0);
	} else {
		make_raw(dst_path, sizeof(dst_path), DISK);
	}
	struct blk_backend *dst = open_img(dst_path, target_fmt);
	/* Stale data on the target where the source has a hole: the zero
	 * marker must clear it. */
	write_pattern(dst, aio, 10 * BLK_DIRTY_CHUNK, 4096, 3);

	struct mig_disks s;
	assert_int_equal(mig_disks_start(&s, &src, 1, err, sizeof(err)), 0);
	assert_int_equal(mig_disks_remaining(&s), DISK);
	int fd = memfd();
	struct mig_writer w;
	assert_int_equal(mig_writer_begin(&w, fd, RAM_PAGES * 4096, NULL, NULL, err, sizeof(err)), 0);
	assert_int_equal(mig_disks_declare(&s, &w, err, sizeof(err)), 0);
	assert_int_equal(mig_disks_send(&s, &w, err, sizeof(err)), 0);
	assert_int_equal(w.counts.disk_bytes, DISK);
	uint64_t after_first = w.counts.bytes + w.buf.len;
	/* The guest writes during the pass and after it. */
	write_pattern(src, aio, 2 * BLK_DIRTY_CHUNK + 100, 50, 4);
	assert_int_equal(io(src, aio, BLK_OP_WRITE_ZEROES, 0, NULL, 4096), 0);
	mig_disks_collect(&s);
	assert_int_equal(mig_disks_remaining(&s), 2 * BLK_DIRTY_CHUNK);
	assert_int_equal(mig_disks_send(&s, &w, err, sizeof(err)), 0);
	assert_int_equal(w.counts.disk_bytes, DISK + 2 * BLK_DIRTY_CHUNK);
	/* Sparse source: the first pass carried the hole as markers, far
	 * less than the disk's size. */
	assert_true(after_first < 4 * BLK_DIRTY_CHUNK + 4096);
	write_pattern(src, aio, DISK / 2, 4096, 5);   /* "stop-and-copy" */
	mig_disks_collect(&s);
	assert_int_equal(mig_disks_send(&s, &w, err, sizeof(err)), 0);
	assert_int_equal(mig_writer_end(&w, err, sizeof(err)), 0);
	mig_writer_free(&w);
	mig_disks_stop(&s);
	/* Not tracking any more: this write is the source's alone. */

	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	static uint8_t ram[RAM_PAGES * 4096];
	struct mig_disk_sink sink;
	assert_int_equal(mig_disk_sink_init(&sink, &dst, 1, err, sizeof(err)), 0);
	struct snap_sections secs = {0};
	int rc = mig_read_stream(fd, ram, sizeof(ram), &sink, &secs, NULL, err, sizeof(err));
	if (rc)
		fail_msg("%s", err);
	snap_sections_free(&secs);
	mig_disk_sink_free(&sink);
	assert_same(src, dst);
	close(fd);
	blk_aio_destroy(aio);
	blk_close(src);
	blk_close(dst);
	unlink(src_path);
	unlink(dst_path);
}

static void roundtrip_raw(void **state)
{
	(void)state;
	roundtrip("raw");
}

static void roundtrip_qcow2(void **state)
{
	(void)state;
	roundtrip("qcow2");
}

/* ---- hostile disk records ---- */

static uint8_t *rec_disk(uint8_t *p, uint32_t index, uint64_t size)
{
	*p++ = MIG_REC_DISK;
	state_le32(p, index);
	state_le64(p + 4, size);
	return p + 12;
}

static uint8_t *rec_data(uint8_t *p, uint32_t index, uint64_t off, uint32_t len, uint8_t marker)
{
	*p++ = MIG_REC_DISK_DATA;
	state_le32(p, index);
	state_le64(p + 4, off);
	state_le32(p + 12, len);
	p[16] = marker;
	return p + 17;
}

static int wrote;

static int count_write(void *opaque, unsigned index, uint64_t off, const uint8_t *data, uint32_t len,
		       char *err, size_t errlen)
{
	(void)opaque, (void)index, (void)off, (void)data, (void)len, (void)err, (void)errlen;
	wrote++;
	return 0;
}

/* Feeds header + body; returns the reader's result with its message. */
static int feed(const uint8_t *body, size_t len, bool with_sink, char *err, size_t errlen)
{
	uint8_t h[MIG_HEADER_SIZE] = {0};
	memcpy(h, MIG_MAGIC, 8);
	state_le32(h + 8, MIG_VERSION);
	state_le64(h + 16, RAM_PAGES * 4096);
	int fd = memfd();
	assert_int_equal(write(fd, h, sizeof(h)), sizeof(h));
	assert_int_equal(write(fd, body, len), (ssize_t)len);
	uint8_t end = MIG_REC_END;
	assert_int_equal(write(fd, &end, 1), 1);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	static uint8_t ram[RAM_PAGES * 4096];
	struct mig_disk_sink sink = { .n = 1, .size = {DISK}, .write = count_write };
	struct snap_sections s = {0};
	int rc = mig_read_stream(fd, ram, sizeof(ram), with_sink ? &sink : NULL, &s, NULL, err, errlen);
	snap_sections_free(&s);
	close(fd);
	return rc;
}

static void refused(const uint8_t *body, size_t len, bool with_sink, const char *want)
{
	char err[512] = "";
	wrote = 0;
	assert_int_equal(feed(body, len, with_sink, err, sizeof(err)), -1);
	assert_null(strchr(err, '\n'));
	if (!strstr(err, want))
		fail_msg("error '%s' lacks '%s'", err, want);
	assert_int_equal(wrote, 0);
}

static void hostile_disk_records(void **state)
{
	(void)state;
	uint8_t b[256], *p;
	/* A valid one first: accepted, written once. */
	p = rec_data(rec_disk(b, 0, DISK), 0, DISK - 4096, 4096, MIG_PAGE_ZERO);
	char err[512];
	wrote = 0;
	assert_int_equal(feed(b, (size_t)(p - b), true, err, sizeof(err)), 0);
	assert_int_equal(wrote, 1);

	p = rec_disk(b, 0, DISK);
	refused(b, (size_t)(p - b), false, "0 writable disks");           /* target has none */
	p = rec_disk(b, 1, DISK);
	refused(b, (size_t)(p - b), true, "disk 1: this machine has 1");   /* wrong index */
	p = rec_disk(b, 0xffffffffu, DISK);
	refused(b, (size_t)(p - b), true, "disk 4294967295");
	p = rec_disk(b, 0, DISK + 512);
	refused(b, (size_t)(p - b), true, "bytes, this machine's");        /* size differs */
	p = rec_disk(rec_disk(b, 0, DISK), 0, DISK);
	refused(b, (size_t)(p - b), true, "declared twice");
	p = rec_data(b, 0, 0, 4096, MIG_PAGE_ZERO);
	refused(b, (size_t)(p - b), true, "did not declare");              /* undeclared */
	p = rec_data(rec_disk(b, 0, DISK), 5, 0, 4096, MIG_PAGE_ZERO);
	refused(b, (size_t)(p - b), true, "did not declare");              /* wrong index */
	p = rec_data(rec_disk(b, 0, DISK), 0, DISK, 1, MIG_PAGE_ZERO);
	refused(b, (size_t)(p - b), true, "outside");                      /* offset beyond */
	p = rec_data(rec_disk(b, 0, DISK), 0, UINT64_MAX - 10, 4096, MIG_PAGE_ZERO);
	refused(b, (size_t)(p - b), true, "outside");                      /* offset + len wraps */
	p = rec_data(rec_disk(b, 0, DISK), 0, DISK - 4096, 8192, MIG_PAGE_ZERO);
	refused(b, (size_t)(p - b), true, "outside");                      /* runs past the end */
	p = rec_data(rec_disk(b, 0, DISK), 0, 0, 0xffffffffu, MIG_PAGE_DATA);
	refused(b, (size_t)(p - b), true, "outside");                      /* length overflow */
	p = rec_data(rec_disk(b, 0, DISK), 0, 0, 0, MIG_PAGE_ZERO);
	refused(b, (size_t)(p - b), true, "outside");                      /* empty */
	p = rec_data(rec_disk(b, 0, DISK), 0, 0, 4096, 7);
	refused(b, (size_t)(p - b), true, "bad chunk marker");
	p = rec_data(rec_disk(b, 0, DISK), 0, 0, 4096, MIG_PAGE_DATA);     /* data missing */
	refused(b, (size_t)(p - b), true, "truncated");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bitmap_marks_only_when_enabled),
		cmocka_unit_test(submit_feeds_bitmap),
		cmocka_unit_test(roundtrip_raw),
		cmocka_unit_test(roundtrip_qcow2),
		cmocka_unit_test(hostile_disk_records),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
