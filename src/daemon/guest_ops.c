#include "guest_ops.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "argv_build.h"
#include "cluster.h"
#include "disk_admission.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "guest_locks.h"
#include "log.h"
#include "parse.h"
#include "qmp_client.h"
#include "qmp_watch.h"
#include "backups.h"
#include "snapshots.h"
#include "storage.h"
#include "store.h"
#include "supervisor.h"
#include "vm_create.h"
#include "vm_disks.h"

#define START_TIMEOUT_MS 30000
#define QMP_TIMEOUT_MS 5000

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- paths ---- */

void guest_log_path(const struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/logs/%s.log", d->state_dir, name);
}

void guest_image_path(const struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/images/%s.img", d->state_dir, name);
}

/* QMP and console sockets: sun_path holds 108 bytes, so check here rather
 * than let a supervisor fail with a truncated path. */
static int socket_paths(const struct kvzd *d, const char *type, const char *name,
			char *qmp, char *console, struct op_error *e)
{
	int a = snprintf(qmp, 108, "%s/%s/%s.qmp", d->run_dir, type, name);
	int b = snprintf(console, 108, "%s/%s/%s.console", d->run_dir, type, name);
	if (a >= 108 || b >= 108)
		return op_fail(e, 500, "run directory %s is too long for socket paths", d->run_dir);
	return 0;
}

/* ---- create ---- */

int guest_create(struct kvzd *d, json_t *req, json_t **job, struct op_error *e)
{
	*job = NULL;
	if (!json_is_object(req))
		return op_fail(e, 400, "the body must be a JSON object");
	const char *name = cfg_str(req, "name");
	const struct guest_driver *drv = guest_driver_for_type(cfg_str(req, "type"));
	if (!name || !kvz_valid_name(name))
		return op_fail(e, 400, "bad or missing name (letters, digits, '_', '.', '-'; up to 63)");
	if (!drv)
		return op_fail(e, 400, "type must be \"vm\" or \"ct\"");
	json_t *av = json_object_get(req, "autostart");
	if (av && !json_is_boolean(av))
		return op_fail(e, 400, "autostart must be true or false");
	json_t *cfg = json_object();
	if (drv->config(d, req, cfg, e) || cfg_tags(req, cfg, e)) {
		json_decref(cfg);
		return -1;
	}
	guest_lock(d, name);
	char err[300];
	int rc = -1;
	/* The record first: it reserves the name and, under disk_lock, the
	 * disk space. Storage second; if that fails the record goes again, so
	 * nothing is left half-done. */
	pthread_mutex_lock(&d->disk_lock);
	/* A new VM's disks 1.. count with disk 0: none of their files is made. */
	uint64_t disk = (uint64_t)json_integer_value(json_object_get(cfg, "disk_size")) +
			vm_disks_extra_bytes(cfg);
	int bad = disk_admit(d, name, drv, disk, e);
	if (!bad && store_guest_insert(d->store, name, drv->type, cfg, json_is_true(av), err, sizeof(err)))
		bad = op_fail(e, strstr(err, "already exists") ? 409 : 500, "%s", err);
	pthread_mutex_unlock(&d->disk_lock);
	if (bad)
		goto out;
	if (drv->kind == GUEST_VM && vm_create_is_job(cfg)) {
		/* Minutes for a new template: the job makes the disk and the
		 * guest is "creating" until then (vm_create.h). */
		*job = vm_create_submit(d, name, req, e);
		if (!*job)
			store_guest_delete(d->store, name);
		else
			store_event_add(d->store, name, "creating", drv->type);
		rc = *job ? 0 : -1;
		goto out;
	}
	if (drv->create_storage(d, name, cfg, e)) {
		store_guest_delete(d->store, name);
		goto out;
	}
	store_guest_set_config(d->store, name, cfg);
	store_guest_set_state(d->store, name, "stopped");
	store_event_add(d->store, name, "created", drv->type);
	rc = 0;
out:
	guest_unlock(d, name);
	json_decref(cfg);
	return rc;
}

/* ---- start ---- */

/* The last non-empty line of a guest's log: what the supervisor said when it
 * gave up. */
void guest_log_tail(struct kvzd *d, const char *name, char *out, size_t len)
{
	char path[400];
	guest_log_path(d, name, path, sizeof(path));
	out[0] = 0;
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char line[512];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = 0;
		if (line[0])
			snprintf(out, len, "%.300s", line);
	}
	fclose(f);
}

static void kill_and_wait(pid_t pid, unsigned long long start)
{
	kill(pid, SIGKILL);
	for (int i = 0; i < 100 && sup_check(pid, start, NULL) == SUP_ALIVE; i++)
		sleep_ms(50);
}

/* Waits until the supervisor answers on its QMP socket. */
static int wait_ready(struct kvzd *d, const char *name, pid_t pid, const char *qmp,
		      struct op_error *e)
{
	char err[256] = "";
	for (int waited = 0; waited < START_TIMEOUT_MS; waited += 50) {
		int status = 0;
		enum sup_liveness l = sup_check(pid, 0, &status);
		if (l != SUP_ALIVE) {
			char tail[400];
			guest_log_tail(d, name, tail, sizeof(tail));
			if (!tail[0] && l == SUP_EXITED && WIFSIGNALED(status))
				snprintf(tail, sizeof(tail), "supervisor killed by signal %d",
					 WTERMSIG(status));
			else if (!tail[0] && l == SUP_EXITED)
				snprintf(tail, sizeof(tail), "supervisor exited with status %d",
					 WEXITSTATUS(status));
			return op_fail(e, 500, "%s failed to start: %s", name,
				    tail[0] ? tail : "supervisor vanished");
		}
		struct stat st;
		if (stat(qmp, &st) == 0) {
			struct qmp_client *c = qmp_client_connect(qmp, 2000, err, sizeof(err));
			if (c) {
				qmp_client_close(c);
				return 0;
			}
		}
		sleep_ms(50);
	}
	return op_fail(e, 504, "%s did not answer on %s within %d s%s%s", name, qmp,
		    START_TIMEOUT_MS / 1000, err[0] ? ": " : "", err);
}

/* Spawns the guest's supervisor with its usual command line plus extra
 * (NULL-terminated, may be NULL) and waits until it answers. On failure the
 * supervisor is gone and the guest is stopped as before. */
static int finish_start(struct kvzd *d, json_t *g, const struct guest_driver *drv, json_t *cfg,
			pid_t pid, unsigned long long start, const char *qmp, const char *console,
			struct op_error *e);

int guest_spawn_locked(struct kvzd *d, json_t *g, const char *const *extra, int keep_fd,
		       struct op_error *e)
{
	const struct guest_driver *drv = guest_driver_of(g);
	const char *name = cfg_str(g, "name");
	json_t *cfg = json_object_get(g, "config");
	if (!strcmp(cfg_str(g, "state"), "running"))
		return op_fail(e, 409, "guest %s is already running", name);
	if (!strcmp(cfg_str(g, "state"), "creating"))
		return op_fail(e, 409, "guest %s is still being created", name);
	char qmp[108], console[108], logp[400], err[300];
	if (socket_paths(d, drv->type, name, qmp, console, e))
		return -1;
	if (drv->prepare_start && drv->prepare_start(d, name, cfg, qmp, e))
		return -1;
	unlink(console);
	guest_log_path(d, name, logp, sizeof(logp));
	struct argv a = {0};
	drv->argv(d, name, cfg, qmp, console, extra, &a);
	if (keep_fd > 2)
		a.keep_fd = keep_fd; /* not ours: argv_free must not close it */
	pid_t pid = sup_spawn(a.v, a.keep_fd, logp, err, sizeof(err));
	if (keep_fd > 2)
		a.keep_fd = 0;
	argv_free(&a);
	if (pid < 0)
		return op_fail(e, 500, "%s", err);
	store_guest_set_runtime(d->store, name, pid, sup_proc_start(pid), qmp, console);
	store_guest_set_state(d->store, name, "starting");
	return 0;
}

int guest_finish_start_locked(struct kvzd *d, const char *name, struct op_error *e)
{
	json_t *g = store_guest_get(d->store, name);
	if (!g)
		return op_fail(e, 500, "%s is gone", name);
	const struct guest_driver *drv = guest_driver_of(g);
	json_t *cfg = json_object_get(g, "config");
	pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	unsigned long long start = (unsigned long long)json_integer_value(json_object_get(g, "pid_start"));
	char qmp[108], console[108];
	snprintf(qmp, sizeof(qmp), "%s", cfg_str(g, "qmp"));
	snprintf(console, sizeof(console), "%s", cfg_str(g, "console"));
	int rc = finish_start(d, g, drv, cfg, pid, start, qmp, console, e);
	json_decref(g);
	return rc;
}

int guest_start_locked(struct kvzd *d, json_t *g, const char *const *extra,
			struct op_error *e)
{
	if (guest_spawn_locked(d, g, extra, -1, e))
		return -1;
	return guest_finish_start_locked(d, cfg_str(g, "name"), e);
}

/* Waits until the supervisor spawned answers; records it running, or
 * gone and the guest stopped. */
static int finish_start(struct kvzd *d, json_t *g, const struct guest_driver *drv, json_t *cfg,
			pid_t pid, unsigned long long start, const char *qmp, const char *console,
			struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	if (wait_ready(d, name, pid, qmp, e)) {
		kill_and_wait(pid, start);
		store_guest_set_runtime(d->store, name, 0, 0, "", "");
		store_guest_set_state(d->store, name, "stopped");
		store_event_add(d->store, name, "start-failed", e->msg);
		return -1;
	}
	/* The start time again: the child had maybe not exec'd yet above. */
	store_guest_set_runtime(d->store, name, pid, sup_proc_start(pid), qmp, console);
	if (drv->after_start)
		drv->after_start(d, name, cfg);
	store_guest_set_state(d->store, name, "running");
	store_event_add(d->store, name, "started", NULL);
	return 0;
}

int guest_start_stored(struct kvzd *d, const char *name, const char *const *extra,
		       struct op_error *e)
{
	json_t *g = store_guest_get(d->store, name);
	int rc = g ? guest_start_locked(d, g, extra, e) : op_fail(e, 404, "%s is gone", name);
	json_decref(g);
	return rc;
}

bool guest_state_has_supervisor(const char *state)
{
	return !strcmp(state, "running") || !strcmp(state, "paused");
}

bool guest_migrating(json_t *g)
{
	const char *state = cfg_str(g, "state");
	return !strcmp(state, "incoming") || !strcmp(state, "migrated");
}

json_t *guest_get_or_404(struct kvzd *d, const char *name, struct op_error *e)
{
	json_t *g = store_guest_get(d->store, name);
	if (!g)
		op_fail(e, 404, "no guest named %s", name);
	return g;
}

/* A guest a failed migration left paused (its supervisor runs, the VM
 * does not: the target held its disk when it was taken back) runs on, once
 * its supervisor agrees (the disk free again). Lock held. */
static int resume_paused(struct kvzd *d, json_t *g, struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	char why[300];
	if (guest_driver_of(g)->migrate_resume(d, g, why, sizeof(why)))
		return op_fail(e, 409, "%s did not run: %s", name, why);
	store_guest_set_state(d->store, name, "running");
	store_event_add(d->store, name, "resumed", cfg_str(g, "state_reason"));
	kvz_info("%s: resumed", name);
	return 0;
}

int guest_start(struct kvzd *d, const char *name, struct op_error *e)
{
	guest_lock(d, name);
	json_t *g = guest_get_or_404(d, name, e);
	int rc = -1;
	if (g && guest_migrating(g))
		op_fail(e, 409, "guest %s is %s (a migration owns it)", name, cfg_str(g, "state"));
	else if (g && !strcmp(cfg_str(g, "state"), "paused"))
		rc = resume_paused(d, g, e);
	/* Every start (API, autostart, policies, HA) asks the cluster first:
	 * a guest another node owns must not run here too. */
	else if (g && !cluster_guest_may_start(d, name, e))
		rc = guest_start_locked(d, g, NULL, e);
	guest_unlock(d, name);
	json_decref(g);
	return rc;
}

/* ---- QMP ---- */

/* One command on a guest's QMP socket. QMP errors map to 409 (the request
 * does not fit the guest's state), transport errors to 502. */
struct qmp_client *guest_qmp_open(const char *name, const char *path, struct op_error *e)
{
	char err[300];
	struct qmp_client *c = qmp_client_connect(path, QMP_TIMEOUT_MS, err, sizeof(err));
	if (!c)
		op_fail(e, 502, "cannot reach the supervisor of %s: %s", name, err);
	return c;
}

int guest_qmp_call(const char *name, const char *path, const char *cmd, json_t *args,
		    json_t **ret, struct op_error *e)
{
	char err[300], cls[64] = "";
	struct qmp_client *c = guest_qmp_open(name, path, e);
	if (!c)
		return -1;
	int rc = qmp_client_execute(c, cmd, args, ret, cls, sizeof(cls), err, sizeof(err));
	qmp_client_close(c);
	if (rc > 0)
		return op_fail(e, 409, "%s: %s", name, err);
	if (rc < 0)
		return op_fail(e, 502, "%s: %s: %s", name, cmd, err);
	return 0;
}

/* ---- stop ---- */

/* A supervisor told to quit is usually gone within milliseconds (a
 * migration's source copy: its stop is a step of the hand-over), so its
 * end is looked for every 10 ms: a /proc read each. */
#define GONE_POLL_MS 10

bool guest_wait_gone(pid_t pid, unsigned long long start, int timeout_ms, int *status)
{
	for (int waited = 0; waited <= timeout_ms; waited += GONE_POLL_MS) {
		if (sup_check(pid, start, status) != SUP_ALIVE)
			return true;
		sleep_ms(GONE_POLL_MS);
	}
	return false;
}

static void clear_runtime(struct kvzd *d, json_t *g)
{
	const char *qmp = cfg_str(g, "qmp");
	const char *console = cfg_str(g, "console");
	if (qmp && qmp[0])
		unlink(qmp);
	if (console && console[0])
		unlink(console);
	store_guest_set_runtime(d->store, cfg_str(g, "name"), 0, 0, "", "");
}

int guest_stop_locked(struct kvzd *d, json_t *g, int timeout_s, bool force,
		       struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	const char *state = cfg_str(g, "state");
	if (strcmp(state, "running") && strcmp(state, "starting") && strcmp(state, "stopping") &&
	    strcmp(state, "paused"))
		return op_fail(e, 409, "guest %s is not running (%s)", name, state);
	pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	unsigned long long start = (unsigned long long)json_integer_value(json_object_get(g, "pid_start"));
	const char *qmp = cfg_str(g, "qmp");
	const struct guest_driver *drv = guest_driver_of(g);
	store_guest_set_state(d->store, name, "stopping");
	struct op_error ignored;
	const char *how = force ? "forced" : NULL;
	if (!force)
		drv->request_stop(name, qmp, pid, start, timeout_s, &how);
	if (sup_check(pid, start, NULL) == SUP_ALIVE) {
		/* quit is the clean way for the VMM to close its devices. */
		if (guest_qmp_call(name, qmp, "quit", NULL, NULL, &ignored) == 0)
			guest_wait_gone(pid, start, 5000, NULL);
	}
	if (sup_check(pid, start, NULL) == SUP_ALIVE) {
		kvz_warn("%s: supervisor %d did not exit; killing it", name, pid);
		kill(pid, SIGTERM);
		if (!guest_wait_gone(pid, start, 3000, NULL))
			kill_and_wait(pid, start);
	}
	clear_runtime(d, g);
	store_guest_set_state(d->store, name, "stopped");
	store_event_add(d->store, name, "stopped", how);
	return 0;
}

int guest_stop(struct kvzd *d, const char *name, int timeout_s, bool force,
	       struct op_error *e)
{
	guest_lock(d, name);
	json_t *g = guest_get_or_404(d, name, e);
	int rc = g ? guest_stop_locked(d, g, timeout_s, force, e) : -1;
	guest_unlock(d, name);
	json_decref(g);
	return rc;
}

/* ---- destroy ---- */

int guest_destroy(struct kvzd *d, const char *name, bool force, struct op_error *e)
{
	guest_lock(d, name);
	int rc = -1;
	json_t *g = guest_get_or_404(d, name, e);
	if (!g)
		goto out;
	const char *state = cfg_str(g, "state");
	if (strcmp(state, "stopped") && strcmp(state, "crashed")) {
		if (!force) {
			op_fail(e, 409, "guest %s is %s; stop it first or use force", name, state);
			goto out;
		}
		if (guest_stop_locked(d, g, 5, true, e))
			goto out;
	}
	if (guest_driver_of(g)->remove_storage(d, name, json_object_get(g, "config"), e))
		goto out;
	if (snapshots_remove_all(d, name, e) || backups_remove_all(d, name, e))
		goto out;
	char logp[400];
	guest_log_path(d, name, logp, sizeof(logp));
	unlink(logp);
	store_samples_delete(d->store, name);
	store_guest_delete(d->store, name);
	store_event_add(d->store, name, "destroyed", NULL);
	rc = 0;
out:
	guest_unlock(d, name);
	json_decref(g);
	return rc;
}

/* ---- adoption and crashes ---- */

/* A create that a previous kvzd did not finish (it died half-way): remove
 * whatever storage it made and the record, as a failed create would. */
static void undo_create(struct kvzd *d, json_t *g)
{
	const char *name = cfg_str(g, "name");
	struct op_error e;
	if (guest_driver_of(g)->remove_storage(d, name, json_object_get(g, "config"), &e))
		kvz_warn("%s", e.msg);
	store_guest_delete(d->store, name);
	kvz_warn("removed %s: its creation was interrupted when kvzd stopped", name);
}

void guests_adopt_all(struct kvzd *d)
{
	/* Runs before the API and the monitor start: nothing else to exclude. */
	json_t *list = store_guest_list(d->store);
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *name = cfg_str(g, "name");
		const char *state = cfg_str(g, "state");
		if (!strcmp(state, "stopped") || !strcmp(state, "crashed") || guest_migrating(g))
			continue; /* migrating ones: migration_recover() */
		if (!strcmp(state, "creating")) {
			undo_create(d, g);
			continue;
		}
		pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
		char detail[200];
		if (guest_supervisor_runs(g)) {
			snprintf(detail, sizeof(detail), "supervisor pid %d", pid);
			/* A paused one stays paused, with its reason. */
			if (strcmp(state, "paused"))
				store_guest_set_state(d->store, name, "running");
			store_event_add(d->store, name, "adopted", detail);
			kvz_info("adopted %s (%s pid %d)", name, guest_driver_of(g)->prog, pid);
			continue;
		}
		snprintf(detail, sizeof(detail), "supervisor pid %d gone while kvzd was down", pid);
		clear_runtime(d, g);
		store_guest_set_state(d->store, name, "crashed");
		store_event_add(d->store, name, "crashed", detail);
		kvz_warn("%s: %s", name, detail);
	}
	json_decref(list);
}

void guests_autostart(struct kvzd *d)
{
	json_t *list = store_guest_list(d->store);
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *state = cfg_str(g, "state");
		if (!json_is_true(json_object_get(g, "autostart")) || !strcmp(state, "running"))
			continue;
		struct op_error e;
		if (guest_start(d, cfg_str(g, "name"), &e))
			kvz_warn("autostart: %s", e.msg);
	}
	json_decref(list);
}

/* kvz-vmm ends when its guest reboots (a reset re-reads nothing from the
 * disk); a VM that boots from its own disk (template, import) comes back,
 * with the kernel it has now, as a real machine would. VMs booting a
 * kernel the user named keep stopping on a reboot, as before. Lock held. */
static void restart_after_reboot(struct kvzd *d, const char *name)
{
	json_t *g = store_guest_get(d->store, name);
	if (!g || guest_driver_of(g)->kind != GUEST_VM ||
	    !json_object_get(json_object_get(g, "config"), "boot")) {
		json_decref(g);
		return;
	}
	struct op_error e;
	if (guest_start_locked(d, g, NULL, &e) == 0)
		store_event_add(d->store, name, "rebooted", "the guest rebooted: started again");
	else
		kvz_warn("%s: the guest rebooted but did not start again: %s", name, e.msg);
	json_decref(g);
}

bool guest_check_alive(struct kvzd *d, const char *name)
{
	json_t *g = store_guest_get(d->store, name);
	if (!g)
		return false;
	pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	unsigned long long start = (unsigned long long)json_integer_value(json_object_get(g, "pid_start"));
	json_decref(g);
	int status = 0;
	enum sup_liveness l = sup_check(pid, start, &status);
	if (l == SUP_ALIVE)
		return true;
	guest_lock(d, name);
	/* Again under the lock: a stop may have been handling it meanwhile. */
	g = store_guest_get(d->store, name);
	if (g && guest_state_has_supervisor(cfg_str(g, "state")) &&
	    json_integer_value(json_object_get(g, "pid")) == pid) {
		char detail[200];
		const char *ev = "crashed";
		bool clean;
		if (l == SUP_EXITED && WIFSIGNALED(status))
			snprintf(detail, sizeof(detail), "supervisor pid %d killed by signal %d",
				 pid, WTERMSIG(status));
		else if (qmp_watch_shutdown(name, pid, &clean, detail, sizeof(detail)))
			ev = clean ? "stopped" : "crashed";
		else if (l == SUP_GONE)
			snprintf(detail, sizeof(detail), "supervisor pid %d vanished", pid);
		else if (WIFSIGNALED(status))
			snprintf(detail, sizeof(detail), "supervisor pid %d killed by signal %d",
				 pid, WTERMSIG(status));
		else if (WEXITSTATUS(status) == 0) {
			/* Ended before the watcher connected: kvz-vmm's last line
			 * says whether the guest reset itself. */
			char tail[400];
			guest_log_tail(d, name, tail, sizeof(tail));
			ev = "stopped";
			snprintf(detail, sizeof(detail), "guest shut down%s",
				 strstr(tail, "stopped: guest reset") ? " (guest-reset)" : "");
		} else
			snprintf(detail, sizeof(detail), "supervisor pid %d exited with status %d",
				 pid, WEXITSTATUS(status));
		clear_runtime(d, g);
		store_guest_set_state(d->store, name, ev);
		store_event_add(d->store, name, ev, detail);
		kvz_info("%s: %s", name, detail);
		if (strstr(detail, "(guest-reset)"))
			restart_after_reboot(d, name);
	}
	guest_unlock(d, name);
	json_decref(g);
	return false;
}
