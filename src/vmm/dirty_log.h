/* Which guest pages changed: KVM's dirty log of the memory slots (what the
 * vCPUs write) merged with guest_mem's logs of what kvz-vmm writes itself
 * and of what vhost-net writes (the kernel's log, VHOST_F_LOG_ALL). Used by the live migration job, one caller at a time. */
#ifndef KVZ_VMM_DIRTY_LOG_H
#define KVZ_VMM_DIRTY_LOG_H

#include <stddef.h>
#include <stdint.h>

struct vm;

/* Turns on KVM_MEM_LOG_DIRTY_PAGES on every RAM slot, the VMM's own log
 * and vhost-net's.
 * Everything written from now on shows up in the next sync. Returns 0, or
 * -1 with one line in err (logging left off). */
int dirty_log_start(struct vm *vm, char *err, size_t errlen);
/* ORs the pages dirtied since the start or the previous sync into bitmap
 * (one bit per 4 KiB page in RAM offset order, guest_mem_bitmap_words()
 * words) and clears the logs. Returns 0 or -1 with err. */
int dirty_log_sync(struct vm *vm, uint64_t *bitmap, char *err, size_t errlen);
/* Back to unlogged slots (no write-protection faults). */
void dirty_log_stop(struct vm *vm);

#endif
