/* The migration job (QMP `migrate`): saves the machine to a descriptor on
 * a thread of its own, so the command returns at once. It pauses the VM,
 * writes the snapshot (snapshot.c) and leaves the VM paused in
 * "postmigrate" when it completes; on failure a VM that was running runs
 * again. Each status change is a MIGRATION event; query-migrate reports
 * the status and the bytes done. A descriptor that is not a regular file
 * (a socket, a pipe) gets a live migration instead (migration_live.c):
 * pre-copy passes while the guest runs, then a short pause for the rest. */
#ifndef KVZ_VMM_MIGRATION_H
#define KVZ_VMM_MIGRATION_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "state/migration_stream.h"
#include "state/snapshot_file.h"

struct vm;
struct qmp_server;
struct blk_backend;

enum migration_status { MIG_NONE, MIG_SETUP, MIG_ACTIVE, MIG_DEVICE, MIG_COMPLETED, MIG_FAILED,
		       MIG_CANCELLED };

/* migrate-set-parameters / migrate-set-capabilities (QMP thread writes,
 * the job reads atomically). */
struct migration_params {
	uint64_t downtime_limit_ms;  /* 300 */
	uint64_t max_bandwidth;      /* bytes/s, 0: unlimited */
	uint64_t throttle_initial;   /* % of vCPU time taken when auto-converge starts: 20 */
	uint64_t throttle_increment; /* % more per pass that does not shrink: 10 */
	bool auto_converge;
};

/* What query-migrate reports of a live migration (atomics, job writes). */
struct migration_stats {
	uint64_t transferred, duplicate, normal, remaining, dirty_sync_count;
	/* QEMU's split of transferred: before the pause (paced by
	 * max-bandwidth) and during it (never paced). */
	uint64_t precopy_bytes, downtime_bytes;
	uint64_t dirty_pages_rate, mbps, total_time, setup_time, downtime, expected_downtime;
	uint64_t throttle_pct;
	uint64_t disk_total, disk_transferred, disk_remaining;   /* migrate "blk" */
	bool live;
};

struct migration {
	struct vm *vm;
	struct snap_progress progress;
	/* Guards everything below. Events are emitted under it (the QMP
	 * server's queue lock is a leaf). */
	pthread_mutex_t lock;
	struct qmp_server *qmp;      /* events; NULL: none */
	enum migration_status status;
	char error[256];
	bool postmigrate;            /* paused by a completed save until `cont` */
	bool thread_started;         /* joined by the next start or at finish */
	pthread_t thread;
	int fd;
	struct migration_params params;
	struct migration_stats stats;
	/* The writable disks (migration_set_disks), copied by a job started
	 * with copy_storage and written by an incoming stream that has them. */
	struct blk_backend *disks[MIG_DISK_MAX];
	unsigned ndisks;
	bool copy_storage;           /* this job's (QMP migrate "blk") */
};

void migration_init(struct migration *m, struct vm *vm);
/* The machine's writable disks, in --disk order (before any job). */
void migration_set_disks(struct migration *m, struct blk_backend *const *disks, unsigned n);
/* Copies them into out (MIG_DISK_MAX entries); returns how many. */
unsigned migration_get_disks(struct migration *m, struct blk_backend **out);
/* Starts the job on fd (taken over); copy_storage: the disks too (a live
 * migration only). Returns 0, or -1 with err set when one
 * is running already or the thread cannot start (fd then closed). */
int migration_start(struct migration *m, int fd, bool copy_storage, char *err, size_t errlen);
/* QEMU's query-migrate: {} before any job, else status, ram bytes and
 * error-desc on failure. */
json_t *migration_query(struct migration *m);
bool migration_active(struct migration *m);
/* For query-status and cont: whether the VM stays paused by a save. */
bool migration_postmigrate(struct migration *m);
void migration_clear_postmigrate(struct migration *m);
void migration_cancel(struct migration *m);
/* For the jobs: an event without data; the end of a job (closes the
 * stream; on success the VM stays paused in postmigrate, on failure a VM
 * that was running runs again). */
void migration_emit(struct migration *m, const char *event);
void *migration_job_end(struct migration *m, int rc, bool was_running, const char *err);
/* Takes back the image locks of the writable disks that a save dropped
 * (blk_lock; QEMU reactivates its images so before it runs the machine
 * again). -1 with err ("disk N: in use by another process") when another
 * process holds one: on shared storage, the migration's target that took
 * the disk over. The machine must then stay paused: two machines writing
 * one image corrupt it. Called before every resume that may follow a save
 * (a failed job's, cont). */
int migration_activate_disks(struct migration *m, char *err, size_t errlen);
/* The target's side: status changes of an incoming stream (events too). */
void migration_set_status(struct migration *m, enum migration_status s, const char *error);
/* Where events go from now on; NULL (before the QMP server stops): nowhere. */
void migration_set_qmp(struct migration *m, struct qmp_server *qmp);
/* Cancels a running job and joins its thread (teardown). */
void migration_finish(struct migration *m);

#endif
