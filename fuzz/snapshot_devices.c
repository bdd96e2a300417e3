#include "snapshot_devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fake_guest_mem.h"
#include "fake_vmm.h"
#include "virtio_balloon.h"
#include "virtio_blk.h"
#include "virtio_rng.h"

#define RAM 0x40000u

/* One machine for the whole run (fuzzers are single-threaded). */
static struct guest_mem mem;
static struct vmm_context ctx;

struct state_registry *snapshot_devices(void)
{
	static struct state_registry *reg;
	char path[] = "/tmp/kvz-fuzz-snap-XXXXXX";
	char err[256];

	if (reg)
		return reg;
	if (fake_guest_mem_init(&mem, RAM, 0) < 0)
		return NULL;
	ctx.mem = &mem;
	ctx.state = state_registry_create();
	int fd = mkstemp(path);
	if (!ctx.state || fd < 0 || ftruncate(fd, 256 * 1024) < 0)
		return NULL;
	close(fd);
	struct virtio_blk *blk = virtio_blk_create(&ctx, path, false, 0, err, sizeof(err));
	unlink(path);
	if (!blk || !virtio_balloon_create(&ctx, true, err, sizeof(err)) ||
	    !virtio_rng_create(&ctx, err, sizeof(err))) {
		fprintf(stderr, "snapshot fuzz devices: %s\n", err);
		return NULL;
	}
	reg = ctx.state;
	return reg;
}
