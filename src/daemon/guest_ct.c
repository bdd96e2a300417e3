/* The container driver: `kvz-ct run` supervisors, private areas made and
 * removed by `kvz-ct create`/`destroy` under ct/. */
#include <stdio.h>
#include <string.h>

#include "argv_build.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "log.h"
#include "store.h"
#include "supervisor.h"

static void ct_root(const struct kvzd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ct", d->state_dir);
}

static void ct_run_dir(const struct kvzd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ct", d->run_dir);
}

static int ct_config(struct kvzd *d, json_t *req, json_t *cfg, struct op_error *e)
{
	(void)d;
	return guest_config_ct(req, cfg, e);
}

void ct_helper_argv(struct kvzd *d, const char *verb, const char *name, const char *root,
		    struct argv *a)
{
	char own[300];
	ct_root(d, own, sizeof(own));
	arg(a, "%s", d->ct_bin);
	arg(a, "%s", verb);
	arg(a, "--name");
	arg(a, "%s", name);
	arg(a, "--ct-root");
	arg(a, "%s", root ? root : own);
}

/* `kvz-ct destroy`: removes the container's private area. Returns
 * sup_run()'s result, with kvz-ct's message in out. */
static int ct_destroy_run(struct kvzd *d, const char *name, char *out, size_t outlen)
{
	struct argv a = {0};
	ct_helper_argv(d, "destroy", name, NULL, &a);
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
static void ct_after_start(struct kvzd *d, const char *name, json_t *cfg)
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

static int ct_create_storage(struct kvzd *d, const char *name, json_t *cfg,
			     struct op_error *e)
{
	char out[512];
	struct argv a = {0};
	ct_helper_argv(d, "create", name, NULL, &a);
	arg(&a, "--template");
	arg(&a, "%s", cfg_str(cfg, "template"));
	arg(&a, "--disk");
	arg(&a, "%lld", (long long)json_integer_value(json_object_get(cfg, "disk_size")));
	int rc = sup_run(a.v, out, sizeof(out));
	argv_free(&a);
	if (rc == 0)
		return record_ct_idmap(d, name, cfg, e);
	/* kvz-ct create promises to clean up after itself; make sure. */
	ct_destroy_files(d, name);
	return op_fail(e, 500, "creating container %s: %s", name, out[0] ? out : "kvz-ct create failed");
}

static int ct_remove_storage(struct kvzd *d, const char *name, json_t *cfg, struct op_error *e)
{
	(void)cfg;
	char out[512];
	if (ct_destroy_run(d, name, out, sizeof(out)) != 0)
		return op_fail(e, 500, "destroying container %s: %s", name, out);
	return 0;
}

/* Migrated out: the target has its own copy of the private area. */
static void ct_migrate_forget(struct kvzd *d, json_t *g)
{
	ct_destroy_files(d, cfg_str(g, "name"));
}

static void ct_argv(struct kvzd *d, const char *name, json_t *cfg, const char *qmp,
		    const char *console, const char *const *extra, struct argv *a)
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
	for (; extra && *extra; extra++)
		arg(a, "%s", *extra);
	arg(a, "--");
	json_array_foreach(json_object_get(cfg, "command"), i, s)
		arg(a, "%s", json_string_value(s));
}

/* kvz-ct's own stop: SIGTERM to the container's init, SIGKILL after the
 * timeout. */
static void ct_request_stop(const char *name, const char *qmp, pid_t pid,
			    unsigned long long start, int timeout_s, const char **how)
{
	(void)how;
	struct op_error ignored;
	json_t *args = json_pack("{s:i}", "timeout", timeout_s);
	if (guest_qmp_call(name, qmp, "stop", args, NULL, &ignored) == 0)
		guest_wait_gone(pid, start, (timeout_s + 5) * 1000, NULL);
	json_decref(args);
}

static void ct_disk_file(const struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ct/%s/private.img", d->state_dir, name);
}

/* The command line that reaches the container with kvz-ct exec. */
static void ct_view(struct kvzd *d, json_t *g, json_t *v)
{
	char run[300];
	ct_run_dir(d, run, sizeof(run));
	json_object_set_new(v, "exec", json_pack("[s,s,s,s,s,s]", d->ct_bin, "exec", "--name",
						 cfg_str(g, "name"), "--run-dir", run));
}

const struct guest_driver guest_ct_driver = {
	.kind = GUEST_CT,
	.type = "ct",
	.prog = "kvz-ct",
	.disk_dir = "ct",
	.reserves_memory = false,
	.no_snapshots = "containers have no snapshots yet (their checkpoint comes with CRIU)",
	.migrate_resume = ct_migrate_resume,
	.migrate_send = ct_migrate_send,
	.migrate_listen = ct_migrate_listen,
	.migrate_receive = ct_migrate_receive,
	.migrate_discard = ct_migrate_discard,
	.migrate_forget = ct_migrate_forget,
	.config = ct_config,
	.create_storage = ct_create_storage,
	.remove_storage = ct_remove_storage,
	.argv = ct_argv,
	.after_start = ct_after_start,
	.request_stop = ct_request_stop,
	.set = guest_resize_ct,
	.sample = monitor_sample_ct,
	.disk_file = ct_disk_file,
	.view = ct_view,
};
