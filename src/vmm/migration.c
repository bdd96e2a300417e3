#include "migration.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qmp_server.h"
#include "snapshot.h"
#include "vm.h"

static const char *status_name(enum migration_status s)
{
	switch (s) {
	case MIG_SETUP: return "setup";
	case MIG_ACTIVE: return "active";
	case MIG_COMPLETED: return "completed";
	case MIG_FAILED: return "failed";
	case MIG_CANCELLED: return "cancelled";
	default: return "none";
	}
}

void migration_init(struct migration *m, struct vm *vm)
{
	memset(m, 0, sizeof(*m));
	m->vm = vm;
	m->fd = -1;
	pthread_mutex_init(&m->lock, NULL);
}

/* Under the lock, so that migration_detach_qmp() is final (emitting only
 * appends to the server's queue: its lock is a leaf). */
static void emit_locked(struct migration *m, const char *event, json_t *data)
{
	if (m->qmp)
		qmp_server_emit(m->qmp, event, data);
	else
		json_decref(data);
}

static void emit(struct migration *m, const char *event)
{
	pthread_mutex_lock(&m->lock);
	emit_locked(m, event, NULL);
	pthread_mutex_unlock(&m->lock);
}

static void set_status(struct migration *m, enum migration_status s, const char *error)
{
	pthread_mutex_lock(&m->lock);
	m->status = s;
	if (error)
		snprintf(m->error, sizeof(m->error), "%s", error);
	if (s == MIG_COMPLETED)
		m->postmigrate = true;
	emit_locked(m, "MIGRATION", json_pack("{s:s}", "status", status_name(s)));
	pthread_mutex_unlock(&m->lock);
}

void migration_set_qmp(struct migration *m, struct qmp_server *qmp)
{
	pthread_mutex_lock(&m->lock);
	m->qmp = qmp;
	pthread_mutex_unlock(&m->lock);
}

static void *job(void *arg)
{
	struct migration *m = arg;
	pthread_setname_np(pthread_self(), "migration");   /* for top -H, gdb */
	char err[512] = "";
	bool was_running = vm_run_state(m->vm) == VM_RUNNING;
	int rc = 0;
	if (was_running) {
		if (!vm_pause(m->vm)) {
			snprintf(err, sizeof(err), "the machine is shutting down");
			rc = -1;
		} else {
			emit(m, "STOP");
		}
	}
	if (rc == 0) {
		set_status(m, MIG_ACTIVE, NULL);
		rc = snapshot_save(m->vm, m->fd, &m->progress, err, sizeof(err));
	}
	close(m->fd);
	m->fd = -1;
	if (rc == 0) {
		set_status(m, MIG_COMPLETED, NULL);
		return NULL;
	}
	bool cancelled = __atomic_load_n(&m->progress.cancel, __ATOMIC_RELAXED);
	kvz_warn("migrate: %s", err);
	set_status(m, cancelled ? MIG_CANCELLED : MIG_FAILED, err);
	if (was_running && vm_resume(m->vm))
		emit(m, "RESUME");
	return NULL;
}

int migration_start(struct migration *m, int fd, char *err, size_t errlen)
{
	pthread_mutex_lock(&m->lock);
	bool busy = m->status == MIG_SETUP || m->status == MIG_ACTIVE;
	bool join = !busy && m->thread_started;
	pthread_mutex_unlock(&m->lock);
	if (busy) {
		snprintf(err, errlen, "a migration is already in progress");
		close(fd);
		return -1;
	}
	if (join) {
		pthread_join(m->thread, NULL);
		m->thread_started = false;
	}
	m->fd = fd;
	memset(&m->progress, 0, sizeof(m->progress));
	pthread_mutex_lock(&m->lock);
	m->error[0] = '\0';
	m->postmigrate = false;
	pthread_mutex_unlock(&m->lock);
	set_status(m, MIG_SETUP, NULL);
	int rc = pthread_create(&m->thread, NULL, job, m);
	if (rc) {
		snprintf(err, errlen, "cannot start the migration thread: %s", strerror(rc));
		close(fd);
		m->fd = -1;
		set_status(m, MIG_FAILED, err);
		return -1;
	}
	m->thread_started = true;
	return 0;
}

json_t *migration_query(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	enum migration_status s = m->status;
	char error[256];
	snprintf(error, sizeof(error), "%s", m->error);
	pthread_mutex_unlock(&m->lock);
	if (s == MIG_NONE)
		return json_object();
	uint64_t total = __atomic_load_n(&m->progress.total, __ATOMIC_RELAXED);
	uint64_t done = __atomic_load_n(&m->progress.done, __ATOMIC_RELAXED);
	json_t *r = json_pack("{s:s,s:{s:I,s:I,s:I}}", "status", status_name(s), "ram",
			      "total", (json_int_t)total, "transferred", (json_int_t)done,
			      "remaining", (json_int_t)(total > done ? total - done : 0));
	if (s == MIG_FAILED && r)
		json_object_set_new(r, "error-desc", json_string(error));
	return r;
}

bool migration_active(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	bool a = m->status == MIG_SETUP || m->status == MIG_ACTIVE;
	pthread_mutex_unlock(&m->lock);
	return a;
}

bool migration_postmigrate(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	bool p = m->postmigrate;
	pthread_mutex_unlock(&m->lock);
	return p;
}

void migration_clear_postmigrate(struct migration *m)
{
	pthread_mutex_lock(&m->lock);
	m->postmigrate = false;
	pthread_mutex_unlock(&m->lock);
}

void migration_cancel(struct migration *m)
{
	__atomic_store_n(&m->progress.cancel, 1, __ATOMIC_RELAXED);
}

void migration_finish(struct migration *m)
{
	migration_cancel(m);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	m->thread_started = false;
	pthread_mutex_destroy(&m->lock);
}
