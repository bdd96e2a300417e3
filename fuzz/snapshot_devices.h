/* The machine the snapshot loader fuzzer restores into: virtio-blk, -net
 * is left out (it needs a TAP), -balloon and -rng on the fake VMM core,
 * registered in one state registry. Shared by the fuzz target and the
 * seed generator so that seeds match what the target expects. */
#ifndef KVZ_FUZZ_SNAPSHOT_DEVICES_H
#define KVZ_FUZZ_SNAPSHOT_DEVICES_H

#include "state_registry.h"

/* Builds the devices once; returns the registry or NULL. */
struct state_registry *snapshot_devices(void);

/* Input layout: byte 0 = 0: the bytes after it are a whole file; else
 * bytes 1-4 = section count (LE), the rest = the sections, behind a valid
 * header with no RAM (so the fuzzer spends its time in the sections). */
#define SNAPSHOT_FUZZ_RAW 0
#define SNAPSHOT_FUZZ_SECTIONS 1

#endif
