/* Moving a guest to another kvzd ("node", nodes.h): `kvz migrate NAME --to
 * NODE`. Kind-independent; what differs per kind is behind the guest
 * driver's migrate_* operations.
 *
 * Source (migration_source.c): a job holding the guest's lock. It asks the
 * target to reserve (POST /v1/migrations on the peer API, with the node's
 * token), connects to the port the target opened for this reservation,
 * sends the proof (the reservation's secret), sends the guest (offline: its
 * saved state and, for a disk kvzd made, the disk; mig_stream.h), records
 * the guest as "migrated" with the node's name, and commits (POST
 * /v1/migrations/NAME/commit). Only once the target says the guest runs
 * does the source forget it. Any failure before that: the target discards
 * (DELETE /v1/migrations/NAME) and the guest runs on at the source.
 *
 * Target (migration_target.c): a reservation checks what the guest needs
 * (name free, memory, CPU model, bridge, kernel, disk path), records the
 * guest as "incoming" and opens the port; a thread accepts connections on
 * it, drops those without the proof, and receives the stream. A failed
 * stream, a discard or a kvzd restart removes the incoming guest. */
#ifndef KVZD_MIGRATION_H
#define KVZD_MIGRATION_H

#include <jansson.h>

#include "guest_ops.h"
#include "jobs.h"
#include "kvzd.h"

/* How long a reservation waits for its stream to start. */
#define MIG_RESERVE_TTL_S 120
/* The migrate job's bound on a live target's side: how long the target
 * waits for its kvz-vmm to answer migrate-incoming (a loaded host answers
 * late; a kvz-vmm that ended, or a discard by the source, ends the wait at
 * once), and how long the source, its stream sent, asks the target again
 * to commit while the target says it is still loading (unless the job is
 * cancelled first). */
#define MIG_LIVE_TARGET_LIMIT_S 120

extern const struct job_kind migrate_job;

/* POST /v1/guests/NAME/migrate: req {"to": NODE, "offline": bool}. The
 * job's record, or NULL with e. */
json_t *migration_start(struct kvzd *d, const char *guest, json_t *req, struct op_error *e);

/* Target side, from the peer API. */
int migration_init(struct kvzd *d, const char *listen_host, char *err, size_t errlen);
/* At exit, after the API and the jobs stopped: migrations still coming in
 * are discarded (the receiving threads end), then the registry goes. */
void migration_stop(struct kvzd *d);
/* req: {name, type, config, autostart, running, cpu_model, disk: "copy" |
 * "shared" | "none"}; *answer: {port, proof, disk, event_id (its
 * migration-reserved event: the source reads only later events)}. */
int migration_reserve(struct kvzd *d, json_t *req, json_t **answer, struct op_error *e);
/* body: {"samples": rows, "sample_disks": ...} (migration_stats.h) or NULL;
 * 503 while a live stream is still loading here (ask again). *running_ms: when
 * the guest ran here (this host's clock; 0 for a stopped one). */
int migration_commit(struct kvzd *d, const char *name, json_t *body, int64_t *running_ms,
		     struct op_error *e);
int migration_discard(struct kvzd *d, const char *name, struct op_error *e);

/* At start-up, before adoption: removes incoming guests (never committed)
 * and settles migrated ones with their target (one running copy). */
void migration_recover(struct kvzd *d);

/* A node that answers again (node health's round): guests handed over to
 * it whose commit went unanswered are settled (the target runs them, or
 * discards and they run on here). Skips guests with a job in flight. */
void migration_settle_with(struct kvzd *d, const char *node);

/* Shared by both sides. */
void migration_dir(const struct kvzd *d, const char *name, char *buf, size_t len);

#endif
