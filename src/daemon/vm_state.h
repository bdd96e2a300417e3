/* A running VM's machine state saved by kvz-vmm into a file kvzd opens and
 * passes over QMP (getfd + migrate "fd:NAME"): shared by snapshots and
 * offline migration. */
#ifndef KVZD_VM_STATE_H
#define KVZD_VM_STATE_H

#include "guest_ops.h"
#include "jobs.h"
#include "qmp_client.h"

/* Saves the VM's state into path (created, must not exist), reporting
 * progress as phase of job j; the VM is paused (postmigrate) when it
 * returns 0. A cancel of j cancels the save. */
int vm_state_save(struct job *j, const char *phase, const char *guest,
		  struct qmp_client *c, const char *path, struct op_error *e);
/* migrate_cancel, then waits until kvz-vmm says the save ended. */
void vm_state_cancel(struct qmp_client *c, const char *guest);
/* Runs the VM again unless it runs (a failed or cancelled save may have
 * left it paused): 0, or -1 with kvz-vmm's answer in err (also logged)
 * when it stays paused, e.g. another process took its disk's lock since
 * the save (a migration's target on shared storage). */
int vm_state_resume(struct qmp_client *c, const char *guest, char *err, size_t errlen);
/* The same on the VM's QMP socket at qmp; err then says which: "it stays
 * paused: ..." or "its supervisor does not answer: ...". */
int vm_state_cancel_and_resume(const char *guest, const char *qmp, char *err, size_t errlen);

#endif
