#include "backups.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "argv_build.h"
#include "file_copy.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "guest_locks.h"
#include "guest_ops.h"
#include "log.h"
#include "parse.h"
#include "policy_retention.h"
#include "store.h"
#include "supervisor.h"

#define SUFFIX ".tar.zst"

/* ---- paths ---- */

static void guest_dir(const struct kvzd *d, const char *guest, char *buf, size_t len)
{
	snprintf(buf, len, "%s/backups/%s", d->state_dir, guest);
}

static void backup_file(const struct kvzd *d, const char *guest, const char *b, char *buf,
			size_t len)
{
	snprintf(buf, len, "%s/backups/%s/%s" SUFFIX, d->state_dir, guest, b);
}

static void partial_file(const struct kvzd *d, const char *guest, const char *b, char *buf,
			 size_t len)
{
	snprintf(buf, len, "%s/backups/%s/.%s.partial", d->state_dir, guest, b);
}

/* The ct-root a restore unpacks into before the swap: guest names start
 * with a letter or digit, so it is no guest's directory. */
static void staging_root(const struct kvzd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/backups/.staging", d->state_dir);
}

static void private_img(const struct kvzd *d, const char *root, const char *guest,
			const char *suffix, char *buf, size_t len)
{
	if (root)
		snprintf(buf, len, "%s/%s/private.img%s", root, guest, suffix);
	else
		snprintf(buf, len, "%s/ct/%s/private.img%s", d->state_dir, guest, suffix);
}

static int mkdir_0700(const char *path, struct op_error *e)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return op_fail(e, 500, "cannot create %s: %s", path, strerror(errno));
	return 0;
}

static int make_dirs(const struct kvzd *d, const char *guest, struct op_error *e)
{
	char top[300], gdir[400];
	snprintf(top, sizeof(top), "%s/backups", d->state_dir);
	guest_dir(d, guest, gdir, sizeof(gdir));
	return mkdir_0700(top, e) || mkdir_0700(gdir, e) ? -1 : 0;
}

/* ---- checks shared by the API and the jobs ---- */

/* The guest's record when it is a container; NULL with e otherwise. */
static json_t *backup_guest(struct kvzd *d, const char *guest, struct op_error *e)
{
	if (!kvz_valid_name(guest)) {
		op_fail(e, 400, "bad guest name \"%s\"", guest);
		return NULL;
	}
	json_t *g = guest_get_or_404(d, guest, e);
	if (g && guest_driver_of(g)->kind != GUEST_CT) {
		op_fail(e, 409, "%s is a VM: backups are of containers (VMs have snapshots)",
			guest);
		json_decref(g);
		return NULL;
	}
	return g;
}

static int check_backup_name(const char *b, struct op_error *e)
{
	if (!b || !kvz_valid_name(b) || strlen(b) > 40)
		return op_fail(e, 400, "bad backup name (letters, digits, '_', '.', '-'; up to 40)");
	return 0;
}

static bool backup_exists(struct kvzd *d, const char *guest, const char *b)
{
	char path[600];
	backup_file(d, guest, b, path, sizeof(path));
	return access(path, F_OK) == 0;
}

static json_t *submit(struct kvzd *d, const struct job_kind *k, const char *guest,
		      const char *b, bool must_exist, json_t *params, struct op_error *e)
{
	if (check_backup_name(b, e))
		return NULL;
	json_t *g = backup_guest(d, guest, e);
	if (!g)
		return NULL;
	json_decref(g);
	bool exists = backup_exists(d, guest, b);
	if (must_exist && !exists) {
		op_fail(e, 404, "%s has no backup named %s", guest, b);
		return NULL;
	}
	if (!must_exist && exists) {
		op_fail(e, 409, "%s already has a backup named %s", guest, b);
		return NULL;
	}
	json_object_set_new(params, "backup", json_string(b));
	return job_submit(d, k, guest, params, e);
}

/* ---- kvz-ct as a job's child ---- */

struct watch {
	struct job *j;
	const char *phase;
	const char *file;  /* whose size is the progress */
	uint64_t total;
};

static bool watch_tick(void *arg)
{
	struct watch *w = arg;
	struct stat st;
	uint64_t done = stat(w->file, &st) == 0 ? (uint64_t)st.st_size : 0;
	job_progress(w->j, w->phase, done, w->total);
	return !job_cancelled(w->j);
}

/* Runs kvz-ct VERB for guest under root with "--FLAG PATH", following
 * watch; a cancelled job stops it. */
static int run_ct(struct kvzd *d, const char *verb, const char *guest, const char *root,
		  const char *flag, const char *path, struct watch *w, struct op_error *e)
{
	struct argv a = {0};
	char run[300], out[512];
	ct_helper_argv(d, verb, guest, root, &a);
	snprintf(run, sizeof(run), "%s/ct", d->run_dir);
	arg(&a, "--run-dir");
	arg(&a, "%s", run);
	arg(&a, "%s", flag);
	arg(&a, "%s", path);
	int rc = sup_run_watched(a.v, NULL, watch_tick, w, out, sizeof(out));
	argv_free(&a);
	if (job_cancelled(w->j))
		return op_fail(e, 409, "cancelled");
	if (rc != 0)
		return op_fail(e, 500, "kvz-ct %s of %s: %s", verb, guest,
			       out[0] ? out : "failed");
	return 0;
}

/* ---- create ---- */


/* A policy's retention, once the new backup is in place (lock held). */
static void apply_retention(struct kvzd *d, const char *guest, json_t *params)
{
	struct op_error e;
	json_t *list = backup_list(d, guest, &e);
	json_t *drop = policy_retention_drop(
		list, (int)json_integer_value(json_object_get(params, "keep_last")),
		(int)json_integer_value(json_object_get(params, "keep_daily")), kvzd_now_ms());
	size_t i;
	json_t *name;
	char path[600];
	json_array_foreach(drop, i, name) {
		backup_file(d, guest, json_string_value(name), path, sizeof(path));
		if (unlink(path) < 0)
			kvz_warn("%s: retention: %s: %s", guest, path, strerror(errno));
		else
			store_event_add(d->store, guest, "backup-deleted", json_string_value(name));
	}
	json_decref(drop);
	json_decref(list);
}

static int create_run(struct kvzd *d, struct job *j, const char *guest, json_t *params,
		      struct op_error *e)
{
	const char *b = json_string_value(json_object_get(params, "backup"));
	json_t *g = backup_guest(d, guest, e);
	if (!g)
		return -1;
	json_decref(g);
	if (backup_exists(d, guest, b))
		return op_fail(e, 409, "%s already has a backup named %s", guest, b);
	char tmp[600], final[600], img[600];
	if (make_dirs(d, guest, e))
		return -1;
	partial_file(d, guest, b, tmp, sizeof(tmp));
	backup_file(d, guest, b, final, sizeof(final));
	private_img(d, NULL, guest, "", img, sizeof(img));
	unlink(tmp); /* a leftover of an interrupted kvzd */
	/* The archive's own writes are 0600 (no umask can widen that). */
	mode_t old = umask(077);
	struct watch w = {.j = j, .phase = "writing", .file = tmp, .total = tree_allocated(img)};
	int rc = run_ct(d, "backup", guest, NULL, "--output", tmp, &w, e);
	umask(old);
	if (rc == 0 && chmod(tmp, 0600) < 0)
		rc = op_fail(e, 500, "chmod %s: %s", tmp, strerror(errno));
	if (rc == 0 && rename(tmp, final) < 0)
		rc = op_fail(e, 500, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
	if (rc) {
		unlink(tmp);
		return -1;
	}
	struct stat st;
	char a[32], detail[160];
	stat(final, &st);
	/* The archive is compressed: at the end, done is all there was. */
	job_progress(j, "writing", (uint64_t)st.st_size, (uint64_t)st.st_size);
	snprintf(detail, sizeof(detail), "%s (%s)", b,
		 kvz_format_size((uint64_t)st.st_size, a, sizeof(a)));
	store_event_add(d->store, guest, "backup-created", detail);
	if (json_object_get(params, "keep_last"))
		apply_retention(d, guest, params);
	return 0;
}

static void create_recover(struct kvzd *d, json_t *job)
{
	const char *guest = json_string_value(json_object_get(job, "guest"));
	const char *b = json_string_value(json_object_get(json_object_get(job, "params"),
							  "backup"));
	char tmp[600];
	if (guest && b && kvz_valid_name(guest) && kvz_valid_name(b)) {
		partial_file(d, guest, b, tmp, sizeof(tmp));
		unlink(tmp);
	}
}

const struct job_kind backup_create_job = {
	.type = "backup-create",
	.run = create_run,
	.recover = create_recover,
};

json_t *backup_create(struct kvzd *d, const char *guest, const char *b, struct op_error *e)
{
	char name[64];
	if (!b) {
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(name, sizeof(name), "backup-%Y%m%d-%H%M%S", &tm);
		b = name;
	}
	json_t *params = json_object();
	json_t *job = submit(d, &backup_create_job, guest, b, false, params, e);
	json_decref(params);
	return job;
}

json_t *backup_create_kept(struct kvzd *d, const char *guest, int keep_last, int keep_daily,
			   struct op_error *e)
{
	json_t *params = json_pack("{s:i, s:i}", "keep_last", keep_last, "keep_daily", keep_daily);
	char name[64];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(name, sizeof(name), "backup-%Y%m%d-%H%M%S", &tm);
	json_t *job = submit(d, &backup_create_job, guest, name, false, params, e);
	json_decref(params);
	return job;
}

/* ---- restore ---- */

/* Removes what a restore left in the staging root (its id range too). */
static void clear_staging(struct kvzd *d, const char *guest)
{
	char root[300], out[256];
	struct argv a = {0};
	staging_root(d, root, sizeof(root));
	ct_helper_argv(d, "destroy", guest, root, &a);
	if (sup_run(a.v, out, sizeof(out)) != 0)
		kvz_warn("%s: clearing %s: %s", guest, root, out);
	argv_free(&a);
}

/* The backup unpacked into a private area of its own, beside the
 * container's, while the container runs on. */
static int stage(struct kvzd *d, struct job *j, const char *guest, const char *b,
		 struct op_error *e)
{
	char root[300], file[600], img[600];
	staging_root(d, root, sizeof(root));
	backup_file(d, guest, b, file, sizeof(file));
	private_img(d, root, guest, "", img, sizeof(img));
	if (mkdir_0700(root, e))
		return -1;
	clear_staging(d, guest);
	struct watch w = {.j = j, .phase = "unpacking", .file = img, .total = 0};
	if (run_ct(d, "restore", guest, root, "--input", file, &w, e)) {
		clear_staging(d, guest);
		return -1;
	}
	return 0;
}

/* The staged private area takes the container's place; the container's
 * own waits as private.img.prev. */
static int swap_in(struct kvzd *d, const char *guest, struct op_error *e)
{
	char root[300], staged[600], img[600], prev[600];
	staging_root(d, root, sizeof(root));
	private_img(d, root, guest, "", staged, sizeof(staged));
	private_img(d, NULL, guest, "", img, sizeof(img));
	private_img(d, NULL, guest, ".prev", prev, sizeof(prev));
	unlink(prev);
	if (rename(img, prev) < 0)
		return op_fail(e, 500, "cannot move %s aside: %s", img, strerror(errno));
	if (rename(staged, img) < 0) {
		int err = errno;
		rename(prev, img);
		return op_fail(e, 500, "cannot put %s in place: %s", img, strerror(err));
	}
	return 0;
}

/* After the restored container started (ok) the old area goes; otherwise
 * it comes back. */
static void settle_prev(struct kvzd *d, const char *guest, bool ok)
{
	char img[600], prev[600];
	private_img(d, NULL, guest, "", img, sizeof(img));
	private_img(d, NULL, guest, ".prev", prev, sizeof(prev));
	if ((ok ? unlink(prev) : rename(prev, img)) < 0 && errno != ENOENT)
		kvz_warn("%s: %s: %s", guest, prev, strerror(errno));
}

static int restore_run(struct kvzd *d, struct job *j, const char *guest, json_t *params,
		       struct op_error *e)
{
	const char *b = json_string_value(json_object_get(params, "backup"));
	json_t *g = backup_guest(d, guest, e);
	if (!g)
		return -1;
	const char *state = cfg_str(g, "state");
	bool was_running = !strcmp(state, "running") || !strcmp(state, "starting");
	int rc = -1;
	if (!backup_exists(d, guest, b)) {
		op_fail(e, 404, "%s has no backup named %s", guest, b);
		goto out;
	}
	if (!was_running && strcmp(state, "stopped") && strcmp(state, "crashed")) {
		op_fail(e, 409, "guest %s is %s; try again", guest, state);
		goto out;
	}
	if (stage(d, j, guest, b, e))
		goto out;
	if (job_cancelled(j)) {
		clear_staging(d, guest);
		op_fail(e, 409, "cancelled");
		goto out;
	}
	/* From here on the container's current contents give way. */
	job_progress(j, "stopping", 0, 0);
	if (was_running && guest_stop_locked(d, g, 10, true, e)) {
		clear_staging(d, guest);
		goto out;
	}
	rc = swap_in(d, guest, e);
	clear_staging(d, guest);
	if (rc == 0 && was_running) {
		job_progress(j, "starting", 0, 0);
		rc = guest_start_stored(d, guest, NULL, e);
	}
	if (rc && was_running) {
		/* The old area back, and the container running as it was. */
		settle_prev(d, guest, false);
		struct op_error e2;
		if (guest_start_stored(d, guest, NULL, &e2))
			kvz_warn("%s: starting it again after a failed restore: %s", guest,
				 e2.msg);
		goto out;
	}
	settle_prev(d, guest, rc == 0);
	if (rc == 0)
		store_event_add(d->store, guest, "backup-restored", b);
out:
	json_decref(g);
	return rc;
}

/* A restore interrupted by kvzd's death: the staging area goes, and
 * private.img.prev is stale when the restored container runs, else it is
 * put back. */
static void restore_recover(struct kvzd *d, json_t *job)
{
	const char *guest = json_string_value(json_object_get(job, "guest"));
	if (!guest || !kvz_valid_name(guest))
		return;
	clear_staging(d, guest);
	json_t *g = store_guest_get(d->store, guest);
	char prev[600];
	private_img(d, NULL, guest, ".prev", prev, sizeof(prev));
	if (g && access(prev, F_OK) == 0)
		settle_prev(d, guest, !strcmp(cfg_str(g, "state"), "running"));
	json_decref(g);
}

const struct job_kind backup_restore_job = {
	.type = "backup-restore",
	.run = restore_run,
	.recover = restore_recover,
};

json_t *backup_restore(struct kvzd *d, const char *guest, const char *b, struct op_error *e)
{
	json_t *params = json_object();
	json_t *job = submit(d, &backup_restore_job, guest, b, true, params, e);
	json_decref(params);
	return job;
}

/* ---- list and delete ---- */

static int by_created(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "created_ms"));
	json_int_t cy = json_integer_value(json_object_get(y, "created_ms"));
	if (cx != cy)
		return cx < cy ? -1 : 1;
	return strcmp(json_string_value(json_object_get(x, "name")),
		      json_string_value(json_object_get(y, "name")));
}

/* One entry of the list from a directory entry; NULL when it is not a
 * backup (a partial one, anything else). */
static json_t *entry_of(const char *dir, const char *file)
{
	size_t n = strlen(file), s = strlen(SUFFIX);
	if (file[0] == '.' || n <= s || strcmp(file + n - s, SUFFIX))
		return NULL;
	char path[700], name[64];
	struct stat st;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (n - s >= sizeof(name) || stat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return NULL;
	memcpy(name, file, n - s);
	name[n - s] = 0;
	int64_t ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	return json_pack("{s:s,s:I,s:I}", "name", name, "created_ms", (json_int_t)ms, "size",
			 (json_int_t)st.st_size);
}

json_t *backup_list(struct kvzd *d, const char *guest, struct op_error *e)
{
	json_t *g = backup_guest(d, guest, e);
	if (!g)
		return NULL;
	json_decref(g);
	char dir[400];
	guest_dir(d, guest, dir, sizeof(dir));
	json_t *list = json_array();
	DIR *dp = opendir(dir);
	struct dirent *de;
	while (dp && (de = readdir(dp)))
		json_array_append_new(list, entry_of(dir, de->d_name));
	if (dp)
		closedir(dp);
	size_t n = json_array_size(list);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	for (size_t i = 0; v && i < n; i++)
		v[i] = json_incref(json_array_get(list, i));
	if (v)
		qsort(v, n, sizeof(*v), by_created);
	json_array_clear(list);
	for (size_t i = 0; v && i < n; i++)
		json_array_append_new(list, v[i]);
	free(v);
	return list;
}

int backup_delete(struct kvzd *d, const char *guest, const char *b, struct op_error *e)
{
	if (check_backup_name(b, e))
		return -1;
	json_t *g = backup_guest(d, guest, e);
	if (!g)
		return -1;
	json_decref(g);
	char path[600];
	backup_file(d, guest, b, path, sizeof(path));
	guest_lock(d, guest);
	int rc = 0;
	if (unlink(path) < 0)
		rc = errno == ENOENT ? op_fail(e, 404, "%s has no backup named %s", guest, b)
				     : op_fail(e, 500, "cannot remove %s: %s", path, strerror(errno));
	guest_unlock(d, guest);
	if (rc == 0)
		store_event_add(d->store, guest, "backup-deleted", b);
	return rc;
}

int backups_remove_all(struct kvzd *d, const char *guest, struct op_error *e)
{
	char dir[400];
	guest_dir(d, guest, dir, sizeof(dir));
	if (remove_tree(dir) && errno != ENOENT)
		return op_fail(e, 500, "cannot remove %s: %s", dir, strerror(errno));
	return 0;
}
