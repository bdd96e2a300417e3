/* Backups of containers: the private area as one tar.zst made by
 * `kvz-ct backup` and put back by `kvz-ct restore`, kept under
 * STATE/backups/GUEST/B.tar.zst (0600, directories 0700). Creating and
 * restoring are jobs (jobs.h); a backup is written to GUEST/.B.partial and
 * renamed into place when complete, so a failed or cancelled one leaves
 * nothing behind. The files are the record: the list is the directory. */
#ifndef KVZD_BACKUPS_H
#define KVZD_BACKUPS_H

#include <jansson.h>

#include "guest_ops.h"
#include "jobs.h"
#include "kvzd.h"

extern const struct job_kind backup_create_job;
extern const struct job_kind backup_restore_job;

/* Checks the guest (a container) and the name, and submits the job: the
 * job's record, or NULL with e. backup NULL: a name from the time. */
json_t *backup_create(struct kvzd *d, const char *guest, const char *backup,
		      struct op_error *e);
/* The same for a policy rule: a name from the time, and once the backup is
 * complete the older ones beyond the retention (policy_retention.h) go. */
json_t *backup_create_kept(struct kvzd *d, const char *guest, int keep_last, int keep_daily,
			   struct op_error *e);
json_t *backup_restore(struct kvzd *d, const char *guest, const char *backup,
		       struct op_error *e);
/* [{name, created_ms, size}] oldest first, or NULL with e. */
json_t *backup_list(struct kvzd *d, const char *guest, struct op_error *e);
/* Removes one backup under the guest's lock. */
int backup_delete(struct kvzd *d, const char *guest, const char *backup, struct op_error *e);
/* Every backup of a guest that is being destroyed (its lock held). */
int backups_remove_all(struct kvzd *d, const char *guest, struct op_error *e);

#endif
