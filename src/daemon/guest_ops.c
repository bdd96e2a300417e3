#include "guest_ops.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "disk_admission.h"
#include "guest_config.h"
#include "guest_locks.h"
#include "hostinfo.h"
#include "log.h"
#include "parse.h"
#include "qmp_client.h"
#include "qmp_watch.h"
#include "storage.h"
#include "store.h"
#include "supervisor.h"

#define START_TIMEOUT_MS 30000
#define QMP_TIMEOUT_MS 5000
#define MAX_ARGS 64

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

static void ct_root(const struct kvzd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ct", d->state_dir);
}

static void ct_run_dir(const struct kvzd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ct", d->run_dir);
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

/* ---- small argv builder ---- */

struct argv {
	char *v[MAX_ARGS + 1];
	int n;
};

static void arg(struct argv *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void arg(struct argv *a, const char *fmt, ...)
{
	if (a->n >= MAX_ARGS)
		return;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&a->v[a->n], fmt, ap) >= 0)
		a->n++;
	va_end(ap);
	a->v[a->n] = NULL;
}

static void argv_free(struct argv *a)
{
	for (int i = 0; i < a->n; i++)
		free(a->v[i]);
	a->n = 0;
}

/* ---- create ---- */

static int create_vm_storage(struct kvzd *d, const char *name, json_t *cfg,
			     struct op_error *e)
{
	uint64_t size = (uint64_t)json_integer_value(json_object_get(cfg, "disk_size"));
	if (!size)
		return 0;
	bool fixed = !strcmp(cfg_str(cfg, "disk_mode"), "fixed");
	char dir[300], path[320], err[400];
	snprintf(dir, sizeof(dir), "%s/images", d->state_dir);
	if (fixed && storage_free_bytes(dir) < size)
		return op_fail(e, 409, "not enough space in %s for a fixed %llu-byte disk", dir,
			    (unsigned long long)size);
	guest_image_path(d, name, path, sizeof(path));
	if (storage_create_image(path, size, fixed, err, sizeof(err)))
		return op_fail(e, 500, "%s", err);
	json_object_set_new(cfg, "disk_path", json_string(path));
	return 0;
}

/* `kvz-ct destroy`: removes the container's private area. Returns
 * sup_run()'s result, with kvz-ct's message in out. */
static int ct_destroy_run(struct kvzd *d, const char *name, char *out, size_t outlen)
{
	char root[300];
	ct_root(d, root, sizeof(root));
	struct argv a = {0};
	arg(&a, "%s", d->ct_bin);
	arg(&a, "destroy");
	arg(&a, "--name");
	arg(&a, "%s", name);
	arg(&a, "--ct-root");
	arg(&a, "%s", root);
	int r = sup_run(a.v, out, outlen);
	argv_free(&a);
	return r;
}

/* Clean-up after a failed create: a failure is only worth a warning. */
static void ct_destroy_files(struct kvzd *d, const char *name)
{
	char out[256];
	if (ct_destroy_run(d, name, out, sizeof(out)) != 0)
		kvz_warn("cleaning up container %s: %s", name, out);
}

/* The container's id range as kvz-ct recorded it (CTROOT/NAME/idmap);
 * NULL with why when there is none. */
static json_t *load_ct_idmap(struct kvzd *d, const char *name, char *why, size_t len)
{
	char path[400];
	ct_root(d, path, sizeof(path));
	snprintf(path + strlen(path), sizeof(path) - strlen(path), "/%s/idmap", name);
	json_error_t je;
	json_t *m = json_load_file(path, 0, &je);
	if (json_is_object(m))
		return m;
	json_decref(m);
	snprintf(why, len, "no id range in %s: %s", path, je.text);
	return NULL;
}

/* The id range kvz-ct create gave the container, kept with its
 * configuration so that `kvz show` tells which host ids it uses. */
static int record_ct_idmap(struct kvzd *d, const char *name, json_t *cfg, struct op_error *e)
{
	char why[600];
	json_t *m = load_ct_idmap(d, name, why, sizeof(why));
	if (!m) {
		ct_destroy_files(d, name);
		return op_fail(e, 500, "creating container %s: %s", name, why);
	}
	json_object_set_new(cfg, "idmap", m);
	return 0;
}

/* kvz-ct run gives a container a new range when its recorded one is
 * taken (a copied private area): keep the store in step after a start. */
static void refresh_ct_idmap(struct kvzd *d, const char *name, json_t *cfg)
{
	char why[600];
	json_t *m = load_ct_idmap(d, name, why, sizeof(why));
	if (!m || json_equal(m, json_object_get(cfg, "idmap"))) {
		json_decref(m);
		return;
	}
	json_t *updated = json_deep_copy(cfg);
	json_object_set_new(updated, "idmap", m);
	store_guest_set_config(d->store, name, updated);
	json_decref(updated);
}

static int create_ct_storage(struct kvzd *d, const char *name, json_t *cfg,
			     struct op_error *e)
{
	char root[300], out[512], disk[32];
	ct_root(d, root, sizeof(root));
	snprintf(disk, sizeof(disk), "%lld",
		 (long long)json_integer_value(json_object_get(cfg, "disk_size")));
	struct argv a = {0};
	arg(&a, "%s", d->ct_bin);
	arg(&a, "create");
	arg(&a, "--name");
	arg(&a, "%s", name);
	arg(&a, "--template");
	arg(&a, "%s", cfg_str(cfg, "template"));
	arg(&a, "--disk");
	arg(&a, "%s", disk);
	arg(&a, "--ct-root");
	arg(&a, "%s", root);
	int rc = sup_run(a.v, out, sizeof(out));
	argv_free(&a);
	if (rc == 0)
		return record_ct_idmap(d, name, cfg, e);
	/* kvz-ct create promises to clean up after itself; make sure. */
	ct_destroy_files(d, name);
	return op_fail(e, 500, "creating container %s: %s", name, out[0] ? out : "kvz-ct create failed");
}

int guest_create(struct kvzd *d, json_t *req, struct op_error *e)
{
	if (!json_is_object(req))
		return op_fail(e, 400, "the body must be a JSON object");
	const char *name = cfg_str(req, "name");
	const char *type = cfg_str(req, "type");
	if (!name || !kvz_valid_name(name))
		return op_fail(e, 400, "bad or missing name (letters, digits, '_', '.', '-'; up to 63)");
	if (!type || (strcmp(type, "vm") && strcmp(type, "ct")))
		return op_fail(e, 400, "type must be \"vm\" or \"ct\"");
	json_t *av = json_object_get(req, "autostart");
	if (av && !json_is_boolean(av))
		return op_fail(e, 400, "autostart must be true or false");
	json_t *cfg = json_object();
	bool vm = !strcmp(type, "vm");
	if (vm ? guest_config_vm(d->images, req, cfg, e) : guest_config_ct(req, cfg, e)) {
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
	uint64_t disk = (uint64_t)json_integer_value(json_object_get(cfg, "disk_size"));
	int bad = disk_admit(d, name, vm, disk, e);
	if (!bad && store_guest_insert(d->store, name, type, cfg, json_is_true(av), err, sizeof(err)))
		bad = op_fail(e, strstr(err, "already exists") ? 409 : 500, "%s", err);
	pthread_mutex_unlock(&d->disk_lock);
	if (bad)
		goto out;
	if (vm ? create_vm_storage(d, name, cfg, e) : create_ct_storage(d, name, cfg, e)) {
		store_guest_delete(d->store, name);
		goto out;
	}
	store_guest_set_config(d->store, name, cfg);
	store_guest_set_state(d->store, name, "stopped");
	store_event_add(d->store, name, "created", type);
	rc = 0;
out:
	guest_unlock(d, name);
	json_decref(cfg);
	return rc;
}

/* ---- start ---- */

static void vm_argv(struct kvzd *d, const char *name, json_t *cfg, const char *qmp,
		    const char *console, struct argv *a)
{
	arg(a, "%s", d->vmm_bin);
	arg(a, "--name");
	arg(a, "%s", name);
	arg(a, "--kernel");
	arg(a, "%s", cfg_str(cfg, "kernel"));
	if (cfg_str(cfg, "initrd")) {
		arg(a, "--initrd");
		arg(a, "%s", cfg_str(cfg, "initrd"));
	}
	if (cfg_str(cfg, "cmdline")) {
		arg(a, "--cmdline");
		arg(a, "%s", cfg_str(cfg, "cmdline"));
	}
	arg(a, "--memory");
	arg(a, "%lld", (long long)json_integer_value(json_object_get(cfg, "memory")));
	arg(a, "--cpus");
	arg(a, "%lld", (long long)json_integer_value(json_object_get(cfg, "cpus")));
	arg(a, "--qmp");
	arg(a, "%s", qmp);
	arg(a, "--console-socket");
	arg(a, "%s", console);
	if (cfg_str(cfg, "disk_path")) {
		arg(a, "--disk");
		arg(a, "%s", cfg_str(cfg, "disk_path"));
	}
	if (cfg_str(cfg, "bridge")) {
		/* Tap names are at most 15 bytes. */
		char tap[16];
		snprintf(tap, sizeof(tap), "kvz%.12s", name);
		arg(a, "--net");
		if (cfg_str(cfg, "mac"))
			arg(a, "tap=%s,bridge=%s,mac=%s", tap, cfg_str(cfg, "bridge"),
			    cfg_str(cfg, "mac"));
		else
			arg(a, "tap=%s,bridge=%s", tap, cfg_str(cfg, "bridge"));
	}
	if (json_is_true(json_object_get(cfg, "balloon")))
		arg(a, "--balloon");
}

static void ct_argv(struct kvzd *d, const char *name, json_t *cfg, const char *qmp,
		    const char *console, struct argv *a)
{
	char root[300], run[300];
	ct_root(d, root, sizeof(root));
	ct_run_dir(d, run, sizeof(run));
	arg(a, "%s", d->ct_bin);
	arg(a, "run");
	arg(a, "--name");
	arg(a, "%s", name);
	arg(a, "--ct-root");
	arg(a, "%s", root);
	arg(a, "--run-dir");
	arg(a, "%s", run);
	arg(a, "--hostname");
	arg(a, "%s", name);
	arg(a, "--qmp");
	arg(a, "%s", qmp);
	arg(a, "--console-socket");
	arg(a, "%s", console);
	if (json_is_true(json_object_get(cfg, "privileged")))
		arg(a, "--privileged");
	long long hard = json_integer_value(json_object_get(cfg, "memory_hard"));
	if (hard) {
		arg(a, "--memory");
		arg(a, "%lld:%lld", (long long)json_integer_value(json_object_get(cfg, "memory_soft")),
		    hard);
	}
	double cpus = json_number_value(json_object_get(cfg, "cpus"));
	if (cpus > 0) {
		arg(a, "--cpus");
		arg(a, "%g", cpus);
	}
	long long pids = json_integer_value(json_object_get(cfg, "pids"));
	if (pids) {
		arg(a, "--pids");
		arg(a, "%lld", pids);
	}
	if (cfg_str(cfg, "ip")) {
		arg(a, "--net");
		if (cfg_str(cfg, "gw"))
			arg(a, "bridge=%s,ip=%s,gw=%s", cfg_str(cfg, "bridge"), cfg_str(cfg, "ip"),
			    cfg_str(cfg, "gw"));
		else
			arg(a, "bridge=%s,ip=%s", cfg_str(cfg, "bridge"), cfg_str(cfg, "ip"));
	}
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(cfg, "devices"), i, s)
		arg(a, "--device=%s", json_string_value(s));
	if (cfg_str(cfg, "seccomp"))
		arg(a, "--seccomp=%s", cfg_str(cfg, "seccomp"));
	if (json_is_true(json_object_get(cfg, "no_new_privs")))
		arg(a, "--no-new-privs");
	arg(a, "--");
	json_array_foreach(json_object_get(cfg, "command"), i, s)
		arg(a, "%s", json_string_value(s));
}

/* The last non-empty line of a guest's log: what the supervisor said when it
 * gave up. */
static void log_tail(struct kvzd *d, const char *name, char *out, size_t len)
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
			log_tail(d, name, tail, sizeof(tail));
			return op_fail(e, 500, "%s failed to start: %s", name,
				    tail[0] ? tail : "supervisor exited");
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

/* Again at each start: the operator may have narrowed --images-dir since
 * the VM was created, or the file may have been replaced by a symlink. */
static int vm_images_allowed(struct kvzd *d, json_t *cfg, struct op_error *e)
{
	char path[PATH_MAX];
	for (const char *const *k = (const char *const[]){"kernel", "initrd", NULL}; *k; k++) {
		const char *p = cfg_str(cfg, *k);
		if (p && cfg_image_path(d->images, *k, p, path, sizeof(path), e)) {
			e->status = 409;
			return -1;
		}
	}
	return 0;
}

static int start_locked(struct kvzd *d, json_t *g, struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	const char *type = cfg_str(g, "type");
	const char *state = cfg_str(g, "state");
	json_t *cfg = json_object_get(g, "config");
	bool vm = !strcmp(type, "vm");
	if (!strcmp(state, "running"))
		return op_fail(e, 409, "guest %s is already running", name);
	if (vm && vm_images_allowed(d, cfg, e))
		return -1;
	if (vm) {
		struct host_mem m;
		uint64_t need = (uint64_t)json_integer_value(json_object_get(cfg, "memory"));
		if (host_meminfo(&m) == 0 && need > m.available) {
			char a[32], b[32];
			return op_fail(e, 409, "not enough host memory: %s needs %s, %s available",
				    name, kvz_format_size(need, a, sizeof(a)),
				    kvz_format_size(m.available, b, sizeof(b)));
		}
	}
	char qmp[108], console[108], logp[400], err[300];
	if (socket_paths(d, type, name, qmp, console, e))
		return -1;
	unlink(console);
	if (vm)
		unlink(qmp);
	guest_log_path(d, name, logp, sizeof(logp));
	struct argv a = {0};
	if (vm)
		vm_argv(d, name, cfg, qmp, console, &a);
	else
		ct_argv(d, name, cfg, qmp, console, &a);
	pid_t pid = sup_spawn(a.v, logp, err, sizeof(err));
	argv_free(&a);
	if (pid < 0)
		return op_fail(e, 500, "%s", err);
	unsigned long long start = sup_proc_start(pid);
	store_guest_set_runtime(d->store, name, pid, start, qmp, console);
	store_guest_set_state(d->store, name, "starting");
	if (wait_ready(d, name, pid, qmp, e)) {
		kill_and_wait(pid, start);
		store_guest_set_runtime(d->store, name, 0, 0, "", "");
		store_guest_set_state(d->store, name, "stopped");
		store_event_add(d->store, name, "start-failed", e->msg);
		return -1;
	}
	/* The start time again: the child had maybe not exec'd yet above. */
	store_guest_set_runtime(d->store, name, pid, sup_proc_start(pid), qmp, console);
	if (!vm)
		refresh_ct_idmap(d, name, cfg);
	store_guest_set_state(d->store, name, "running");
	store_event_add(d->store, name, "started", NULL);
	return 0;
}

json_t *guest_get_or_404(struct kvzd *d, const char *name, struct op_error *e)
{
	json_t *g = store_guest_get(d->store, name);
	if (!g)
		op_fail(e, 404, "no guest named %s", name);
	return g;
}

int guest_start(struct kvzd *d, const char *name, struct op_error *e)
{
	guest_lock(d, name);
	json_t *g = guest_get_or_404(d, name, e);
	int rc = g ? start_locked(d, g, e) : -1;
	guest_unlock(d, name);
	json_decref(g);
	return rc;
}

/* ---- QMP ---- */

/* One command on a guest's QMP socket. QMP errors map to 409 (the request
 * does not fit the guest's state), transport errors to 502. */
int guest_qmp_call(const char *name, const char *path, const char *cmd, json_t *args,
		    json_t **ret, struct op_error *e)
{
	char err[300], cls[64] = "";
	struct qmp_client *c = qmp_client_connect(path, QMP_TIMEOUT_MS, err, sizeof(err));
	if (!c)
		return op_fail(e, 502, "cannot reach the supervisor of %s: %s", name, err);
	int rc = qmp_client_execute(c, cmd, args, ret, cls, sizeof(cls), err, sizeof(err));
	qmp_client_close(c);
	if (rc > 0)
		return op_fail(e, 409, "%s: %s", name, err);
	if (rc < 0)
		return op_fail(e, 502, "%s: %s: %s", name, cmd, err);
	return 0;
}

/* ---- stop ---- */

static bool wait_gone(pid_t pid, unsigned long long start, int timeout_ms, int *status)
{
	for (int waited = 0; waited <= timeout_ms; waited += 50) {
		if (sup_check(pid, start, status) != SUP_ALIVE)
			return true;
		sleep_ms(50);
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

static int stop_locked(struct kvzd *d, json_t *g, int timeout_s, bool force,
		       struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	const char *state = cfg_str(g, "state");
	if (strcmp(state, "running") && strcmp(state, "starting") && strcmp(state, "stopping"))
		return op_fail(e, 409, "guest %s is not running (%s)", name, state);
	pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
	unsigned long long start = (unsigned long long)json_integer_value(json_object_get(g, "pid_start"));
	const char *qmp = cfg_str(g, "qmp");
	bool vm = !strcmp(cfg_str(g, "type"), "vm");
	store_guest_set_state(d->store, name, "stopping");
	struct op_error ignored;
	const char *how = force ? "forced" : NULL;
	if (!force && !vm) {
		json_t *args = json_pack("{s:i}", "timeout", timeout_s);
		if (guest_qmp_call(name, qmp, "stop", args, NULL, &ignored) == 0)
			wait_gone(pid, start, (timeout_s + 5) * 1000, NULL);
		json_decref(args);
	}
	if (!force && vm) {
		/* As virsh shutdown: the ACPI power button, then the guest's own
		 * shutdown; a guest that ignores it is quit after the timeout. */
		if (guest_qmp_call(name, qmp, "system_powerdown", NULL, NULL, &ignored) == 0 &&
		    !wait_gone(pid, start, timeout_s * 1000, NULL))
			how = "the guest ignored the power button: quit";
	}
	if (sup_check(pid, start, NULL) == SUP_ALIVE) {
		/* quit is the clean way for the VMM to close its devices. */
		if (guest_qmp_call(name, qmp, "quit", NULL, NULL, &ignored) == 0)
			wait_gone(pid, start, 5000, NULL);
	}
	if (sup_check(pid, start, NULL) == SUP_ALIVE) {
		kvz_warn("%s: supervisor %d did not exit; killing it", name, pid);
		kill(pid, SIGTERM);
		if (!wait_gone(pid, start, 3000, NULL))
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
	int rc = g ? stop_locked(d, g, timeout_s, force, e) : -1;
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
		if (stop_locked(d, g, 5, true, e))
			goto out;
	}
	if (!strcmp(cfg_str(g, "type"), "vm")) {
		const char *disk = cfg_str(json_object_get(g, "config"), "disk_path");
		if (disk && unlink(disk) < 0 && errno != ENOENT) {
			op_fail(e, 500, "cannot remove %s: %s", disk, strerror(errno));
			goto out;
		}
	} else {
		char out[512];
		if (ct_destroy_run(d, name, out, sizeof(out)) != 0) {
			op_fail(e, 500, "destroying container %s: %s", name, out);
			goto out;
		}
	}
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

static const char *prog_of(json_t *g)
{
	return !strcmp(cfg_str(g, "type"), "vm") ? "kvz-vmm" : "kvz-ct";
}

/* A create that a previous kvzd did not finish (it died half-way): remove
 * whatever storage it made and the record, as a failed create would. */
static void undo_create(struct kvzd *d, json_t *g)
{
	const char *name = cfg_str(g, "name");
	if (!strcmp(cfg_str(g, "type"), "vm")) {
		char path[320];
		guest_image_path(d, name, path, sizeof(path));
		if (unlink(path) < 0 && errno != ENOENT)
			kvz_warn("%s: cannot remove %s: %s", name, path, strerror(errno));
	} else {
		ct_destroy_files(d, name);
	}
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
		if (!strcmp(state, "stopped") || !strcmp(state, "crashed"))
			continue;
		if (!strcmp(state, "creating")) {
			undo_create(d, g);
			continue;
		}
		pid_t pid = (pid_t)json_integer_value(json_object_get(g, "pid"));
		unsigned long long start = (unsigned long long)json_integer_value(json_object_get(g, "pid_start"));
		char detail[200];
		if (sup_is_supervisor(pid, start, prog_of(g), name)) {
			snprintf(detail, sizeof(detail), "supervisor pid %d", pid);
			store_guest_set_state(d->store, name, "running");
			store_event_add(d->store, name, "adopted", detail);
			kvz_info("adopted %s (%s pid %d)", name, prog_of(g), pid);
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
	if (g && !strcmp(cfg_str(g, "state"), "running") &&
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
			ev = "stopped";
			snprintf(detail, sizeof(detail), "guest shut down");
		} else
			snprintf(detail, sizeof(detail), "supervisor pid %d exited with status %d",
				 pid, WEXITSTATUS(status));
		clear_runtime(d, g);
		store_guest_set_state(d->store, name, ev);
		store_event_add(d->store, name, ev, detail);
		kvz_info("%s: %s", name, detail);
	}
	guest_unlock(d, name);
	json_decref(g);
	return false;
}
