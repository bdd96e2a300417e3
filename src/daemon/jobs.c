#include "jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest_config.h"
#include "guest_locks.h"
#include "log.h"
#include "store.h"

/* Progress is written to the store at most this often. */
#define SAVE_INTERVAL_MS 200

struct job {
	struct kvzd *d;
	const struct job_kind *kind;
	json_t *params;
	struct job_row row;     /* the job thread's; written to the store */
	int64_t phase_start_ms; /* for the rate */
	int64_t saved_ms;
	atomic_bool cancel;
	struct job *next;       /* in jobs.active, under jobs.lock */
};

/* The jobs running now, so that API threads can cancel them and a
 * stopping kvzd can wait for them. */
struct jobs {
	pthread_mutex_t lock;
	pthread_cond_t ended; /* signalled when a job leaves active */
	struct job *active;
	int nactive;
};

bool job_cancelled(const struct job *j)
{
	return atomic_load(&j->cancel);
}

static void job_event(struct job *j, const char *type, const char *what)
{
	char detail[700];
	snprintf(detail, sizeof(detail), "job %lld %s%s%s", (long long)j->row.id, j->row.type,
		 what && what[0] ? ": " : "", what ? what : "");
	store_event_add(j->d->store, j->row.guest, type, detail);
}

static void job_save(struct job *j)
{
	j->saved_ms = kvzd_now_ms();
	if (store_job_save(j->d->store, &j->row))
		kvz_warn("job %lld: cannot record its progress", (long long)j->row.id);
}

void job_progress(struct job *j, const char *phase, uint64_t done, uint64_t total)
{
	int64_t now = kvzd_now_ms();
	bool new_phase = strcmp(phase, j->row.phase) != 0;
	if (new_phase) {
		snprintf(j->row.phase, sizeof(j->row.phase), "%s", phase);
		j->phase_start_ms = now;
	}
	j->row.done = done;
	j->row.total = total;
	int64_t ms = now - j->phase_start_ms;
	j->row.rate = ms > 0 ? (double)done * 1000.0 / (double)ms : 0;
	if (new_phase) {
		job_save(j);
		job_event(j, "job-phase", phase);
	} else if (now - j->saved_ms >= SAVE_INTERVAL_MS) {
		job_save(j);
	}
}

void job_set_result(struct job *j, json_t *result)
{
	if (store_job_set_result(j->d->store, j->row.id, result))
		kvz_warn("job %lld: cannot record its result", (long long)j->row.id);
}

static void set_state(struct job *j, const char *state)
{
	snprintf(j->row.state, sizeof(j->row.state), "%s", state);
	char type[32];
	snprintf(type, sizeof(type), "job-%s", state);
	job_save(j);
	job_event(j, type, j->row.error);
}

static void job_free(struct job *j)
{
	json_decref(j->params);
	free(j);
}

static void leave_active(struct job *j)
{
	struct jobs *js = j->d->jobs;
	pthread_mutex_lock(&js->lock);
	for (struct job **p = &js->active; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			break;
		}
	js->nactive--;
	pthread_cond_broadcast(&js->ended);
	pthread_mutex_unlock(&js->lock);
}

/* Queued until the guest's lock is free (another operation on the guest
 * ends), then runs. */
static void *job_thread(void *arg)
{
	struct job *j = arg;
	struct op_error e = {0};
	guest_lock(j->d, j->row.guest);
	if (job_cancelled(j)) {
		snprintf(j->row.error, sizeof(j->row.error), "cancelled before it started");
		j->row.ended_ms = kvzd_now_ms();
		set_state(j, "cancelled");
		goto out;
	}
	j->row.started_ms = kvzd_now_ms();
	j->phase_start_ms = j->row.started_ms;
	set_state(j, "running");
	int rc = j->kind->run(j->d, j, j->row.guest, j->params, &e);
	j->row.ended_ms = kvzd_now_ms();
	if (rc == 0) {
		j->row.error[0] = 0;
		set_state(j, "completed");
	} else {
		snprintf(j->row.error, sizeof(j->row.error), "%s", e.msg);
		set_state(j, job_cancelled(j) ? "cancelled" : "failed");
	}
out:
	guest_unlock(j->d, j->row.guest);
	leave_active(j);
	job_free(j);
	return NULL;
}

json_t *job_submit(struct kvzd *d, const struct job_kind *k, const char *guest,
		   json_t *params, struct op_error *e)
{
	struct jobs *js = d->jobs;
	struct job *j = calloc(1, sizeof(*j));
	if (!j) {
		op_fail(e, 500, "out of memory");
		return NULL;
	}
	j->d = d;
	j->kind = k;
	j->params = json_deep_copy(params);
	snprintf(j->row.type, sizeof(j->row.type), "%s", k->type);
	snprintf(j->row.guest, sizeof(j->row.guest), "%s", guest);
	snprintf(j->row.state, sizeof(j->row.state), "queued");
	pthread_mutex_lock(&js->lock);
	if (js->nactive >= KVZD_MAX_BUSY) {
		pthread_mutex_unlock(&js->lock);
		job_free(j);
		op_fail(e, 503, "%d jobs are running; try again later", KVZD_MAX_BUSY);
		return NULL;
	}
	j->row.id = store_job_insert(d->store, k->type, guest, params);
	if (j->row.id < 0) {
		pthread_mutex_unlock(&js->lock);
		job_free(j);
		op_fail(e, 500, "cannot record the job");
		return NULL;
	}
	json_t *rec = store_job_get(d->store, j->row.id);
	job_event(j, "job-queued", NULL);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int rc = pthread_create(&t, &attr, job_thread, j);
	pthread_attr_destroy(&attr);
	if (rc) {
		pthread_mutex_unlock(&js->lock);
		snprintf(j->row.error, sizeof(j->row.error), "cannot start a thread: %s",
			 strerror(rc));
		j->row.ended_ms = kvzd_now_ms();
		set_state(j, "failed");
		op_fail(e, 500, "%s", j->row.error);
		job_free(j);
		json_decref(rec);
		return NULL;
	}
	j->next = js->active;
	js->active = j;
	js->nactive++;
	pthread_mutex_unlock(&js->lock);
	return rec;
}

int job_cancel(struct kvzd *d, int64_t id, struct op_error *e)
{
	struct jobs *js = d->jobs;
	pthread_mutex_lock(&js->lock);
	struct job *j = js->active;
	while (j && j->row.id != id)
		j = j->next;
	if (j)
		atomic_store(&j->cancel, true);
	pthread_mutex_unlock(&js->lock);
	if (j)
		return 0;
	json_t *rec = store_job_get(d->store, id);
	if (!rec)
		return op_fail(e, 404, "no job %lld", (long long)id);
	op_fail(e, 409, "job %lld has already ended (%s)", (long long)id,
		json_string_value(json_object_get(rec, "state")));
	json_decref(rec);
	return -1;
}

/* A job found queued or running at start-up: its kvzd died under it. */
static void recover_one(struct kvzd *d, const struct job_kind *const *kinds, json_t *rec)
{
	const char *type = json_string_value(json_object_get(rec, "type"));
	for (const struct job_kind *const *k = kinds; *k; k++)
		if (!strcmp((*k)->type, type) && (*k)->recover)
			(*k)->recover(d, rec);
	struct job_row r = {.id = json_integer_value(json_object_get(rec, "id")),
			    .done = (uint64_t)json_integer_value(json_object_get(rec, "done")),
			    .total = (uint64_t)json_integer_value(json_object_get(rec, "total")),
			    .started_ms = json_integer_value(json_object_get(rec, "started_ms")),
			    .ended_ms = kvzd_now_ms()};
	snprintf(r.state, sizeof(r.state), "failed");
	snprintf(r.phase, sizeof(r.phase), "%s", json_string_value(json_object_get(rec, "phase")));
	snprintf(r.error, sizeof(r.error), "kvzd stopped while the job was %s; the previous "
		 "state is kept", json_string_value(json_object_get(rec, "state")));
	store_job_save(d->store, &r);
	const char *guest = json_string_value(json_object_get(rec, "guest"));
	char detail[700];
	snprintf(detail, sizeof(detail), "job %lld %s: %s", (long long)r.id, type, r.error);
	store_event_add(d->store, guest, "job-failed", detail);
	kvz_warn("%s", detail);
}

int jobs_init(struct kvzd *d, const struct job_kind *const *kinds, char *err, size_t errlen)
{
	struct jobs *js = calloc(1, sizeof(*js));
	if (!js) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&js->lock, NULL);
	pthread_cond_init(&js->ended, NULL);
	d->jobs = js;
	json_t *left = store_jobs_unfinished(d->store);
	size_t i;
	json_t *rec;
	json_array_foreach(left, i, rec)
		recover_one(d, kinds, rec);
	json_decref(left);
	return 0;
}

void jobs_stop(struct kvzd *d)
{
	struct jobs *js = d->jobs;
	if (!js)
		return;
	pthread_mutex_lock(&js->lock);
	for (struct job *j = js->active; j; j = j->next)
		atomic_store(&j->cancel, true);
	while (js->nactive)
		pthread_cond_wait(&js->ended, &js->lock);
	pthread_mutex_unlock(&js->lock);
	pthread_cond_destroy(&js->ended);
	pthread_mutex_destroy(&js->lock);
	free(js);
	d->jobs = NULL;
}
