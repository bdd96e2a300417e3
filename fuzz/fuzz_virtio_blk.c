/* libFuzzer target: a virtio-blk device behind the real PCI transport, fed
 * guest RAM chosen by the fuzzer (rings, requests, buffers) and driven
 * through the same register sequence a Linux driver uses. Checks that no
 * request layout makes the device touch memory outside guest RAM, crash,
 * or loop; the image is a small unlinked temporary file. */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fake_guest_mem.h"
#include "fake_vmm.h"
#include "virtio_blk.h"

#define RAM 0x40000u
#define COMMON 0x0000u
#define NOTIFY 0x3000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Two devices for the whole run, one per engine (io_uring, and the
 * synchronous fallback; bit 2 of the flags byte picks): creating one per
 * input would spend the time in eventfd and file setup instead of the
 * request paths. */
static struct guest_mem mem;
static struct vmm_context ctx;
static struct virtio_blk *devs[2];
static struct virtio_blk *blk;   /* the one this input drives */

static void wr(uint64_t off, uint64_t v, unsigned len)
{
	blk->vp.pci.ops->bar_write(&blk->vp.pci, 0, off, &v, len);
}

static struct virtio_blk *make_dev(bool aio_sync, unsigned index)
{
	char path[] = "/tmp/kvz-fuzz-blk-XXXXXX";
	char err[256];
	int fd = mkstemp(path);

	if (fd < 0 || ftruncate(fd, 256 * 1024) < 0)
		return NULL;
	close(fd);
	struct virtio_blk_opts o = { .path = path, .aio_sync = aio_sync };
	struct virtio_blk *b = virtio_blk_create_opts(&ctx, &o, index, err, sizeof(err));
	unlink(path);
	if (!b)
		fprintf(stderr, "fuzz_virtio_blk: %s\n", err);
	return b;
}

static int setup_once(void)
{
	if (fake_guest_mem_init(&mem, RAM, 0) < 0)
		return -1;
	ctx.mem = &mem;
	devs[0] = make_dev(false, 0);
	devs[1] = make_dev(true, 1);
	return devs[0] && devs[1] ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;

	if (!ready) {
		if (setup_once() < 0)
			abort();
		ready = 1;
	}
	if (size < 2)
		return 0;
	uint16_t qsize = (uint16_t)(1u << (data[0] % 9));
	uint8_t flags = data[1];
	blk = devs[(flags >> 2) & 1];
	memset(mem.host, 0, RAM);
	memcpy(mem.host, data + 2, size - 2 < RAM ? size - 2 : RAM);

	wr(COMMON + 0x14, 0, 1);                       /* reset */
	wr(COMMON + 0x14, 3, 1);
	wr(COMMON + 0x08, 0, 4);
	wr(COMMON + 0x0c, (uint32_t)(1u << 9 | 1u << 13 | 1u << 14 |
				     (flags & 1 ? 1u << 28 : 0) | (flags & 2 ? 1u << 29 : 0)), 4);
	wr(COMMON + 0x08, 1, 4);
	wr(COMMON + 0x0c, 1, 4);                        /* VERSION_1 */
	wr(COMMON + 0x14, 0xb, 1);
	wr(COMMON + 0x16, 0, 2);
	wr(COMMON + 0x18, qsize, 2);
	wr(COMMON + 0x20, 0x0000, 8);
	wr(COMMON + 0x28, 0x8000, 8);
	wr(COMMON + 0x30, 0x9000, 8);
	wr(COMMON + 0x1c, 1, 2);
	wr(COMMON + 0x14, 0xf, 1);                      /* DRIVER_OK kicks queue 0 */
	wr(NOTIFY, 0, 2);
	fake_io_run();
	/* Requests may still be with io_uring: the reset waits for them, so
	 * no read lands in RAM while the next input is copied there (and
	 * resetting with requests in flight is fuzzed too). */
	wr(COMMON + 0x14, 0, 1);
	return 0;
}
