#include "migration.h"

#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "log.h"
#include "migration_live.h"
#include "qmp_server.h"
#include "snapshot.h"
#include "vm.h"

static const char *status_name(enum migration_status s)
{
	switch (s) {
	case MIG_SETUP: return "setup";
	case MIG_ACTIVE: return "active";
	case MIG_DEVICE: return "device";
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
	m->params = (struct migration_params){ .downtime_limit_ms = 300, .throttle_initial = 20,
					       .throttle_increment = 10 };
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

void migration_emit(struct migration *m, const char *event)
{
	pthread_mutex_lock(&m->lock);
	emit_locked(m, event, NULL);
	pthread_mutex_unlock(&m->lock);
}

void migration_set_status(struct migration *m, enum migration_status s, const char *error)
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

static void *job(struct migration *m)
{
	char err[512] = "";
	bool was_running = vm_run_state(m->vm) == VM_RUNNING;
	int rc = 0;
	if (m->copy_storage) {
		snprintf(err, sizeof(err), "blk: copying the disks needs a live migration (a socket), not a file");
		return migration_job_end(m, -1, false, err);
	}
	if (was_running) {
		if (!vm_pause(m->vm)) {
			snprintf(err, sizeof(err), "the machine is shutting down");
			rc = -1;
		} else {
			migration_emit(m, "STOP");
		}
	}
	if (rc == 0) {
		migration_set_status(m, MIG_ACTIVE, NULL);
		rc = snapshot_save(m->vm, m->fd, &m->progress, err, sizeof(err));
	}
	return migration_job_end(m, rc, was_running, err);
}

static void *job_thread(void *arg)
{
	struct migration *m = arg;
	pthread_setname_np(pthread_self(), "migration");   /* for top -H, gdb */
	struct stat st;
	if (fstat(m->fd, &st) == 0 && !S_ISREG(st.st_mode))
		return live_job(m);
	return job(m);
}

void *migration_job_end(struct migration *m, int rc, bool was_running, const char *err)
{
	pthread_mutex_lock(&m->lock);
	close(m->fd);
	m->fd = -1;
	pthread_mutex_unlock(&m->lock);
	if (rc == 0) {
		migration_set_status(m, MIG_COMPLETED, NULL);
		return NULL;
	}
	bool cancelled = __atomic_load_n(&m->progress.cancel, __ATOMIC_RELAXED);
	kvz_warn("migrate: %s", err);
	migration_set_status(m, cancelled ? MIG_CANCELLED : MIG_FAILED, err);
	char why[300];
	if (!was_running)
		return NULL;
	if (migration_activate_disks(m, why, sizeof(why)) < 0)
		kvz_error("migrate: cannot resume: %s; the machine stays paused", why);
	else if (vm_resume(m->vm))
		migration_emit(m, "RESUME");
	return NULL;
}

int migration_activate_disks(struct migration *m, char *err, size_t errlen)
{
	struct blk_backend *b[MIG_DISK_MAX];
	unsigned n = migration_get_disks(m, b);
	for (unsigned i = 0; i < n; i++) {
		char what[16];
		snprintf(what, sizeof(what), "%u", i);
		if (blk_lock(b[i], true, what, err, errlen) < 0)
			return -1;
	}
	return 0;
}

void migration_set_disks(struct migration *m, struct blk_backend *const *disks, unsigned n)
{
	pthread_mutex_lock(&m->lock);
	m->ndisks = n > MIG_DISK_MAX ? MIG_DISK_MAX : n;
	for (unsigned i = 0; i < m->ndisks; i++)
		m->disks[i] = disks[i];
	pthread_mutex_unlock(&m->lock);
}

unsigned migration_get_disks(struct migration *m, struct blk_backend **out)
{
	pthread_mutex_lock(&m->lock);
	unsigned n = m->ndisks;
	memcpy(out, m->disks, n * sizeof(*out));
	pthread_mutex_unlock(&m->lock);
	return n;
}

int migration_start(struct migration *m, int fd, bool copy_storage, char *err, size_t errlen)
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
	m->copy_storage = copy_storage;
	pthread_mutex_unlock(&m->lock);
	migration_set_status(m, MIG_SETUP, NULL);
	memset(&m->stats, 0, sizeof(m->stats));
	int rc = pthread_create(&m->thread, NULL, job_thread, m);
	if (rc) {
		snprintf(err, errlen, "cannot start the migration thread: %s", strerror(rc));
		close(fd);
		m->fd = -1;
		migration_set_status(m, MIG_FAILED, err);
		return -1;
	}
	m->thread_started = true;
	return 0;
}

#define LOAD(field) (json_int_t)__atomic_load_n(&m->stats.field, __ATOMIC_RELAXED)

/* QEMU's names: times in ms, ram counters in bytes and pages. */
static void add_live_stats(struct migration *m, json_t *r)
{
	json_t *ram = json_object_get(r, "ram");
	json_object_set_new(ram, "transferred", json_integer(LOAD(transferred)));
	json_object_set_new(ram, "remaining", json_integer(LOAD(remaining)));
	json_object_set_new(ram, "duplicate", json_integer(LOAD(duplicate)));
	json_object_set_new(ram, "normal", json_integer(LOAD(normal)));
	json_object_set_new(ram, "dirty-pages-rate", json_integer(LOAD(dirty_pages_rate)));
	json_object_set_new(ram, "mbps", json_real((double)LOAD(mbps)));
	json_object_set_new(ram, "dirty-sync-count", json_integer(LOAD(dirty_sync_count)));
	json_object_set_new(ram, "precopy-bytes", json_integer(LOAD(precopy_bytes)));
	json_object_set_new(ram, "downtime-bytes", json_integer(LOAD(downtime_bytes)));
	json_object_set_new(r, "total-time", json_integer(LOAD(total_time)));
	json_object_set_new(r, "setup-time", json_integer(LOAD(setup_time)));
	json_object_set_new(r, "downtime", json_integer(LOAD(downtime)));
	json_object_set_new(r, "expected-downtime", json_integer(LOAD(expected_downtime)));
	if (LOAD(disk_total))
		json_object_set_new(r, "disk", json_pack("{s:I,s:I,s:I}", "total", LOAD(disk_total),
							 "transferred", LOAD(disk_transferred),
							 "remaining", LOAD(disk_remaining)));
	if (LOAD(throttle_pct))
		json_object_set_new(r, "cpu-throttle-percentage", json_integer(LOAD(throttle_pct)));
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
	if (r && __atomic_load_n(&m->stats.live, __ATOMIC_RELAXED))
		add_live_stats(m, r);
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

/* A job blocked sending to a target that stopped reading wakes up with an
 * error: the socket is shut down (not closed: the job owns it). */
void migration_cancel(struct migration *m)
{
	__atomic_store_n(&m->progress.cancel, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&m->lock);
	if (m->fd >= 0 && (m->status == MIG_SETUP || m->status == MIG_ACTIVE))
		shutdown(m->fd, SHUT_RDWR);
	pthread_mutex_unlock(&m->lock);
}

void migration_finish(struct migration *m)
{
	migration_cancel(m);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	m->thread_started = false;
	pthread_mutex_destroy(&m->lock);
}
