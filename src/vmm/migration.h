/* The migration job (QMP `migrate`): saves the machine to a descriptor on
 * a thread of its own, so the command returns at once. It pauses the VM,
 * writes the snapshot (snapshot.c) and leaves the VM paused in
 * "postmigrate" when it completes; on failure a VM that was running runs
 * again. Each status change is a MIGRATION event; query-migrate reports
 * the status and the bytes done. Live migration (pre-copy over a socket)
 * will be another job of the same shape. */
#ifndef KVZ_VMM_MIGRATION_H
#define KVZ_VMM_MIGRATION_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "state/snapshot_file.h"

struct vm;
struct qmp_server;

enum migration_status { MIG_NONE, MIG_SETUP, MIG_ACTIVE, MIG_COMPLETED, MIG_FAILED, MIG_CANCELLED };

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
};

void migration_init(struct migration *m, struct vm *vm);
/* Starts the job on fd (taken over). Returns 0, or -1 with err set when one
 * is running already or the thread cannot start (fd then closed). */
int migration_start(struct migration *m, int fd, char *err, size_t errlen);
/* QEMU's query-migrate: {} before any job, else status, ram bytes and
 * error-desc on failure. */
json_t *migration_query(struct migration *m);
bool migration_active(struct migration *m);
/* For query-status and cont: whether the VM stays paused by a save. */
bool migration_postmigrate(struct migration *m);
void migration_clear_postmigrate(struct migration *m);
void migration_cancel(struct migration *m);
/* Where events go from now on; NULL (before the QMP server stops): nowhere. */
void migration_set_qmp(struct migration *m, struct qmp_server *qmp);
/* Cancels a running job and joins its thread (teardown). */
void migration_finish(struct migration *m);

#endif
