/* Storage in a live migration without shared storage (`kvz migrate
 * --copy-storage`, or by itself when the target has no file at the
 * guest's disk path): the source's kvz-vmm sends the disk in the stream
 * (migrate "blk": true) and the target's writes it into an empty disk the
 * target kvzd makes at reservation, in its image dir, of the same size and
 * format, and so for each of disks 1.. (vm_disks.h): kvz-vmm copies every
 * writable disk or none, so all of a guest's disks are shared or all are
 * copied. The target's guest record names the files it made under
 * "incoming_disks" until the commit, so that every way an incoming guest
 * is dropped (failure, discard, kvzd restart) removes them. */
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

/* Target: makes the empty disk at path (cfg disk_format, disk_size) and
 * disks 1.. at the paths mig_storage_place_extras() gave them, admitted
 * together against the free space like a new guest's disks; cfg then
 * names them (disk_path, incoming_disks) and loses disk_base (the copy is
 * whole). Nothing is left on failure. */
int mig_storage_create(struct kvzd *d, const char *name, const struct guest_driver *drv,
		       json_t *cfg, const char *path, struct op_error *e);

/* Target: removes the disks an incoming guest's cfg names, if any. */
void mig_storage_remove(json_t *cfg);

/* Target: the peer's disks 1.. (cfg "disks"), each checked as a client's
 * disk (size, format, mode; vm_disk_parse) with its source file's name
 * NAME@N.img, into a list of this store's own in cfg: a placeholder for
 * disk 0 (the store makes it from the flat keys), then {size, format,
 * mode, src}. Without disks 1.. the list goes. 400 in e. */
int mig_storage_take_extras(struct kvzd *d, const char *name, json_t *cfg, struct op_error *e);
/* Target: each of disks 1.. gets its path here: shared (the source's
 * image dir is this one, seen by its probe): images/SRC, which must be
 * there; copied: images/NAME@N.img, which must not. 409 in e. */
int mig_storage_place_extras(struct kvzd *d, const char *name, json_t *cfg, bool shared,
			     struct op_error *e);

#endif
