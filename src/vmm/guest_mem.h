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
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define GUEST_MEM_HOLE_START 0xC0000000ull  /* 3 GiB: PCI MMIO below 4 GiB */
#define GUEST_MEM_HI_START   0x100000000ull
/* Guest RAM's host mapping starts on this boundary (guest_mem.c: KVM's
 * 2 MiB nested pages need host and guest addresses congruent modulo it). */
#define GUEST_MEM_ALIGN      (2ull << 20)

#define GUEST_MEM_MAX_LOGGERS 8

/* A kernel data path that writes guest RAM behind KVM's dirty log
 * (vhost-net). log_changed is called with no lock of guest_mem held, by the
 * migration thread, right after guest_mem.vhost_log was published (start
 * logging into it now) or withdrawn (stop). Returns 0, or -1 with one line
 * in err (only a start's failure is acted on). */
struct guest_mem_logger {
	int (*log_changed)(void *opaque, char *err, size_t errlen);
	void *opaque;
};

struct guest_mem {
	int memfd;           /* -1: anonymous memory */
	uint8_t *host;       /* mapping of the whole RAM */
	uint64_t size;       /* total RAM bytes = lo_size + hi_size */
	uint64_t lo_size;    /* RAM below the hole */
	uint64_t hi_size;    /* RAM from 4 GiB up */
	/* RAM was restored from a snapshot file: its data chunks are a
	 * private mapping of the file (pages the guest never writes stay the
	 * file's page cache), the rest anonymous; the memfd no longer backs
	 * anything. */
	bool file_backed;
	uint64_t file_dev, file_ino;   /* which file, when file_backed */
	/* When file_backed: one bit per GUEST_MEM_ALIGN chunk of RAM (offset
	 * order) mapped from the file. There a page not present may still be
	 * the file's data: a save must read it (state/pagemap.h). */
	uint64_t *file_chunks;
	/* /proc/self/pagemap, opened with the RAM (before the seccomp filter
	 * forbids opening files) so that a save can skip anonymous pages that
	 * were never populated; -1 when it could not be opened (errno in
	 * pagemap_errno): a save then reads every page. */
	int pagemap_fd;
	int pagemap_errno;
	/* While a live migration runs: one bit per page (RAM offset order) for
	 * every write kvz-vmm itself makes into guest RAM, which KVM's dirty
	 * log does not see. NULL otherwise; read and set atomically (devices
	 * mark from the I/O thread, the migration thread takes the bits). */
	uint64_t *vmm_dirty;
	uint64_t *vmm_dirty_buf;   /* its allocation, kept until destroy */
	/* While a live migration runs and a kernel data path (vhost-net) is
	 * registered: the log the kernel sets bits in for its own writes
	 * (VHOST_SET_LOG_BASE), one bit per 4 KiB page of guest *physical*
	 * address space, the PCI hole included (guest_mem_gpa_log_words()).
	 * NULL otherwise; swapped atomically, and each word fetched and cleared
	 * atomically since the kernel sets bits concurrently. */
	uint64_t *vhost_log;
	/* Its allocation, kept until destroy: a kernel data path may hold the
	 * address until it is told to stop logging. */
	uint64_t *vhost_log_buf;
	/* Who to tell when vhost_log is published or withdrawn. Registered
	 * while the machine is built (single-threaded), fixed afterwards. */
	struct guest_mem_logger loggers[GUEST_MEM_MAX_LOGGERS];
	unsigned nloggers;
};

/* Maps size bytes of RAM: anonymous, or a memfd when shared. Returns 0 or
 * -errno. */
int guest_mem_init(struct guest_mem *m, uint64_t size, bool shared);
void guest_mem_destroy(struct guest_mem *m);

/* Host pointer for [gpa, gpa + len) when that range is RAM and does not
 * cross a region boundary; NULL otherwise. Devices must use this (never raw
 * arithmetic) on every guest-supplied address: guest input is hostile. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Restore: guest RAM becomes [offset, offset + size) of fd, at the same
 * host address so KVM's memory slots and vhost stay valid: fresh anonymous
 * huge-page memory, with the file mapped MAP_PRIVATE (never written) over
 * the 2 MiB chunks that hold data, so that the work follows the file's
 * data extents, not RAM size. Frees whatever the memfd held. Returns 0 or
 * -errno. */
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
/* Starts (allocates clear bitmaps) or stops the VMM's own dirty log and,
 * with registered loggers, the kernel's log, telling each logger. Start
 * returns 0, or -1 with one line in err and both logs off. */
int guest_mem_log_start(struct guest_mem *m, char *err, size_t errlen);
void guest_mem_log_stop(struct guest_mem *m);
/* ORs the pages marked since the last call, by kvz-vmm and by the
 * loggers' kernel log, into out (one bit per page in RAM offset order,
 * guest_mem_bitmap_words() words) and clears them. */
void guest_mem_take_dirty(const struct guest_mem *m, uint64_t *out);
/* Registers a kernel data path (at most GUEST_MEM_MAX_LOGGERS): returns 0
 * or -ENOSPC. Remove by its opaque, on teardown. */
int guest_mem_add_logger(struct guest_mem *m, const struct guest_mem_logger *l);
void guest_mem_remove_logger(struct guest_mem *m, const void *opaque);
/* Words of the kernel's log: one bit per page of [0, end of RAM's guest
 * physical range). */
static inline uint64_t guest_mem_gpa_log_words(const struct guest_mem *m)
{
	uint64_t end = m->hi_size ? GUEST_MEM_HI_START + m->hi_size : m->lo_size;
	return (end / 4096 + 63) / 64;
}
static inline uint64_t guest_mem_bitmap_words(const struct guest_mem *m)
{
	return (m->size / 4096 + 63) / 64;
}

#endif
