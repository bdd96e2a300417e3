/* Which guest pages changed: KVM's dirty log of the memory slots (what the
 * vCPUs write) merged with guest_mem's logs of what kvz-vmm writes itself
 * and of what vhost-net writes (the kernel's log, VHOST_F_LOG_ALL). Used by
 * the live migration job, one caller at a time.
 *
 * Two modes, chosen once at VM creation (--dirty-log):
 *   manual  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with INITIALLY_SET (as QEMU):
 *           starting costs nothing (every bit starts set, nothing is
 *           write-protected), a sync only reads KVM's bits, and
 *           dirty_log_clear() clears and re-protects just the pages about
 *           to be sent, chunk by chunk;
 *   legacy  starting write-protects all RAM and every sync takes KVM's bits
 *           and re-protects them; dirty_log_clear() does nothing. */
#ifndef KVZ_VMM_DIRTY_LOG_H
#define KVZ_VMM_DIRTY_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

/* At VM creation, before any memory slot: probes the capability and
 * enables manual protect as cfg.dirty_log asks (manual without the
 * capability is an error). Returns 0, or -1 with one line in err. */
int dirty_log_setup(struct vm *vm, char *err, size_t errlen);
/* Whether the manual mode is on. */
bool dirty_log_manual(const struct vm *vm);

/* Turns on KVM_MEM_LOG_DIRTY_PAGES on every RAM slot, the VMM's own log
 * and vhost-net's. Everything written from now on shows up in the next
 * sync; in manual mode the first sync shows every page (initially set).
 * Returns 0, or -1 with one line in err (logging left off). */
int dirty_log_start(struct vm *vm, char *err, size_t errlen);
/* ORs the pages dirtied since the start or the previous sync into bitmap
 * (one bit per 4 KiB page in RAM offset order, guest_mem_bitmap_words()
 * words) and clears the VMM's and vhost's logs; KVM's bits are cleared
 * too in legacy mode, in manual mode only by dirty_log_clear(). Returns 0
 * or -1 with err. */
int dirty_log_sync(struct vm *vm, uint64_t *bitmap, char *err, size_t errlen);
/* Manual mode: clears (and write-protects again) KVM's bits for the pages
 * of [first_page, first_page + npages) whose bit is set in bitmap (the
 * whole RAM's, as dirty_log_sync fills it); only those, so that a page
 * dirtied after the sync that set bitmap keeps its bit. first_page and
 * npages are multiples of 64 unless the range ends at the end of RAM.
 * Legacy mode: nothing. Returns 0 or -1 with err. */
int dirty_log_clear(struct vm *vm, const uint64_t *bitmap, uint64_t first_page, uint64_t npages,
		    char *err, size_t errlen);
/* Back to unlogged slots (no write-protection faults). */
void dirty_log_stop(struct vm *vm);

#endif
