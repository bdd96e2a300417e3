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
	json_t *g = snapshot_guest(d, guest, e);
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

/* Disk i's copy in a snapshot directory: disk.img for disk 0 (as before
 * a VM had several), diskN.img for disk N. */
static void snap_disk_path(const char *dir, size_t i, char *buf, size_t len)
{
	if (i)
		snprintf(buf, len, "%s/disk%zu.img", dir, i);
	else
		snprintf(buf, len, "%s/disk.img", dir);
}

/* How many disk copies a snapshot directory holds (disk.img, disk1.img,
 * ... without a gap). */
static size_t snap_disk_count(const char *dir)
{
	char p[700];
	size_t n = 0;
	for (; n < VM_DISKS_MAX; n++) {
		snap_disk_path(dir, n, p, sizeof(p));
		if (access(p, F_OK) < 0)
			break;
	}
	return n;
}

/* Copies every disk of cfg into dir (the VM paused or stopped: one
 * instant for all of them). */
/* Disk i of cfg: its file, its format, and where its copy in snapshot dir
 * goes (snap_disk_path); -1 with e when the disk has no file. */
static int disk_and_copy(const char *guest, json_t *cfg, const char *dir, size_t i,
			 const char **path, bool *qcow2, char *copy, size_t copylen,
			 struct op_error *e)
{
	uint64_t size;
	if (!vm_disk_at(cfg, i, path, &size, qcow2) || !*path)
		return op_fail(e, 500, "%s: disk %zu has no file", guest, i);
	snap_disk_path(dir, i, copy, copylen);
	return 0;
}

static int clone_all(struct job *j, const char *guest, json_t *cfg, const char *dir,
		     struct op_error *e)
{
	size_t n = vm_disks_count(cfg);
	for (size_t i = 0; i < n; i++) {
		const char *src;
		bool qcow2;
		char dst[700];
		if (disk_and_copy(guest, cfg, dir, i, &src, &qcow2, dst, sizeof(dst), e) < 0)
			return -1;
		if (clone_disk(j, guest, src, dst, e))
			return -1;
	}
	return 0;
}

/* ---- create ---- */

/* The live part: state saved, every disk copied while paused, VM
 * resumed. */
static int snapshot_running(struct job *j, json_t *g, const char *dir, struct op_error *e)
{
	const char *guest = cfg_str(g, "name");
	char path[640];
	struct qmp_client *c = guest_qmp_open(guest, cfg_str(g, "qmp"), e);
	if (!c)
		return -1;
	snprintf(path, sizeof(path), "%s/state", dir);
	int rc = vm_state_save(j, "saving memory", guest, c, path, e);
	if (rc == 0)
		rc = clone_all(j, guest, json_object_get(g, "config"), dir, e);
	char why[300];   /* logged by vm_state_resume; the snapshot stands */
	vm_state_resume(c, guest, why, sizeof(why));
	qmp_client_close(c);
	return rc;
}

static int create_run(struct kvzd *d, struct job *j, const char *guest, json_t *params,
		      struct op_error *e)
{
	const char *snap = json_string_value(json_object_get(params, "snapshot"));
	json_t *g = snapshot_guest(d, guest, e);
	if (!g)
		return -1;
	const char *state = cfg_str(g, "state");
	bool running = !strcmp(state, "running");
	char gdir[400], tmp[600], final[600];
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
	if (running)
		rc = snapshot_running(j, g, tmp, e);
	else
		rc = clone_all(j, guest, json_object_get(g, "config"), tmp, e);
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

/* One disk of a restore: the snapshot's copy staged beside the VM's disk
 * (DISK.restore) while the guest still runs, then swapped in, the VM's
 * own disk waiting as DISK.prev until the restored VM runs. */
struct disk_swap {
	char disk[400], staged[420], prev[420];
	bool staged_made, swapped;
};

static bool is_qcow2_file(const char *path)
{
	char magic[4] = {0};
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool q = pread(fd, magic, 4, 0) == 4 && !memcmp(magic, "QFI\xfb", 4);
	close(fd);
	return q;
}

/* The VM's disks now against the snapshot's copies: as many, each of the
 * same format (a disk added or removed since is refused, not guessed). */
static int restore_plan(const char *guest, const char *snap, json_t *cfg, const char *dir,
			struct disk_swap *sw, size_t *n, struct op_error *e)
{
	size_t have = vm_disks_count(cfg), saved = snap_disk_count(dir);
	if (have != saved)
		return op_fail(e, 409, "snapshot %s holds %zu disk%s and %s has %zu now: add or remove "
			       "disks to match it first", snap, saved, saved == 1 ? "" : "s", guest,
			       have);
	for (size_t i = 0; i < have; i++) {
		const char *path;
		bool qcow2;
		char copy[700];
		if (disk_and_copy(guest, cfg, dir, i, &path, &qcow2, copy, sizeof(copy), e) < 0)
			return -1;
		if (qcow2 != is_qcow2_file(copy))
			return op_fail(e, 409, "snapshot %s's disk %zu is %s and %s's is %s now", snap, i,
				       qcow2 ? "raw" : "qcow2", guest, qcow2 ? "qcow2" : "raw");
		memset(&sw[i], 0, sizeof(sw[i]));
		snprintf(sw[i].disk, sizeof(sw[i].disk), "%s", path);
		snprintf(sw[i].staged, sizeof(sw[i].staged), "%s.restore", path);
		snprintf(sw[i].prev, sizeof(sw[i].prev), "%s.prev", path);
	}
	*n = have;
	return 0;
}

/* Every copy staged: cancellable, and the guest untouched on failure. */
static int stage_disks(struct job *j, const char *guest, const char *dir, struct disk_swap *sw,
		       size_t n, struct op_error *e)
{
	for (size_t i = 0; i < n; i++) {
		char src[700];
		snap_disk_path(dir, i, src, sizeof(src));
		unlink(sw[i].staged);
		sw[i].staged_made = true;
		if (clone_disk(j, guest, src, sw[i].staged, e))
			return -1;
	}
	return 0;
}

/* The staged copies take the disks' places, all or none. */
static int swap_disks(struct disk_swap *sw, size_t n, struct op_error *e)
{
	for (size_t i = 0; i < n; i++) {
		struct disk_swap *s = &sw[i];
		unlink(s->prev);
		int rc = 0;
		if (rename(s->disk, s->prev) < 0) {
			rc = op_fail(e, 500, "cannot move %s aside: %s", s->disk, strerror(errno));
		} else if (rename(s->staged, s->disk) < 0) {
			rc = op_fail(e, 500, "cannot put %s in place: %s", s->disk, strerror(errno));
			rename(s->prev, s->disk);
		}
		if (rc) {
			while (i-- > 0) {
				rename(sw[i].prev, sw[i].disk);
				sw[i].swapped = false;
			}
			return -1;
		}
		s->staged_made = false;
		s->swapped = true;
	}
	return 0;
}

/* After the restore: staged copies left go; the VM's own disks are
 * dropped (restored) or put back (failed: it stays stopped as after a
 * stop, its disks as they were). */
static void finish_disks(const char *guest, struct disk_swap *sw, size_t n, bool ok)
{
	for (size_t i = 0; i < n; i++) {
		if (sw[i].staged_made)
			unlink(sw[i].staged);
		if (sw[i].swapped && (ok ? unlink(sw[i].prev) : rename(sw[i].prev, sw[i].disk)) < 0)
			kvz_warn("%s: %s: %s", guest, sw[i].prev, strerror(errno));
	}
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
	json_t *g = snapshot_guest(d, guest, e);
	if (!g)
		return -1;
	json_t *rec = store_snapshot_get(d->store, guest, snap);
	const char *state = cfg_str(g, "state");
	char dir[512];
	struct disk_swap sw[VM_DISKS_MAX];
	size_t n = 0;
	int rc = -1;
	if (!rec) {
		op_fail(e, 404, "%s has no snapshot named %s", guest, snap);
		goto out;
	}
	snap_dir(d, guest, snap, dir, sizeof(dir));
	if (restore_plan(guest, snap, json_object_get(g, "config"), dir, sw, &n, e) ||
	    stage_disks(j, guest, dir, sw, n, e))
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
	if (swap_disks(sw, n, e))
		goto out;
	if (json_is_true(json_object_get(rec, "running"))) {
		job_progress(j, "starting", 0, 0);
		if (start_incoming(d, guest, dir, e))
			goto out;
	}
	store_event_add(d->store, guest, "snapshot-restored", snap);
	rc = 0;
out:
	finish_disks(guest, sw, n, rc == 0);
	json_decref(rec);
	json_decref(g);
	return rc;
}

/* A restore interrupted by kvzd's death may have left DISK.restore (the
 * staged copy: removed) and DISK.prev (the VM's own disk: stale when the
 * restored VM runs, else put back, as after a failed start), for any of
 * its disks. */
static void restore_recover(struct kvzd *d, json_t *job)
{
	const char *guest = json_string_value(json_object_get(job, "guest"));
	json_t *g = guest ? store_guest_get(d->store, guest) : NULL;
	json_t *cfg = g ? json_object_get(g, "config") : NULL;
	size_t n = vm_disks_count(cfg);
	for (size_t i = 0; i < n; i++) {
		const char *disk;
		uint64_t size;
		bool qcow2;
		if (!vm_disk_at(cfg, i, &disk, &size, &qcow2) || !disk)
			continue;
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
