/* Long operations as jobs (snapshot, restore; later migrate, backup): each
 * runs on a thread of its own holding its guest's lock, is recorded in the
 * store (store.h: state queued -> running -> completed | failed |
 * cancelled, phase, done/total bytes, rate, error, result), reports progress, can be
 * cancelled, and has an event for each change of state or phase. A kvzd
 * that stops while a job runs cancels it; one that was killed finds it
 * queued or running at the next start and marks it failed after the job's
 * kind has put things back (recover). */
#ifndef KVZD_JOBS_H
#define KVZD_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "guest_ops.h"
#include "kvzd.h"

struct job;

struct job_kind {
	const char *type; /* as stored and in the API, e.g. "snapshot-create" */
	/* The work, called with the guest's lock held: 0, or -1 with e. It
	 * reports with job_progress() and stops early, leaving the previous
	 * state, once job_cancelled(). */
	int (*run)(struct kvzd *d, struct job *j, const char *guest, json_t *params,
		   struct op_error *e);
	/* At start-up, for a job an earlier kvzd left queued or running
	 * (before the API opens): undoes what it left half-done. NULL when
	 * there is nothing to undo. */
	void (*recover)(struct kvzd *d, json_t *job);
};

/* kinds: NULL-terminated, what this kvzd runs (for recovery). Marks jobs
 * a previous kvzd left unfinished as failed, after their kind's recover. */
int jobs_init(struct kvzd *d, const struct job_kind *const *kinds, char *err, size_t errlen);
/* Cancels every job and waits for them to end. */
void jobs_stop(struct kvzd *d);

/* Records a queued job and starts its thread. The job's record (new
 * reference), or NULL with e (503 when too many jobs run). params is
 * borrowed. */
json_t *job_submit(struct kvzd *d, const struct job_kind *k, const char *guest,
		   json_t *params, struct op_error *e);
/* 404 for no such job, 409 for one that has ended; otherwise asks it to
 * stop and returns 0 (it ends as cancelled unless it was just finishing). */
int job_cancel(struct kvzd *d, int64_t id, struct op_error *e);

/* From the job's run: the phase it is in and its bytes done of total
 * (total 0 when unknown). Stored at most every 200 ms, and at once with
 * an event when the phase changes. */
void job_progress(struct job *j, const char *phase, uint64_t done, uint64_t total);
bool job_cancelled(const struct job *j);
/* From the job's run: what it reports beyond its state, as the job's
 * "result" (borrowed; e.g. a migration's hand-over times). Stored at once. */
void job_set_result(struct job *j, json_t *result);

#endif
