#include "snapshots.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file_copy.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "guest_locks.h"
#include "guest_ops.h"
#include "log.h"
#include "parse.h"
#include "qmp_client.h"
#include "store.h"
#include "vm_disks.h"
#include "vm_state.h"


/* ---- paths ---- */

static void guest_dir(const struct kvzd *d, const char *guest, char *buf, size_t len)
{
	snprintf(buf, len, "%s/snapshots/%s", d->state_dir, guest);
}

static void snap_dir(const struct kvzd *d, const char *guest, const char *snap, char *buf,
		     size_t len)
{
	snprintf(buf, len, "%s/snapshots/%s/%s", d->state_dir, guest, snap);
}

static void partial_dir(const struct kvzd *d, const char *guest, const char *snap,
			char *buf, size_t len)
{
	snprintf(buf, len, "%s/snapshots/%s/.%s.partial", d->state_dir, guest, snap);
}

static int mkdir_0700(const char *path, struct op_error *e)
{
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return op_fail(e, 500, "cannot create %s: %s", path, strerror(errno));
	return 0;
}

/* ---- checks shared by the API and the jobs ---- */

/* The guest's record when it may have snapshots; NULL with e otherwise. */
static json_t *snapshot_guest(struct kvzd *d, const char *guest, struct op_error *e)
{
	if (!kvz_valid_name(guest)) {
		op_fail(e, 400, "bad guest name \"%s\"", guest);
		return NULL;
	}
	json_t *g = guest_get_or_404(d, guest, e);
	if (g && guest_driver_of(g)->no_snapshots) {
		op_fail(e, 409, "%s: %s", guest, guest_driver_of(g)->no_snapshots);
		json_decref(g);
		return NULL;
	}
	return g;
}

/* The same for taking or restoring one: a snapshot holds disk 0 only, so a
 * VM with more disks is refused rather than have disks 1.. left out. */
static json_t *snapshot_guest_whole(struct kvzd *d, const char *guest, struct op_error *e)
{
	json_t *g = snapshot_guest(d, guest, e);
	if (g && vm_disks_only_one(json_object_get(g, "config"), guest, "a snapshot", e)) {
		json_decref(g);
		return NULL;
	}
	return g;
}

static int check_snap_name(const char *snap, struct op_error *e)
{
	if (!snap || !kvz_valid_name(snap))
		return op_fail(e, 400, "bad snapshot name (letters, digits, '_', '.', '-'; up to 63)");
	if (snap[0] == '.')
		return op_fail(e, 400, "a snapshot name may not start with '.'");
	return 0;
}

/* Checks the guest and the name, and that the snapshot exists (restore)
 * or not yet (create), then submits the job. */
static json_t *submit(struct kvzd *d, const struct job_kind *k, const char *guest,
		      const char *snap, bool must_exist, struct op_error *e)
{
	if (check_snap_name(snap, e))
		return NULL;
	json_t *g = snapshot_guest_whole(d, guest, e);
	if (!g)
		return NULL;
	json_decref(g);
	json_t *rec = store_snapshot_get(d->store, guest, snap);
	json_decref(rec);
	if (must_exist && !rec) {
		op_fail(e, 404, "%s has no snapshot named %s", guest, snap);
		return NULL;
	}
	if (!must_exist && rec) {
		op_fail(e, 409, "%s already has a snapshot named %s", guest, snap);
		return NULL;
	}
	json_t *params = json_pack("{s:s}", "snapshot", snap);
	json_t *job = job_submit(d, k, guest, params, e);
	json_decref(params);
	return job;
}

/* ---- disks ---- */

struct copy_ctx {
	struct job *j;
	const char *phase;
};

static bool copy_progress(void *arg, uint64_t done, uint64_t total)
{
	struct copy_ctx *c = arg;
	job_progress(c->j, c->phase, done, total);
	return !job_cancelled(c->j);
}

/* src -> dst by reflink, else a full copy (one line says what it cost). */
static int clone_disk(struct job *j, const char *guest, const char *src, const char *dst,
		      struct op_error *e)
{
	struct copy_ctx ctx = {.j = j, .phase = "copying disk"};
	bool reflinked;
	char err[700];
	int64_t t0 = kvzd_now_ms();
	if (file_clone(src, dst, copy_progress, &ctx, &reflinked, err, sizeof(err)))
		return op_fail(e, strcmp(err, "cancelled") ? 500 : 409, "%s", err);
	if (!reflinked) {
		uint64_t used = tree_allocated(dst);
		char a[32];
		kvz_info("%s: no reflink (FICLONE) where %s lies: a full copy of %s took %lld ms",
			 guest, dst, kvz_format_size(used, a, sizeof(a)),
			 (long long)(kvzd_now_ms() - t0));
	}
	return 0;
}

/* ---- create ---- */

/* The live part: state saved, disk copied while paused, VM resumed. */
static int snapshot_running(struct job *j, json_t *g, const char *dir, struct op_error *e)
{
	const char *guest = cfg_str(g, "name");
	const char *disk = cfg_str(json_object_get(g, "config"), "disk_path");
	char path[640];
	struct qmp_client *c = guest_qmp_open(guest, cfg_str(g, "qmp"), e);
	if (!c)
		return -1;
	snprintf(path, sizeof(path), "%s/state", dir);
	int rc = vm_state_save(j, "saving memory", guest, c, path, e);
	if (rc == 0 && disk) {
		snprintf(path, sizeof(path), "%s/disk.img", dir);
		rc = clone_disk(j, guest, disk, path, e);
	}
	char why[300];   /* logged by vm_state_resume; the snapshot stands */
	vm_state_resume(c, guest, why, sizeof(why));
	qmp_client_close(c);
	return rc;
}

static int create_run(struct kvzd *d, struct job *j, const char *guest, json_t *params,
		      struct op_error *e)
{
	const char *snap = json_string_value(json_object_get(params, "snapshot"));
	json_t *g = snapshot_guest_whole(d, guest, e);
	if (!g)
		return -1;
	const char *state = cfg_str(g, "state");
	bool running = !strcmp(state, "running");
	const char *disk = cfg_str(json_object_get(g, "config"), "disk_path");
	char gdir[400], tmp[600], final[600], path[700];
	int rc = -1;
	json_t *old = store_snapshot_get(d->store, guest, snap);
	if (old) {
		op_fail(e, 409, "%s already has a snapshot named %s", guest, snap);
		goto out;
	}
	if (!running && strcmp(state, "stopped") && strcmp(state, "crashed")) {
		op_fail(e, 409, "guest %s is %s; try again", guest, state);
		goto out;
	}
	char top[300];
	snprintf(top, sizeof(top), "%s/snapshots", d->state_dir);
	guest_dir(d, guest, gdir, sizeof(gdir));
	partial_dir(d, guest, snap, tmp, sizeof(tmp));
	snap_dir(d, guest, snap, final, sizeof(final));
	/* Guest memory lies there: 0700 all the way. */
	if (mkdir_0700(top, e) || mkdir_0700(gdir, e))
		goto out;
	remove_tree(tmp);   /* a leftover of an interrupted kvzd */
	if (mkdir_0700(tmp, e))
		goto out;
	if (running) {
		rc = snapshot_running(j, g, tmp, e);
	} else if (disk) {
		snprintf(path, sizeof(path), "%s/disk.img", tmp);
		rc = clone_disk(j, guest, disk, path, e);
	} else {
		rc = 0;
	}
	if (rc == 0 && rename(tmp, final) < 0)
		rc = op_fail(e, 500, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
	if (rc) {
		remove_tree(tmp);
		goto out;
	}
	uint64_t size = tree_allocated(final);
	if (store_snapshot_insert(d->store, guest, snap, kvzd_now_ms(), size, running)) {
		remove_tree(final);
		rc = op_fail(e, 500, "cannot record snapshot %s", snap);
		goto out;
	}
	char a[32], detail[200];
	snprintf(detail, sizeof(detail), "%s (%s, %s)", snap, running ? "running" : "stopped",
		 kvz_format_size(size, a, sizeof(a)));
	store_event_add(d->store, guest, "snapshot-created", detail);
out:
	json_decref(old);
	json_decref(g);
	return rc;
}

/* What a kvzd killed during a create left: a .partial directory, and maybe
 * the VM paused by a save that completed (kvzd's API never pauses a VM
 * otherwise). */
static void create_recover(struct kvzd *d, json_t *job)
{
	const char *guest = json_string_value(json_object_get(job, "guest"));
	const char *snap = json_string_value(json_object_get(json_object_get(job, "params"),
							     "snapshot"));
	char tmp[512];
	if (guest && snap && kvz_valid_name(guest) && kvz_valid_name(snap)) {
		partial_dir(d, guest, snap, tmp, sizeof(tmp));
		remove_tree(tmp);
	}
	json_t *g = guest ? store_guest_get(d->store, guest) : NULL;
	const char *qmp = g ? cfg_str(g, "qmp") : NULL;
	if (g && !strcmp(cfg_str(g, "state"), "running") && qmp && qmp[0]) {
		char why[300];   /* logged */
		vm_state_cancel_and_resume(guest, qmp, why, sizeof(why));
	}
	json_decref(g);
}

const struct job_kind snapshot_create_job = {
	.type = "snapshot-create",
	.run = create_run,
	.recover = create_recover,
};

json_t *snapshot_create(struct kvzd *d, const char *guest, const char *snap,
			struct op_error *e)
{
	char name[64];
	if (!snap) {
		time_t t = time(NULL);
		struct tm tm;
		gmtime_r(&t, &tm);
		strftime(name, sizeof(name), "snap-%Y%m%d-%H%M%S", &tm);
		snap = name;
	}
	return submit(d, &snapshot_create_job, guest, snap, false, e);
}

/* ---- restore ---- */

/* The snapshot's disk into place beside the guest's (DISK.restore), while
 * the guest still runs: cancellable, and the guest untouched on failure. */
static int stage_disk(struct job *j, const char *guest, const char *dir, const char *disk,
		      char *staged, size_t len, struct op_error *e)
{
	char src[700];
	snprintf(src, sizeof(src), "%s/disk.img", dir);
	snprintf(staged, len, "%s.restore", disk);
	unlink(staged);
	if (access(src, F_OK) < 0)
		return op_fail(e, 500, "snapshot of %s has no disk copy (%s)", guest, src);
	return clone_disk(j, guest, src, staged, e);
}

/* The snapshot's disk, staged beside the VM's, takes its place; the VM's
 * own disk waits as DISK.prev until the restored VM runs. */
static int swap_disks(const char *disk, const char *staged, const char *prev,
		      struct op_error *e)
{
	unlink(prev);
	if (rename(disk, prev) < 0)
		return op_fail(e, 500, "cannot move %s aside: %s", disk, strerror(errno));
	if (rename(staged, disk) < 0) {
		int err = errno;
		rename(prev, disk);
		return op_fail(e, 500, "cannot put %s in place: %s", disk, strerror(err));
	}
	return 0;
}

/* Starts the restored VM from the snapshot's state file. */
static int start_incoming(struct kvzd *d, const char *guest, const char *dir,
			  struct op_error *e)
{
	char statef[700];
	snprintf(statef, sizeof(statef), "file:%s/state", dir);
	const char *extra[] = {"--incoming", statef, NULL};
	return guest_start_stored(d, guest, extra, e);
}

static int restore_run(struct kvzd *d, struct job *j, const char *guest, json_t *params,
		       struct op_error *e)
{
	const char *snap = json_string_value(json_object_get(params, "snapshot"));
	json_t *g = snapshot_guest_whole(d, guest, e);
	if (!g)
		return -1;
	json_t *rec = store_snapshot_get(d->store, guest, snap);
	const char *disk = cfg_str(json_object_get(g, "config"), "disk_path");
	const char *state = cfg_str(g, "state");
	char dir[512], staged[700] = "", prev[700] = "";
	int rc = -1;
	if (!rec) {
		op_fail(e, 404, "%s has no snapshot named %s", guest, snap);
		goto out;
	}
	snap_dir(d, guest, snap, dir, sizeof(dir));
	if (disk && stage_disk(j, guest, dir, disk, staged, sizeof(staged), e))
		goto out;
	if (job_cancelled(j)) {
		op_fail(e, 409, "cancelled");
		goto out;
	}
	/* From here on the guest's current run is given up for the snapshot's. */
	job_progress(j, "stopping", 0, 0);
	if ((!strcmp(state, "running") || !strcmp(state, "starting")) &&
	    guest_stop_locked(d, g, 0, true, e))
		goto out;
	if (disk) {
		snprintf(prev, sizeof(prev), "%s.prev", disk);
		if (swap_disks(disk, staged, prev, e)) {
			prev[0] = 0;
			goto out;
		}
		staged[0] = 0;
	}
	if (json_is_true(json_object_get(rec, "running"))) {
		job_progress(j, "starting", 0, 0);
		if (start_incoming(d, guest, dir, e))
			goto out;
	}
	store_event_add(d->store, guest, "snapshot-restored", snap);
	rc = 0;
out:
	if (staged[0])
		unlink(staged);
	/* A failed start gets the VM's own disk back: it stays stopped as
	 * it would after a stop, its disk as it was. */
	if (prev[0] && (rc ? rename(prev, disk) : unlink(prev)) < 0)
		kvz_warn("%s: %s: %s", guest, prev, strerror(errno));
	json_decref(rec);
	json_decref(g);
	return rc;
}

/* A restore interrupted by kvzd's death may have left DISK.restore (the
 * staged copy: removed) and DISK.prev (the VM's own disk: stale when the
 * restored VM runs, else put back, as after a failed start). */
static void restore_recover(struct kvzd *d, json_t *job)
{
	const char *guest = json_string_value(json_object_get(job, "guest"));
	json_t *g = guest ? store_guest_get(d->store, guest) : NULL;
	const char *disk = g ? cfg_str(json_object_get(g, "config"), "disk_path") : NULL;
	if (disk) {
		char staged[700], prev[700];
		snprintf(staged, sizeof(staged), "%s.restore", disk);
		snprintf(prev, sizeof(prev), "%s.prev", disk);
		unlink(staged);
		if (access(prev, F_OK) == 0) {
			bool runs = !strcmp(cfg_str(g, "state"), "running");
			if ((runs ? unlink(prev) : rename(prev, disk)) < 0)
				kvz_warn("%s: %s: %s", guest, prev, strerror(errno));
		}
	}
	json_decref(g);
}

const struct job_kind snapshot_restore_job = {
	.type = "snapshot-restore",
	.run = restore_run,
	.recover = restore_recover,
};

json_t *snapshot_restore(struct kvzd *d, const char *guest, const char *snap,
			 struct op_error *e)
{
	return submit(d, &snapshot_restore_job, guest, snap, true, e);
}

/* ---- delete ---- */

static int delete_locked(struct kvzd *d, const char *guest, const char *snap,
			 struct op_error *e)
{
	char dir[600];
	json_t *rec = store_snapshot_get(d->store, guest, snap);
	if (!rec)
		return op_fail(e, 404, "%s has no snapshot named %s", guest, snap);
	json_decref(rec);
	snap_dir(d, guest, snap, dir, sizeof(dir));
	if (remove_tree(dir))
		return op_fail(e, 500, "cannot remove %s: %s", dir, strerror(errno));
	store_snapshot_delete(d->store, guest, snap);
	store_event_add(d->store, guest, "snapshot-deleted", snap);
	return 0;
}

int snapshot_delete(struct kvzd *d, const char *guest, const char *snap, struct op_error *e)
{
	if (check_snap_name(snap, e))
		return -1;
	json_t *g = snapshot_guest(d, guest, e);
	if (!g)
		return -1;
	json_decref(g);
	guest_lock(d, guest);
	int rc = delete_locked(d, guest, snap, e);
	guest_unlock(d, guest);
	return rc;
}

int snapshots_remove_all(struct kvzd *d, const char *guest, struct op_error *e)
{
	char dir[400];
	guest_dir(d, guest, dir, sizeof(dir));
	if (remove_tree(dir))
		return op_fail(e, 500, "cannot remove %s: %s", dir, strerror(errno));
	store_snapshot_delete(d->store, guest, NULL);
	return 0;
}
