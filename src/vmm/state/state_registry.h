/* The registry of machine state: every piece of state the machine has (each
 * vCPU, the in-kernel irqchip, PIT and clock, the legacy devices, the PCI
 * functions, each virtio device) is one entry, in a fixed order, with the
 * same five operations. Pause, save, load and reset of the whole machine
 * walk this list, so a new device is covered by registering it once.
 * Snapshots (snapshot.c) write one section per entry; live migration will
 * reuse the same entries and stream. */
#ifndef KVZ_VMM_STATE_REGISTRY_H
#define KVZ_VMM_STATE_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "state_buf.h"

#define STATE_NAME_MAX 24

struct state_ops {
	/* Back to power-on state (system_reset). Optional. */
	void (*reset)(void *opaque);
	/* The vCPUs and the I/O thread are parked: stop anything else that
	 * touches guest RAM (a kernel data path) and make the state final.
	 * resume undoes it. Optional. */
	void (*pause)(void *opaque);
	void (*resume)(void *opaque);
	/* Machine paused. Appends the entry's state to out. Returns 0, or -1
	 * with one line in err. */
	int (*save)(void *opaque, struct state_buf *out, char *err, size_t errlen);
	/* Machine paused, never run since its creation. in holds what save
	 * wrote (same version); hostile bytes: validate everything. Returns 0,
	 * or -1 with the reason in err (the caller names the section). */
	int (*load)(void *opaque, struct state_cursor *in, uint32_t version, char *err, size_t errlen);
};

struct state_entry {
	char name[STATE_NAME_MAX];     /* "vcpu", "virtio-blk", ... */
	uint32_t instance;             /* 0, 1, ... among entries of one name */
	uint32_t version;              /* of the section layout save writes */
	uint32_t min_version;          /* oldest layout load still takes */
	const struct state_ops *ops;
	void *opaque;
};

struct state_registry;

struct state_registry *state_registry_create(void);
void state_registry_destroy(struct state_registry *r);

/* Appends an entry (the order of registration is the order of save, load
 * and pause). Instance numbers count per name. Returns 0 or -errno. */
int state_registry_add(struct state_registry *r, const char *name, uint32_t version,
		       const struct state_ops *ops, void *opaque);

/* The same, for an entry whose load also takes the older layouts
 * min_version..version-1 (it gets the section's version). */
int state_registry_add_range(struct state_registry *r, const char *name, uint32_t min_version,
			     uint32_t version, const struct state_ops *ops, void *opaque);

size_t state_registry_count(const struct state_registry *r);
const struct state_entry *state_registry_at(const struct state_registry *r, size_t i);
const struct state_entry *state_registry_find(const struct state_registry *r, const char *name,
					      uint32_t instance);

/* Pause in registration order, resume in reverse; reset in order. */
void state_registry_pause(struct state_registry *r);
void state_registry_resume(struct state_registry *r);
void state_registry_reset(struct state_registry *r);

#endif
