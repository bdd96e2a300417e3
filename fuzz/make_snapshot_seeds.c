/* Writes the seed corpus of fuzz_snapshot: the sections the fuzz machine's
 * devices save, in the target's sections mode, after a driver set them up
 * (as found after boot) and untouched; plus a whole small file in raw mode.
 * Usage: make_snapshot_seeds DIR */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "snapshot_devices.h"
#include "snapshot_file.h"

static int write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
		perror(path);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make_snapshot_seeds DIR\n");
		return 2;
	}
	struct state_registry *reg = snapshot_devices();
	int fd = memfd_create("seed", MFD_CLOEXEC);
	char err[256];
	struct snap_writer w;
	if (!reg || fd < 0 || snap_writer_begin(&w, fd, 0, NULL, err, sizeof(err)) < 0)
		return 1;
	for (size_t i = 0; i < state_registry_count(reg); i++) {
		const struct state_entry *e = state_registry_at(reg, i);
		struct state_buf b;
		state_buf_init(&b);
		if (e->ops->save(e->opaque, &b, err, sizeof(err)) < 0 ||
		    snap_writer_section(&w, e, b.data, b.len, err, sizeof(err)) < 0)
			return 1;
		state_buf_free(&b);
	}
	if (snap_writer_finish(&w, err, sizeof(err)) < 0)
		return 1;
	off_t size = lseek(fd, 0, SEEK_END);
	uint8_t *file = malloc((size_t)size + 1);
	if (!file || pread(fd, file + 1, (size_t)size, 0) != size)
		return 1;
	/* The sections start at 2 MiB (after the empty RAM image). */
	uint64_t soff = 2u << 20;
	size_t slen = (size_t)size - soff;
	/* Raw mode: the same file without the 2 MiB gap (RAM offset 4096,
	 * no RAM), so that the seed stays small. */
	uint8_t *raw = calloc(1, 1 + SNAP_PAGE + slen);
	memcpy(raw + 1, file + 1, SNAP_HEADER_SIZE);
	for (int i = 0; i < 8; i++) {
		raw[1 + 16 + i] = (uint8_t)((uint64_t)SNAP_PAGE >> (8 * i));
		raw[1 + 32 + i] = (uint8_t)((uint64_t)SNAP_PAGE >> (8 * i));
	}
	uint32_t c = (uint32_t)crc32(0, raw + 1, 60);
	memcpy(raw + 1 + 60, &c, 4);
	memcpy(raw + 1 + SNAP_PAGE, file + 1 + soff, slen);
	if (write_seed(argv[1], "whole-file", raw, 1 + SNAP_PAGE + slen) < 0)
		return 1;
	uint8_t *sec = malloc(5 + slen);
	sec[0] = 1;
	uint32_t n = (uint32_t)state_registry_count(reg);
	memcpy(sec + 1, &n, 4);
	memcpy(sec + 5, file + 1 + soff, slen);
	if (write_seed(argv[1], "sections", sec, 5 + slen) < 0)
		return 1;
	printf("%zu sections, file %lld bytes\n", (size_t)n, (long long)size);
	return 0;
}
