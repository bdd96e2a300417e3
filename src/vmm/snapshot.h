/* Saving a paused machine to a snapshot file and restoring one into a
 * machine built with the same options (format: state/snapshot_file.h,
 * docs/snapshot-format.md). */
#ifndef KVZ_VMM_SNAPSHOT_H
#define KVZ_VMM_SNAPSHOT_H

#include <stddef.h>

#include "state/snapshot_file.h"

struct vm;

/* The machine must be paused (vm_pause). Writes RAM, then one section per
 * registry entry, then the header. Returns 0, or -1 with one line in err. */
int snapshot_save(struct vm *vm, int fd, struct snap_progress *progress, char *err, size_t errlen);

/* The machine is built (and its boot images loaded) but has never run.
 * Checks the whole file before changing anything, then maps its RAM and
 * loads every entry. Returns 0, or -1 with one line naming the section
 * and the reason. */
int snapshot_restore(struct vm *vm, int fd, char *err, size_t errlen);

#endif
