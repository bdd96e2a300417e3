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
 *       prints the seconds taken. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static void pick(struct qcow2 *q, uint64_t *off, size_t *len)
{
	uint64_t size = qcow2_size(q);
	uint64_t max = max_request ? max_request : rnd() % 4 == 0 ? 1u << 20 : 96u << 10;
	*len = 1 + rnd() % max;
	if (rnd() % 3 == 0) /* cluster aligned, whole clusters */
		*len = (*len + qcow2_cluster_size(q) - 1) / qcow2_cluster_size(q) * qcow2_cluster_size(q);
	if (*len > (4u << 20))
		*len = 4u << 20;
	if (*len > size)
		*len = size;
	*off = rnd() % (size - *len + 1);
	if (rnd() % 3 == 0)
		*off -= *off % qcow2_cluster_size(q);
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
		pick(q, &off, &len);
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

static int crash(const char *img, const char *logpath, unsigned seed)
{
	struct qcow2 *q = open_rw(img);
	FILE *log = fopen(logpath, "a");
	if (!q || !log)
		return q ? die(NULL, logpath) : 1;
	setvbuf(log, NULL, _IONBF, 0); /* the log must be current when killed */
	uint8_t *buf = malloc(4u << 20); /* pick() never asks for more */
	for (unsigned i = 0;; i++) {
		uint64_t off;
		size_t len;
		pick(q, &off, &len);
		int r;
		if (rnd() % 10 == 0) {
			fprintf(log, "Z %llu %zu\n", (unsigned long long)off, len);
			r = qcow2_write_zeroes(q, off, len);
		} else {
			fill(buf, off, len, seed + i);
			fprintf(log, "I %llu %zu %u\n", (unsigned long long)off, len, seed + i);
			r = qcow2_write(q, buf, off, len);
		}
		if (r < 0)
			return die(q, "write");
		if (rnd() % 4 == 0) {
			if (qcow2_flush(q) < 0)
				return die(q, "flush");
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
	char err[300];
	struct qcow2 *q;
	if (qcow2_open(img, -1, write ? QCOW2_OPEN_WRITE : 0, &q, err, sizeof(err)) < 0) {
		fprintf(stderr, "qcow2_writer: %s\n", err);
		return 1;
	}
	uint8_t *buf = malloc(bs);
	memset(buf, 0x5a, bs);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	uint64_t off = 0;
	for (unsigned i = 0; i < count; i++, off += bs) {
		if (off + bs > qcow2_size(q))
			off = 0;
		int r = write ? qcow2_write(q, buf, off, bs) : qcow2_read(q, buf, off, bs);
		if (r < 0)
			return die(q, "bench");
	}
	if (qcow2_flush(q) < 0)
		return die(q, "flush");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.3f\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	free(buf);
	return qcow2_close(q) < 0;
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
