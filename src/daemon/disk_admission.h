/* Guest disks against the free space of the filesystem that holds them.
 * Disks are sparse, so creating one costs nothing now but promises space
 * for later: kvzd admits a disk (or a growth) only while everything still
 * promised on that filesystem fits in its free space times
 * kvzd --disk-overcommit (1 by default: every guest disk there can fill up
 * at once). */
#ifndef KVZD_DISK_ADMISSION_H
#define KVZD_DISK_ADMISSION_H

#include <stdbool.h>
#include <stdint.h>

#include "guest_ops.h"
#include "kvzd.h"

/* 409 in e unless guest name's disk (drv's kind: a VM image, a container
 * private area) may be size bytes. Promised space is, for each guest disk
 * on the same filesystem, its size minus what it has allocated already;
 * guests whose records exist but whose files do not yet (being created)
 * count in full. The caller holds d->disk_lock until the new size is in
 * the store, so that two requests cannot both take the last free space. */
struct guest_driver;
int disk_admit(struct kvzd *d, const char *name, const struct guest_driver *drv,
	       uint64_t size, struct op_error *e);
/* The same for the disk of guest name at path (a VM's disk 1.. : its file,
 * or the one it is about to get); the guest's other disks count as
 * promised too. */
int disk_admit_at(struct kvzd *d, const char *name, const struct guest_driver *drv,
		  const char *path, uint64_t size, struct op_error *e);

#endif
