/* `kvz set VM --disk [N:]SIZE` (PATCH /v1/guests/NAME {"disk": SIZE,
 * "disk_index": N}): a VM's disk N (0 by default, vm_disks.h) grows, live through kvz-vmm's QMP block_resize while it runs (the
 * guest's kernel sees the new capacity at once), in the image file while
 * it is stopped. Disks never shrink: that would cut the guest's data. */
#ifndef KVZD_VM_DISK_GROW_H
#define KVZD_VM_DISK_GROW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "guest_ops.h"
#include "kvzd.h"

/* Grows guest g's disk idx to the size in v and records it in cfg
 * (disk_size, or the size of disks[idx]); one line for the event in detail. The caller holds
 * d->disk_lock (disk_admission.h) until cfg is stored. Errors: 400 for a
 * bad size, 409 for no disk, a shrink or no space, 502 when kvz-vmm
 * refused; nothing changed then. */
int vm_disk_grow(struct kvzd *d, json_t *g, json_t *cfg, size_t idx, json_t *v, bool running,
		 char *detail, size_t len, struct op_error *e);

#endif
