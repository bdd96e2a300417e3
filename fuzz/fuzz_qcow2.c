/* libFuzzer target: a qcow2 image file from anyone (src/vmm/block/qcow2*).
 * The input is the image. It is opened read-only, read in places, checked,
 * then opened writable and written, zeroed, discarded and checked again.
 * Every failure must come with its one-line message; anything else the
 * sanitizers catch. Backing files are refused (no paths from the input). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qcow2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_explain(struct qcow2 *q, int r)
{
	if (r < 0 && qcow2_error(q)[0] == 0)
		abort();
}

static void read_around(struct qcow2 *q, uint8_t *buf, size_t cap)
{
	uint64_t size = qcow2_size(q), cs = qcow2_cluster_size(q);
	uint64_t offs[] = {0, cs - 1, size / 2, size > cap ? size - cap : 0};
	for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		size_t n = size - offs[i] < cap ? (size_t)(size - offs[i]) : cap;
		if (offs[i] >= size)
			continue;
		must_explain(q, qcow2_read(q, buf, offs[i], n));
		/* What an engine would be told to read stays inside the request. */
		uint64_t host, run;
		int r = qcow2_map(q, offs[i], n, &host, &run);
		must_explain(q, r);
		if (r == 0 && (run == 0 || run > n))
			abort();
	}
}

static bool all_are(const uint8_t *p, size_t n, uint8_t v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* What was written (and acknowledged) must read back. */
static void write_some(struct qcow2 *q, uint8_t *buf, size_t cap)
{
	uint64_t size = qcow2_size(q), cs = qcow2_cluster_size(q);
	if (size == 0)
		return;
	size_t n = size < cap ? (size_t)size : cap;
	memset(buf, 0xa5, n);
	int r = qcow2_write(q, buf, size - n, n);
	must_explain(q, r);
	if (r == 0 && qcow2_read(q, buf, size - n, n) == 0 && !all_are(buf, n, 0xa5))
		abort();
	r = qcow2_write_zeroes(q, 0, n);
	must_explain(q, r);
	if (r == 0 && qcow2_read(q, buf, 0, n) == 0 && !all_are(buf, n, 0))
		abort();
	must_explain(q, qcow2_discard(q, 0, cs));
	struct qcow2_check c;
	must_explain(q, qcow2_check(q, &c));
}

static int open_one(int fd, int flags, struct qcow2 **q)
{
	char err[300] = "";
	int r = qcow2_open("fuzz.qcow2", fd, flags | QCOW2_OPEN_NO_BACKING | QCOW2_OPEN_UNORDERED,
			   q, err, sizeof(err));
	if (r < 0 && err[0] == 0)
		abort();
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size) {
		close(fd);
		return 0;
	}
	enum { CAP = 256 << 10 };
	uint8_t *buf = malloc(CAP);
	struct qcow2 *q;
	if (buf && open_one(fd, 0, &q) == 0) {
		read_around(q, buf, CAP);
		struct qcow2_check c;
		must_explain(q, qcow2_check(q, &c));
		qcow2_close(q);
		if (open_one(fd, QCOW2_OPEN_WRITE, &q) == 0) {
			write_some(q, buf, CAP);
			qcow2_close(q);
		}
	}
	free(buf);
	close(fd);
	return 0;
}
