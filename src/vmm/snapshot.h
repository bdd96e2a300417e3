/* Saving a paused machine to a snapshot file and restoring one into a
 * machine built with the same options (format: state/snapshot_file.h,
 * docs/snapshot-format.md). */
#ifndef KVZ_VMM_SNAPSHOT_H
#define KVZ_VMM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>

#include "state/snapshot_file.h"

struct vm;

/* Every registry entry's state, saved in registry order and handed to
 * emit (the snapshot file's writer or the live stream's). The machine
 * must be paused. Returns 0, or -1 with err naming the section. */
typedef int (*snapshot_section_fn)(void *opaque, const struct state_entry *e, const void *data,
				   size_t len, char *err, size_t errlen);
int snapshot_sections(struct vm *vm, snapshot_section_fn emit, void *opaque, char *err, size_t errlen);

/* The same sections captured into out now, for emit later (replay): the
 * state, kvmclock and each vCPU's TSC above all, is taken at the pause,
 * before the RAM that follows takes its time. */
int snapshot_capture(struct vm *vm, struct state_buf *out, char *err, size_t errlen);
int snapshot_replay(const struct state_buf *cap, snapshot_section_fn emit, void *opaque,
		    char *err, size_t errlen);

/* The machine must be paused (vm_pause). Captures every registry entry's
 * state (kvmclock and the vCPUs' TSCs at the pause: the guest does not see
 * the save's time pass once restored), writes RAM (pages never populated
 * skipped unread: state/pagemap.h), then the sections, then the header.
 * Returns 0, or -1 with one line in err. */
int snapshot_save(struct vm *vm, int fd, struct snap_progress *progress, char *err, size_t errlen);

/* The machine is built (and its boot images loaded) but has never run.
 * Checks the whole file before changing anything, then maps its RAM (map:
 * MAP_PRIVATE, restore time independent of RAM size) or reads the file's
 * data extents into the machine's memory (huge pages, no later faults on
 * the file), and loads every entry. Returns 0, or -1 with one line naming
 * the section and the reason. */
int snapshot_restore(struct vm *vm, int fd, bool map, char *err, size_t errlen);

#endif
