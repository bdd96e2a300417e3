/* Drives the qcow2 library for the host tests (test_qcow2_qemu.py):
 *
 *   qcow2_writer exercise IMG MIRROR SEED NOPS
 *       random writes, write-zeroes and discards (crossing clusters and L2
 *       tables), applied alike to a raw MIRROR that qemu-img compare then
 *       holds against IMG.
 *   qcow2_writer crash IMG LOG SEED   (KVZ_SMALL_WRITES=1: requests up to 8 KiB)
 *       writes until killed; LOG gets "I off len seed" before each write
 *       ("Z off len" for zeroes) and "F" after each completed flush, so the
 *       test knows which data was acknowledged by a flush.
 *   qcow2_writer write IMG OFF LEN
 *       one write of the crash pattern (seed 1).
 *   qcow2_writer read IMG OFF LEN
 *       prints the bytes (for reading through kvz's code, e.g. chains).
 *   qcow2_writer bench IMG read|write BS COUNT
 *       BS-byte requests one after the other from offset 0 (the pattern
 *       `qemu-img bench -d 1` runs; bench/qcow2_host.sh), then a flush;
 *       prints the seconds taken.
 *
 * With KVZ_WRITER_BLK=1 (not empty, not 0), crash and bench go through the block layer
 * instead (blk_open/blk_submit: the qcow2 backend kvz-vmm's virtio-blk
 * drives, which keeps metadata cached until a flush or a pause; reads on
 * io_uring), and crash also quiesces (a VM's pause) now and then. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "block.h"
#include "qcow2.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Byte at absolute image offset o of a write with seed s (the test
 * computes the same). */
static void fill(uint8_t *buf, uint64_t off, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((off + i) * 31 + seed * 7 + 1);
}

static int die(struct qcow2 *q, const char *what)
{
	fprintf(stderr, "qcow2_writer: %s: %s\n", what, q ? qcow2_error(q) : strerror(errno));
	return 1;
}

static struct qcow2 *open_rw(const char *path)
{
	char err[300];
	struct qcow2 *q;
	if (qcow2_open(path, -1, QCOW2_OPEN_WRITE, &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "qcow2_writer: %s\n", err);
		return NULL;
	}
	return q;
}

/* Set by main for crash mode: small requests, so that metadata writes
 * are a good part of all writes (and of the crash points). */
static uint64_t max_request;

static void pick(uint64_t size, uint64_t cs, uint64_t *off, size_t *len)
{
	uint64_t max = max_request ? max_request : rnd() % 4 == 0 ? 1u << 20 : 96u << 10;
	*len = 1 + rnd() % max;
	if (rnd() % 3 == 0) /* cluster aligned, whole clusters */
		*len = (*len + cs - 1) / cs * cs;
	if (*len > (4u << 20))
		*len = 4u << 20;
	if (*len > size)
		*len = size;
	*off = rnd() % (size - *len + 1);
	if (rnd() % 3 == 0)
		*off -= *off % cs;
}

static int exercise(const char *img, const char *mirror, unsigned seed, unsigned nops)
{
	struct qcow2 *q = open_rw(img);
	int mfd = open(mirror, O_RDWR);
	if (!q || mfd < 0)
		return q ? die(NULL, mirror) : 1;
	uint8_t *buf = malloc(4u << 20); /* pick() never asks for more */
	bool base = qcow2_backing_name(q) != NULL;
	for (unsigned i = 0; i < nops; i++) {
		uint64_t off;
		size_t len;
		pick(qcow2_size(q), qcow2_cluster_size(q), &off, &len);
		unsigned op = rnd() % 10;
		int r;
		if (op < 6) {
			fill(buf, off, len, seed + i);
			r = qcow2_write(q, buf, off, len);
		} else if (op < 8 || base) {
			memset(buf, 0, len);
			r = qcow2_write_zeroes(q, off, len);
		} else {
			/* Discard drops only whole clusters: the mirror zeroes those. */
			uint64_t cs = qcow2_cluster_size(q), a = (off + cs - 1) / cs * cs;
			uint64_t b = off + len == qcow2_size(q) ? off + len : (off + len) / cs * cs;
			r = qcow2_discard(q, off, len);
			memset(buf, 0, len);
			off = a;
			len = b > a ? b - a : 0;
		}
		if (r < 0)
			return die(q, "operation");
		if (len && pwrite(mfd, buf, len, (off_t)off) != (ssize_t)len)
			return die(NULL, "mirror");
		if (rnd() % 8 == 0 && qcow2_flush(q) < 0)
			return die(q, "flush");
	}
	free(buf);
	close(mfd);
	return qcow2_close(q) < 0 ? 1 : 0;
}

/* What crash and bench drive: the library, or the block layer. */
struct target {
	struct qcow2 *q;          /* library; NULL: block layer */
	struct blk_backend *b;
	struct blk_aio *aio;
	uint64_t size, cs;
};

static int target_open(const char *img, bool write, struct target *t)
{
	char err[300];
	*t = (struct target){0};
	const char *e = getenv("KVZ_WRITER_BLK");
	bool blk = e && *e && strcmp(e, "0") != 0;
	if (qcow2_open(img, -1, write && !blk ? QCOW2_OPEN_WRITE : 0, &t->q, err, sizeof(err)) < 0)
		goto fail;
	t->size = qcow2_size(t->q);
	t->cs = qcow2_cluster_size(t->q);
	if (!blk)
		return 0;
	qcow2_close(t->q);
	t->q = NULL;
	struct blk_open_opts o = {.path = img, .format = "qcow2", .readonly = !write};
	if (!(t->aio = blk_aio_create(8, false, err, sizeof(err))) || blk_open(&o, &t->b, err, sizeof(err)) < 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, "qcow2_writer: %s\n", err);
	return -1;
}

struct waiter {
	struct blk_req req;
	int result;
	bool done;
};

static void waiter_done(struct blk_req *req, int result)
{
	struct waiter *w = (struct waiter *)req;
	w->result = result;
	w->done = true;
}

/* One request, waited for; 0 or -errno (errno set). */
static int target_io(struct target *t, enum blk_op op, void *buf, uint64_t off, size_t len)
{
	int r;
	if (t->q) {
		r = op == BLK_OP_READ ? qcow2_read(t->q, buf, off, len)
		  : op == BLK_OP_WRITE ? qcow2_write(t->q, buf, off, len)
		  : op == BLK_OP_WRITE_ZEROES ? qcow2_write_zeroes(t->q, off, len)
		  : qcow2_flush(t->q);
		if (r < 0)
			fprintf(stderr, "qcow2_writer: %s\n", qcow2_error(t->q));
	} else {
		struct iovec v = {buf, len};
		struct waiter w = {.req = {.op = op, .offset = off, .len = len, .iov = &v,
					   .niov = buf ? 1 : 0, .aio = t->aio, .done = waiter_done}};
		blk_submit(t->b, &w.req);
		blk_aio_flush_submissions(t->aio);
		while (!w.done)
			blk_aio_poll(t->aio, true);
		r = w.result;
	}
	errno = r < 0 ? -r : 0;
	return r;
}

static int target_close(struct target *t)
{
	int r = t->q ? qcow2_close(t->q) : 0;
	blk_close(t->b);
	if (t->aio)
		blk_aio_destroy(t->aio);
	return r;
}

static int crash(const char *img, const char *logpath, unsigned seed)
{
	struct target t;
	FILE *log = fopen(logpath, "a");
	if (target_open(img, true, &t) < 0 || !log)
		return die(NULL, logpath);
	setvbuf(log, NULL, _IONBF, 0); /* the log must be current when killed */
	uint8_t *buf = malloc(4u << 20); /* pick() never asks for more */
	for (unsigned i = 0;; i++) {
		uint64_t off;
		size_t len;
		pick(t.size, t.cs, &off, &len);
		int r;
		if (rnd() % 10 == 0) {
			fprintf(log, "Z %llu %zu\n", (unsigned long long)off, len);
			r = target_io(&t, BLK_OP_WRITE_ZEROES, NULL, off, len);
		} else {
			fill(buf, off, len, seed + i);
			fprintf(log, "I %llu %zu %u\n", (unsigned long long)off, len, seed + i);
			r = target_io(&t, BLK_OP_WRITE, buf, off, len);
		}
		if (r < 0)
			return die(NULL, "write");
		if (t.b && rnd() % 8 == 0 && blk_quiesce(t.b) < 0)
			return die(NULL, "quiesce");
		if (rnd() % 4 == 0) {
			if (target_io(&t, BLK_OP_FLUSH, NULL, 0, 0) < 0)
				return die(NULL, "flush");
			fprintf(log, "F\n");
		}
	}
}

static int write_at(const char *img, uint64_t off, size_t len)
{
	struct qcow2 *q = open_rw(img);
	if (!q)
		return 1;
	uint8_t *buf = malloc(len ? len : 1);
	if (!buf)
		return die(q, "out of memory");
	fill(buf, off, len, 1);
	int r = qcow2_write(q, buf, off, len);
	if (r < 0)
		die(q, "write");
	free(buf);
	return qcow2_close(q) < 0 || r < 0;
}

static int read_out(const char *img, uint64_t off, size_t len)
{
	char err[300];
	struct qcow2 *q;
	if (qcow2_open(img, -1, 0, &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "qcow2_writer: %s\n", err);
		return 1;
	}
	uint8_t *buf = malloc(len ? len : 1);
	if (qcow2_read(q, buf, off, len) < 0)
		return die(q, "read");
	fwrite(buf, 1, len, stdout);
	free(buf);
	qcow2_close(q);
	return 0;
}

static int bench(const char *img, bool write, size_t bs, unsigned count)
{
	struct target t;
	if (target_open(img, write, &t) < 0)
		return 1;
	uint8_t *buf = malloc(bs);
	memset(buf, 0x5a, bs);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t off = 0;
	for (unsigned i = 0; i < count; i++, off += bs) {
		if (off + bs > t.size)
			off = 0;
		if (target_io(&t, write ? BLK_OP_WRITE : BLK_OP_READ, buf, off, bs) < 0)
			return die(NULL, "bench");
	}
	if (target_io(&t, BLK_OP_FLUSH, NULL, 0, 0) < 0)
		return die(NULL, "flush");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.3f\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	free(buf);
	return target_close(&t) < 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "bench"))
		return bench(argv[2], !strcmp(argv[3], "write"), strtoul(argv[4], NULL, 0),
			     (unsigned)strtoul(argv[5], NULL, 0));
	if (argc == 6 && !strcmp(argv[1], "exercise")) {
		rng_state = strtoull(argv[4], NULL, 0) * 2654435761u + 1;
		return exercise(argv[2], argv[3], (unsigned)rng_state, (unsigned)atoi(argv[5]));
	}
	if (argc == 5 && !strcmp(argv[1], "crash")) {
		max_request = getenv("KVZ_SMALL_WRITES") ? 8192 : 0;
		rng_state = strtoull(argv[4], NULL, 0) * 2654435761u + 1;
		return crash(argv[2], argv[3], (unsigned)strtoul(argv[4], NULL, 0) * 100000u);
	}
	if (argc == 5 && !strcmp(argv[1], "write"))
		return write_at(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
	if (argc == 5 && !strcmp(argv[1], "read"))
		return read_out(argv[2], strtoull(argv[3], NULL, 0), strtoull(argv[4], NULL, 0));
	fprintf(stderr, "usage: qcow2_writer exercise IMG MIRROR SEED NOPS | crash IMG LOG SEED"
			" | write|read IMG OFF LEN | bench IMG read|write BS COUNT\n");
	return 2;
}
