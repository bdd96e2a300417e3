/* libFuzzer target: the live migration stream's reader
 * (state/migration_stream.c) on hostile input: the header, RAM runs and
 * page markers, sections (framing and checksums), records out of order,
 * disk records (index, size, chunks beyond the disk or overflowing it),
 * then the sections applied to the fuzz machine's devices. Must refuse
 * with a message, never crash or write outside the RAM buffer.
 * Input: byte 0 = 0: a whole stream; else the records behind a valid
 * header for FUZZ_PAGES pages of RAM (the fuzzer's time goes to them). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "migration_stream.h"
#include "snapshot_devices.h"

#define FUZZ_PAGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Two target disks in memory; the second's size is not a chunk multiple. */
#define DISK0 (256u << 10)
#define DISK1 100000u
static uint8_t disk0[DISK0], disk1[DISK1];

/* The reader checked the bounds: a chunk outside its disk is a bug. */
static int disk_write(void *opaque, unsigned index, uint64_t off, const uint8_t *data, uint32_t len,
		      char *err, size_t errlen)
{
	(void)opaque;
	(void)err;
	(void)errlen;
	uint8_t *d = index == 0 ? disk0 : index == 1 ? disk1 : NULL;
	uint64_t size = index == 0 ? DISK0 : DISK1;
	if (!d || off > size || len > size - off)
		abort();
	if (data)
		memcpy(d + off, data, len);
	else
		memset(d + off, 0, len);
	return 0;
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
	if (pwrite(fd, p, n, 0) != (ssize_t)n)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	static uint8_t *ram;
	struct state_registry *reg = snapshot_devices();
	if (!reg)
		abort();
	if (fd < 0 && (fd = memfd_create("fuzz-migration", MFD_CLOEXEC)) < 0)
		abort();
	if (!ram && !(ram = aligned_alloc(SNAP_PAGE, FUZZ_PAGES * SNAP_PAGE)))
		abort();
	if (size < 1 || ftruncate(fd, 0) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return 0;
	if (data[0] == 0) {
		write_all(fd, data + 1, size - 1);
	} else {
		uint8_t *buf = malloc(MIG_HEADER_SIZE + size - 1);
		if (!buf)
			abort();
		memset(buf, 0, MIG_HEADER_SIZE);
		memcpy(buf, MIG_MAGIC, 8);
		state_le32(buf + 8, MIG_VERSION);
		state_le64(buf + 16, FUZZ_PAGES * SNAP_PAGE);
		memcpy(buf + MIG_HEADER_SIZE, data + 1, size - 1);
		write_all(fd, buf, MIG_HEADER_SIZE + size - 1);
		free(buf);
	}
	char err[512];
	struct snap_sections s = {0};
	struct mig_disk_sink sink = { .n = 2, .size = {DISK0, DISK1}, .write = disk_write };
	if (mig_read_stream(fd, ram, FUZZ_PAGES * SNAP_PAGE, &sink, &s, NULL, err, sizeof(err)) == 0)
		snap_sections_apply(&s, reg, err, sizeof(err));
	snap_sections_free(&s);
	return 0;
}
