/* libFuzzer target: kvz-vmm's snapshot loader (state/snapshot_file.c) on
 * hostile files: the header, the section walk and checksums, the matching
 * of sections to registry entries, and the virtio transport's and the
 * balloon's load of their sections. Must refuse with a message, never
 * crash or read out of bounds. Checksums are fixed up on the way in for
 * the sections mode, so the fuzzer reaches the decoders behind them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "snapshot_devices.h"
#include "snapshot_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

/* Rewrites the checksums of well-framed sections (stops at the first one
 * whose length runs past the end). */
static void fix_checksums(uint8_t *s, size_t len)
{
	size_t at = 0;
	while (len - at >= SNAP_SECTION_HEADER) {
		uint8_t *h = s + at;
		uint32_t n = rd32(h + 36);
		if (n > len - at - SNAP_SECTION_HEADER)
			return;
		wr32(h + 40, (uint32_t)crc32(0, h + SNAP_SECTION_HEADER, n));
		wr32(h + 44, (uint32_t)crc32(0, h, 44));
		at += SNAP_SECTION_HEADER + n;
	}
}

/* A file: header (no RAM), sections at 4096. */
static size_t build_file(int fd, const uint8_t *data, size_t size)
{
	uint32_t nsec = rd32(data + 1);
	size_t slen = size - 5;
	uint8_t *buf = calloc(1, SNAP_PAGE + slen);
	if (!buf)
		abort();
	memcpy(buf, SNAP_MAGIC, 8);
	wr32(buf + 8, SNAP_FORMAT_VERSION);
	wr32(buf + 12, SNAP_PAGE);
	wr64(buf + 16, SNAP_PAGE);
	wr64(buf + 24, 0);
	wr64(buf + 32, SNAP_PAGE);
	wr64(buf + 40, slen);
	wr32(buf + 48, nsec);
	wr32(buf + 60, (uint32_t)crc32(0, buf, 60));
	memcpy(buf + SNAP_PAGE, data + 5, slen);
	fix_checksums(buf + SNAP_PAGE, slen);
	size_t n = SNAP_PAGE + slen;
	if (pwrite(fd, buf, n, 0) != (ssize_t)n)
		abort();
	free(buf);
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	struct state_registry *reg = snapshot_devices();
	if (!reg)
		abort();
	if (fd < 0 && (fd = memfd_create("fuzz-snapshot", MFD_CLOEXEC)) < 0)
		abort();
	if (size < 5 || ftruncate(fd, 0) < 0)
		return 0;
	if (data[0] == SNAPSHOT_FUZZ_RAW) {
		if (pwrite(fd, data + 1, size - 1, 0) != (ssize_t)(size - 1))
			abort();
	} else {
		build_file(fd, data, size);
	}
	char err[512];
	struct snap_header h;
	if (snap_read_header(fd, &h, err, sizeof(err)) < 0)
		return 0;
	struct snap_sections s = {0};
	if (snap_read_sections(fd, &h, &s, err, sizeof(err)) == 0)
		snap_sections_apply(&s, reg, err, sizeof(err));
	snap_sections_free(&s);
	return 0;
}
