/* The life of a guest: create, start, stop, set, destroy, plus adoption of
 * running supervisors after a kvzd restart and crash handling. Every
 * function that changes a guest holds that guest's lock (guest_locks.h)
 * while it works. */
#ifndef KVZD_GUEST_OPS_H
#define KVZD_GUEST_OPS_H

#include <stdbool.h>
#include <sys/types.h>

#include <jansson.h>

#include "kvzd.h"

struct qmp_client;

/* What went wrong, as an HTTP status and one line for the user. */
struct op_error {
	int status;
	char msg[512];
};

/* req: the POST /v1/guests body (see docs/api.md). */
/* *job: for a VM from a template or an import, the job that makes its
 * disk (new reference; the guest is "creating" until it ends), else NULL. */
int guest_create(struct kvzd *d, json_t *req, json_t **job, struct op_error *e);
int guest_start(struct kvzd *d, const char *name, struct op_error *e);
int guest_stop(struct kvzd *d, const char *name, int timeout_s, bool force,
	       struct op_error *e);
int guest_set(struct kvzd *d, const char *name, json_t *req, struct op_error *e);
int guest_destroy(struct kvzd *d, const char *name, bool force, struct op_error *e);

/* The same for a caller that holds the guest's lock (a job), g being its
 * record read under the lock. extra: arguments added to the supervisor's
 * usual command line (NULL-terminated; may be NULL), e.g. --incoming. */
int guest_start_locked(struct kvzd *d, json_t *g, const char *const *extra,
		       struct op_error *e);
/* guest_start_locked in two halves, for a supervisor started ahead of
 * the moment it may answer (a staged restore): spawn, with keep_fd (> 2;
 * -1 for none; the caller's, left open) inherited under its number, and
 * the record "starting" with its pid; then wait until it answers and
 * record it running (or gone, the guest stopped). */
int guest_spawn_locked(struct kvzd *d, json_t *g, const char *const *extra, int keep_fd,
		       struct op_error *e);
int guest_finish_start_locked(struct kvzd *d, const char *name, struct op_error *e);
/* guest_start_locked on the record as the store has it now (a job that
 * has just put it back in place); 404 when it is gone. */
int guest_start_stored(struct kvzd *d, const char *name, const char *const *extra,
		       struct op_error *e);
int guest_stop_locked(struct kvzd *d, json_t *g, int timeout_s, bool force,
		      struct op_error *e);

/* At start-up: re-adopts guests whose supervisors still run, marks the rest
 * crashed, then starts the autostart guests that are not running. */
void guests_adopt_all(struct kvzd *d);
void guests_autostart(struct kvzd *d);

/* Called by the monitor for a guest the store says is running or paused:
 * when its supervisor is gone, records stopped or crashed. Returns true when the
 * guest is still running. */
bool guest_check_alive(struct kvzd *d, const char *name);

/* Waits up to timeout_ms for a supervisor to be gone (status as
 * sup_check()); true when it is. */
bool guest_wait_gone(pid_t pid, unsigned long long start, int timeout_ms, int *status);

/* A connection to the QMP socket at path of guest name's supervisor, or
 * NULL with a 502 in e. */
struct qmp_client *guest_qmp_open(const char *name, const char *path, struct op_error *e);
/* One command on a guest's QMP socket at path. QMP errors are 409 (the
 * request does not fit the guest's state), transport errors 502. */
int guest_qmp_call(const char *name, const char *path, const char *cmd, json_t *args,
		   json_t **ret, struct op_error *e);
/* In state "incoming" (a migration's target, before commitment) or
 * "migrated" (its source, after handing over, until the target confirms):
 * the migration code owns it (migration.h). */
bool guest_migrating(json_t *g);
/* "running", or "paused": a source a failed migration could not run on
 * (its supervisor runs, the VM stays paused; the record's state_reason
 * says why; a start resumes it). Both hold a supervisor and its memory. */
bool guest_state_has_supervisor(const char *state);
/* The stored guest (new reference), or NULL with a 404 in e. */
json_t *guest_get_or_404(struct kvzd *d, const char *name, struct op_error *e);

/* Where a guest's files live. */
void guest_log_path(const struct kvzd *d, const char *name, char *buf, size_t len);
/* The last non-empty line of a guest's log ("" when none): what its
 * supervisor said when it gave up. */
void guest_log_tail(struct kvzd *d, const char *name, char *out, size_t len);
void guest_image_path(const struct kvzd *d, const char *name, char *buf, size_t len);

#endif
