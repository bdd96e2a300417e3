/* Storage in a live migration without shared storage (`kvz migrate
 * --copy-storage`, or by itself when the target has no file at the
 * guest's disk path): the source's kvz-vmm sends the disk in the stream
 * (migrate "blk": true) and the target's writes it into an empty disk the
 * target kvzd makes at reservation, in its image dir, of the same size and
 * format. The target's guest record names that file under "incoming_disk"
 * until the commit, so that every way an incoming guest is dropped
 * (failure, discard, kvzd restart) removes it. */
#ifndef KVZD_MIGRATION_STORAGE_H
#define KVZD_MIGRATION_STORAGE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "guest_ops.h"
#include "kvzd.h"

struct guest_driver;

/* The guest's disk size in bytes (cfg disk_size, else the image's own:
 * a raw file's length, a qcow2 image's virtual size). -1 with e. */
int mig_storage_size(json_t *cfg, uint64_t *size, struct op_error *e);

/* Target: makes the empty disk at path (cfg disk_format, disk_size),
 * admitted against the free space like a new guest's disk; cfg then names
 * it (disk_path, incoming_disk) and loses disk_base (the copy is whole).
 * Nothing is left on failure. */
int mig_storage_create(struct kvzd *d, const char *name, const struct guest_driver *drv,
		       json_t *cfg, const char *path, struct op_error *e);

/* Target: removes the disk an incoming guest's cfg names, if any. */
void mig_storage_remove(json_t *cfg);

#endif
