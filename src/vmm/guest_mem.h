/* Guest physical memory: one mapping, split around the PCI hole.
 *
 * Contract between the machine (vm.c) and every device that does DMA
 * (virtio). RAM is anonymous memory with transparent huge pages (the
 * default: fast on an untuned host), or a memfd where another process must
 * map it (--memory-backing=memfd), or, after a restore, a private mapping
 * of the snapshot file. Guest physical [0, lo_size) is offset 0 of the
 * mapping, [4 GiB, 4 GiB + hi_size) offset lo_size. */
#ifndef KVZ_VMM_GUEST_MEM_H
#define KVZ_VMM_GUEST_MEM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define GUEST_MEM_HOLE_START 0xC0000000ull  /* 3 GiB: PCI MMIO below 4 GiB */
#define GUEST_MEM_HI_START   0x100000000ull

struct guest_mem {
	int memfd;           /* -1: anonymous memory */
	uint8_t *host;       /* mapping of the whole RAM */
	uint64_t size;       /* total RAM bytes = lo_size + hi_size */
	uint64_t lo_size;    /* RAM below the hole */
	uint64_t hi_size;    /* RAM from 4 GiB up */
	/* RAM is a private mapping of a snapshot file (restored): pages
	 * the guest never writes stay the file's page cache, and the memfd
	 * no longer backs anything. */
	bool file_backed;
	uint64_t file_dev, file_ino;   /* which file, when file_backed */
	/* While a live migration runs: one bit per page (RAM offset order) for
	 * every write kvz-vmm itself makes into guest RAM, which KVM's dirty
	 * log does not see. NULL otherwise; read and set atomically (devices
	 * mark from the I/O thread, the migration thread takes the bits). */
	uint64_t *vmm_dirty;
	uint64_t *vmm_dirty_buf;   /* its allocation, kept until destroy */
	/* NICs whose packets the kernel's vhost-net moves: it writes guest RAM
	 * behind the dirty log's back (its own log, VHOST_F_LOG_ALL, is not
	 * used yet), so live migration refuses while this is non-zero. */
	int vhost_users;
};

/* Maps size bytes of RAM: anonymous, or a memfd when shared. Returns 0 or
 * -errno. */
int guest_mem_init(struct guest_mem *m, uint64_t size, bool shared);
void guest_mem_destroy(struct guest_mem *m);

/* Host pointer for [gpa, gpa + len) when that range is RAM and does not
 * cross a region boundary; NULL otherwise. Devices must use this (never raw
 * arithmetic) on every guest-supplied address: guest input is hostile. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Restore: maps [offset, offset + size) of fd over guest RAM, MAP_PRIVATE
 * (the file is never written; restore time does not grow with RAM), at
 * the same host address so KVM's memory slots and vhost stay valid, and
 * frees whatever the memfd held. Returns 0 or -errno. */
int guest_mem_map_file(struct guest_mem *m, int fd, uint64_t offset);

/* Gives the pages of [gpa, gpa + len) back to the host (balloon): the
 * range reads as zeros afterwards. Returns 0 or -errno. */
int guest_mem_discard(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Records that kvz-vmm wrote [gpa, gpa + len) (no-op unless logging).
 * Every write the VMM makes into guest RAM while the machine may be
 * migrating goes through here: virtqueue used rings and device-writable
 * buffers (virtqueue.c), balloon discards. Boot-time loads happen before
 * any migration, whose first pass sends every page. */
void guest_mem_mark_dirty(const struct guest_mem *m, uint64_t gpa, uint64_t len);
/* Same for a host pointer inside the RAM mapping. */
void guest_mem_mark_dirty_host(const struct guest_mem *m, const void *p, uint64_t len);
/* Starts (allocates a clear bitmap) or stops the VMM's own dirty log.
 * Returns 0 or -ENOMEM. */
int guest_mem_log_start(struct guest_mem *m);
void guest_mem_log_stop(struct guest_mem *m);
/* ORs the pages marked since the last call into out (one bit per page,
 * guest_mem_bitmap_words() words) and clears them. */
void guest_mem_take_dirty(const struct guest_mem *m, uint64_t *out);
static inline uint64_t guest_mem_bitmap_words(const struct guest_mem *m)
{
	return (m->size / 4096 + 63) / 64;
}

#endif
