/* Snapshots of VMs: the machine state saved by kvz-vmm into a file kvzd
 * opens and passes over QMP (getfd + migrate "fd:snap"), plus a copy of the
 * disk made while the VM is paused, under STATE/snapshots/GUEST/SNAP/
 * (files "state" when the VM ran, "disk.img" when it has a disk). Creating
 * and restoring are jobs (jobs.h); a snapshot is built in
 * GUEST/.SNAP.partial and renamed into place and recorded only when
 * complete, so a failed or cancelled one leaves nothing behind. */
#ifndef KVZD_SNAPSHOTS_H
#define KVZD_SNAPSHOTS_H

#include <jansson.h>

#include "guest_ops.h"
#include "jobs.h"
#include "kvzd.h"

extern const struct job_kind snapshot_create_job;
extern const struct job_kind snapshot_restore_job;

/* Checks what can be checked at once (the guest, its kind, the name) and
 * submits the job: the job's record, or NULL with e. snap NULL: a name
 * from the time. */
json_t *snapshot_create(struct kvzd *d, const char *guest, const char *snap,
			struct op_error *e);
json_t *snapshot_restore(struct kvzd *d, const char *guest, const char *snap,
			 struct op_error *e);
/* Removes one snapshot (files and record) under the guest's lock. */
int snapshot_delete(struct kvzd *d, const char *guest, const char *snap, struct op_error *e);
/* Every snapshot of a guest that is being destroyed (its lock held). */
int snapshots_remove_all(struct kvzd *d, const char *guest, struct op_error *e);

#endif
