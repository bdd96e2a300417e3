/* The source of a migration: the migrate job and the settling of a
 * hand-over that a kvzd restart interrupted (migration.h). */
#include "migration.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file_copy.h"
#include "migration_storage.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "guest_locks.h"
#include "hostinfo.h"
#include "log.h"
#include "mig_stream.h"
#include "migration_stats.h"
#include "nodes.h"
#include "parse.h"
#include "peer_client.h"
#include "snapshots.h"
#include "store.h"
#include "vm_disks.h"

/* The target's confirmation after the stream's end (its fsync). */
#define CONFIRM_TIMEOUT_MS 60000
/* Asking an unreachable target whether it runs the guest, after a commit
 * whose answer was lost. */
#define SETTLE_TRIES 15
#define SETTLE_PAUSE_S 2
/* A link that stops carrying the stream (cut, a host gone without a
 * reset) fails the migration after this long without an acknowledgement
 * (TCP_USER_TIMEOUT), instead of TCP's retries of about 15 minutes, so
 * that the guest runs on here; the target gives up on its side
 * after migration_target.c's STREAM_TIMEOUT_S without data. A target that
 * only reads slowly still answers (window probes): no false alarm. */
#define LINK_TIMEOUT_MS 15000
/* After a discard the target answered, how long the take-back waits for
 * the target's record to go (its supervisor, which may hold the guest's
 * disk since it loaded the stream, stops first). */
#define DISCARD_WAIT_MS 10000
#define DISCARD_POLL_MS 100
#define DAY_MS (24 * 3600 * 1000LL)

/* ---- talking to the target ---- */

/* One peer call; 0 with *out (may be NULL) on 2xx, else -1 with the
 * peer's own message in e. *status (may be NULL): the HTTP status, -1
 * for a lost answer. */
static int peer(const struct node *n, const char *method, const char *path, json_t *body,
		json_t **out, long *status, struct op_error *e)
{
	char err[400];
	json_t *ans = NULL;
	long st = peer_call(n->url, n->token, method, path, body, &ans, err, sizeof(err));
	if (status)
		*status = st;
	if (st >= 200 && st < 300) {
		if (out)
			*out = ans;
		else
			json_decref(ans);
		return 0;
	}
	const char *msg = json_string_value(json_object_get(json_object_get(ans, "error"),
							    "message"));
	if (st < 0)
		op_fail(e, 502, "node %s: %s", n->name, err);
	else
		op_fail(e, st == 401 ? 502 : 409, "node %s: %s", n->name,
			msg ? msg : "refused (no reason given)");
	json_decref(ans);
	return -1;
}

/* The target's record of name: its HTTP status (200, 404), or -1 when
 * the target does not answer; *state (may be NULL) its state on 200. */
static long target_record(const struct node *n, const char *name, char *state, size_t len)
{
	char path[128], err[300];
	json_t *g = NULL;
	snprintf(path, sizeof(path), "/v1/guests/%s", name);
	long st = peer_call(n->url, n->token, "GET", path, NULL, &g, err, sizeof(err));
	if (state)
		snprintf(state, len, "%s", st == 200 && cfg_str(g, "state") ? cfg_str(g, "state") : "");
	json_decref(g);
	return st;
}

/* Tells the target to discard; true when it answered (it discards, or had
 * nothing). */
static bool discard_on_target(const struct node *n, const char *name)
{
	char path[128];
	struct op_error ignored;
	long st = -1;
	snprintf(path, sizeof(path), "/v1/migrations/%s", name);
	peer(n, "DELETE", path, NULL, NULL, &st, &ignored);
	return st >= 0;
}

/* After a discard the target answered: until its incoming record is gone
 * (a discard mid-stream ends on the target's receiving thread), so that
 * a take-back finds the disk free. */
static void wait_discarded(const struct node *n, const char *name)
{
	for (int waited = 0; waited < DISCARD_WAIT_MS; waited += DISCARD_POLL_MS) {
		char state[32];
		long st = target_record(n, name, state, sizeof(state));
		if (st != 200 || strcmp(state, "incoming"))
			return;
		struct timespec ts = {0, DISCARD_POLL_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	kvz_warn("%s: node %s still has its incoming record %d s after the discard", name, n->name,
		 DISCARD_WAIT_MS / 1000);
}

/* Why the target dropped its side by itself (its receiving thread failed:
 * a bad stream, its supervisor gone or not answering), when one of its
 * events for name since this move's reservation (since: the id the
 * reservation answered) says so; "" otherwise (among them a discard this
 * source asked for, and a target that gave no id: an older target's
 * newest event may be an earlier move's). A stream broken from the
 * target's side then says why, not only "Broken pipe". */
static void target_reason(const struct node *n, const char *name, int64_t since, char *why,
			  size_t len)
{
	char path[200], err[300];
	json_t *evs = NULL;
	why[0] = 0;
	if (since <= 0)
		return;
	snprintf(path, sizeof(path), "/v1/events?guest=%s&since=%lld&limit=100", name,
		 (long long)since);
	if (peer_call(n->url, n->token, "GET", path, NULL, &evs, err, sizeof(err)) == 200) {
		/* The newest first: the drop ends the target's side. */
		for (size_t i = json_array_size(evs); i-- > 0 && !why[0];) {
			json_t *ev = json_array_get(evs, i);
			const char *type = cfg_str(ev, "type"), *detail = cfg_str(ev, "detail");
			json_t *id = json_object_get(ev, "id");
			if (type && detail && json_is_integer(id) && json_integer_value(id) > since &&
			    !strcmp(type, "migration-discarded") && strcmp(detail, "discarded") &&
			    strcmp(detail, "discarded by the source"))
				snprintf(why, len, "%s", detail);
		}
	}
	json_decref(evs);
}

/* e's message with "; on node N: WHY" where the target says why (and e
 * does not already). */
static void append_target_reason(const struct node *n, const char *name, int64_t since,
				 struct op_error *e)
{
	char why[400], first[sizeof(e->msg)];
	target_reason(n, name, since, why, sizeof(why));
	if (!why[0] || strstr(e->msg, why))
		return;
	snprintf(first, sizeof(first), "%s", e->msg);
	op_fail(e, e->status, "%s; on node %s: %s", first, n->name, why);
}

/* Connects to port on the node's host and sends the proof. */
static int connect_port(const struct node *n, int port, const char *proof,
			struct op_error *e)
{
	char host[256], ports[16];
	const char *h = n->url + strlen("http://");
	size_t len = h[0] == '[' ? strcspn(h + 1, "]") : strcspn(h, ":/");
	snprintf(host, sizeof(host), "%.*s", (int)len, h[0] == '[' ? h + 1 : h);
	snprintf(ports, sizeof(ports), "%d", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
	int rc = getaddrinfo(host, ports, &hints, &ai);
	if (rc)
		return op_fail(e, 502, "node %s: %s: %s", n->name, host, gai_strerror(rc));
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unsigned int link_ms = LINK_TIMEOUT_MS;
	if (fd < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &link_ms, sizeof(link_ms)) < 0 ||
	    connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
	    write(fd, proof, MIG_PROOF_LEN) != MIG_PROOF_LEN) {
		op_fail(e, 502, "node %s: migration port %s:%d: %s", n->name, host, port,
			strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* ---- the job ---- */

struct send_ctx {
	struct job *j;
	const char *phase;
	uint64_t base, total;
};

static bool send_progress(void *arg, uint64_t done)
{
	struct send_ctx *c = arg;
	job_progress(c->j, c->phase, c->base + done, c->total);
	return !job_cancelled(c->j);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	return path && stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Disk i's file (0: disk_path); NULL for none. */
static const char *disk_file(json_t *cfg, size_t i)
{
	const char *path;
	uint64_t size;
	bool qcow2;
	return vm_disk_at(cfg, i, &path, &size, &qcow2) ? path : NULL;
}

/* A file of a random name in kvzd's image dir (beside mine, the guest's
 * disk 0 file there, and its disks 1..), which the target looks for in
 * its own: seen there, the two share that directory (one NFS export
 * mounted as both STATE/images) and every disk in it stays where it is.
 * Its name into probe (empty when it could not be made: the disks are
 * then copied, as without shared storage). */
static void shared_probe_make(const char *mine, char *probe, size_t len, char *path,
			      size_t plen)
{
	char rnd[MIG_PROOF_LEN + 1];
	const char *slash = strrchr(mine, '/');
	probe[0] = path[0] = 0;
	if (!slash || mig_proof_new(rnd))
		return;
	snprintf(probe, len, "%s%s", MIG_SHARED_PROBE_PREFIX, rnd);
	snprintf(path, plen, "%.*s/%s", (int)(slash - mine), mine, probe);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		kvz_warn("cannot create %s (the disk is copied): %s", path, strerror(errno));
		probe[0] = path[0] = 0;
		return;
	}
	close(fd);
}

/* What the source tells the target, and how the disks travel: a disk kvzd
 * made (disks 1.. always are) lies in its own image dir and is copied
 * unless the target sees probe (above) in its own, as is any disk with
 * copy_storage; any other path is shared storage when the target has it
 * ("auto": the target answers which, the same for every disk). *ours:
 * disk 0 is kvzd's own. */
static json_t *reservation(struct kvzd *d, json_t *g, bool running, bool live,
			   bool copy_storage, const char *probe, bool *ours,
			   struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	json_t *cfg = json_deep_copy(json_object_get(g, "config"));
	const char *disk = cfg_str(cfg, "disk_path");
	char mine[400], model[256];
	guest_image_path(d, name, mine, sizeof(mine));
	*ours = disk && !strcmp(disk, mine);
	uint64_t size;
	/* The target makes a disk of this size for a copy. */
	if (disk && !json_is_integer(json_object_get(cfg, "disk_size"))) {
		if (mig_storage_size(cfg, &size, e)) {
			json_decref(cfg);
			return NULL;
		}
		json_object_set_new(cfg, "disk_size", json_integer((json_int_t)size));
	}
	host_cpu_model(model, sizeof(model));
	bool extras = vm_disks_count(cfg) > 1;
	bool probed = (*ours || extras) && !copy_storage && probe && probe[0];
	json_t *req = json_pack("{s:s, s:s, s:o, s:b, s:b, s:b, s:s, s:s}", "name", name, "type",
				cfg_str(g, "type"), "config", cfg, "autostart",
				json_is_true(json_object_get(g, "autostart")), "running", running,
				"live", live, "cpu_model", model, "disk",
				!disk ? "none" : probed ? "auto" : *ours || extras || copy_storage ? "copy" : "auto");
	if (req && disk && probed) {
		json_object_set_new(req, "shared_probe", json_string(probe));
		json_object_set_new(req, "probe_disk0", json_boolean(*ours));
	}
	return req;
}

/* The hand-over after the stream, as times on this host's clock (ms since
 * the epoch; 0 for a step not reached), the target's running as its own
 * clock says: logged and the job's result. */
struct handover {
	int64_t completed;      /* the stream done (live: kvz-vmm said completed) */
	int64_t told;           /* the commit sent: the target told to go */
	int64_t target_running; /* the target's guest ran (its clock) */
	int64_t committed;      /* the target's answer */
	int64_t source_stopped; /* this host's copy ended */
	int64_t record_moved;   /* this host forgot the guest */
};

struct outgoing {
	struct kvzd *d;
	struct job *j;
	json_t *g;
	const char *name;
	struct node n;
	bool running, copy_disk, live;
	bool disk_ours;      /* disk 0 in this kvzd's image dir: removed once copied over */
	json_t *params;
	int64_t downtime_ms; /* live: as kvz-vmm reports it */
	char dir[400], state[450];
	int sock;
	int64_t target_since; /* the reservation's event id on the target (0: none) */
	uint64_t sent;
	int64_t t_start, t_paused;
	struct handover h;
};

/* Saves (when running) and sends the guest; the guest is paused after. */
static int transfer(struct outgoing *o, struct op_error *e)
{
	const struct guest_driver *drv = guest_driver_of(o->g);
	char top[300], err[600];
	snprintf(top, sizeof(top), "%s/migrations", o->d->state_dir);
	remove_tree(o->dir);
	if ((mkdir(top, 0700) < 0 && errno != EEXIST) || mkdir(o->dir, 0700) < 0)
		return op_fail(e, 500, "cannot create %s: %s", o->dir, strerror(errno));
	o->t_paused = kvzd_now_ms();
	if (o->running) {
		if (drv->migrate_save(o->d, o->j, o->g, o->state, e))
			return -1;
	} else {
		FILE *f = fopen(o->state, "wx");
		if (!f)
			return op_fail(e, 500, "cannot create %s: %s", o->state, strerror(errno));
		fclose(f);
	}
	json_t *cfg = json_object_get(o->g, "config");
	const char *disk = cfg_str(cfg, "disk_path");
	size_t n = o->copy_disk ? vm_disks_count(cfg) : 0;
	uint64_t total = file_size(o->state);
	for (size_t i = 0; i < n; i++)
		total += file_size(disk_file(cfg, i));
	struct send_ctx c = {.j = o->j, .phase = "sending state", .total = total};
	if (mig_send_file(o->sock, 'S', o->state, send_progress, &c, err, sizeof(err)))
		return op_fail(e, strcmp(err, "cancelled") ? 502 : 409, "%s", err);
	c.base = file_size(o->state);
	c.phase = "sending disk";
	if (o->copy_disk &&
	    mig_send_file(o->sock, 'D', disk, send_progress, &c, err, sizeof(err)))
		return op_fail(e, strcmp(err, "cancelled") ? 502 : 409, "%s", err);
	/* Disks 1.., in order, one 'X' each. */
	for (size_t i = 1; i < n; i++) {
		const char *p = disk_file(cfg, i);
		c.base += file_size(disk_file(cfg, i - 1));
		if (!p)
			return op_fail(e, 500, "disk %zu has no file", i);
		if (mig_send_file(o->sock, 'X', p, send_progress, &c, err, sizeof(err)))
			return op_fail(e, strcmp(err, "cancelled") ? 502 : 409, "%s", err);
	}
	o->sent = total;
	job_progress(o->j, "confirming", total, total);
	if (mig_send_end(o->sock, CONFIRM_TIMEOUT_MS, err, sizeof(err)))
		return op_fail(e, 502, "node %s: %s", o->n.name, err);
	return 0;
}

/* Live: the guest's supervisor sends itself over the socket. */
static int transfer_live(struct outgoing *o, struct op_error *e)
{
	const struct guest_driver *drv = guest_driver_of(o->g);
	o->t_paused = 0;
	/* Without shared storage kvz-vmm sends the disk too (QMP "blk"). */
	json_t *params = json_deep_copy(o->params);
	json_object_set_new(params, "blk", json_boolean(o->copy_disk));
	int rc = drv->migrate_send(o->d, o->j, o->g, o->sock, params, &o->downtime_ms,
				   &o->sent, e);
	json_decref(params);
	/* The supervisor holds its own copy; the stream ends when it closes. */
	close(o->sock);
	o->sock = -1;
	return rc;
}

/* The guest is the target's: this host forgets it (lock held). copied:
 * its disks went over in the stream; disk0_ours: disk 0 is this kvzd's
 * file (disks 1.. always are), removed with them. */
static void forget(struct kvzd *d, json_t *g, bool copied, bool disk0_ours, const char *node,
		   const char *detail, struct handover *h)
{
	const char *name = cfg_str(g, "name");
	struct op_error e;
	if (json_integer_value(json_object_get(g, "pid")) > 0) {
		/* Stopped as a running guest is (its record says "migrated"). */
		store_guest_set_state(d->store, name, "running");
		json_t *now = store_guest_get(d->store, name);
		if (now && guest_stop_locked(d, now, 0, true, &e))
			kvz_warn("%s: stopping the source copy: %s", name, e.msg);
		json_decref(now);
	}
	if (h)
		h->source_stopped = kvzd_now_ms();
	const char *disk = cfg_str(json_object_get(g, "config"), "disk_path");
	if (copied && disk0_ours && disk)
		unlink(disk);
	if (copied && vm_disks_remove_extra(json_object_get(g, "config"), 1, &e))
		kvz_warn("%s: %s", name, e.msg);
	if (guest_driver_of(g)->migrate_forget)
		guest_driver_of(g)->migrate_forget(d, g);
	if (snapshots_remove_all(d, name, &e))
		kvz_warn("%s: %s", name, e.msg);
	char dir[400], logp[400];
	migration_dir(d, name, dir, sizeof(dir));
	remove_tree(dir);
	guest_log_path(d, name, logp, sizeof(logp));
	unlink(logp);
	store_samples_delete(d->store, name);
	store_guest_delete(d->store, name);
	store_event_add(d->store, name, "migrated-out", detail);
	if (h)
		h->record_moved = kvzd_now_ms();
	kvz_info("%s: migrated to %s: %s", name, node, detail);
}

/* Back to how it was before the migration (lock held): 0, or -1 with why
 * in err when the guest could not run on (its supervisor refused, e.g. the
 * target already holds its disk, or is gone). Then the record says
 * "paused" with why (a start resumes it once it can): never "running"
 * for a VM that does not run. */
static int take_back(struct kvzd *d, json_t *g, bool was_running, char *err, size_t errlen)
{
	const char *name = cfg_str(g, "name");
	json_t *cfg = json_deep_copy(json_object_get(g, "config"));
	json_object_del(cfg, "migrating_to");
	json_object_del(cfg, "migrating_copied");
	store_guest_set_config(d->store, name, cfg);
	json_decref(cfg);
	int rc = was_running ? guest_driver_of(g)->migrate_resume(d, g, err, errlen) : 0;
	if (rc) {
		char reason[400];
		snprintf(reason, sizeof(reason), "migration failed and it did not run on: %s", err);
		store_guest_set_state_reason(d->store, name, "paused", reason);
		store_event_add(d->store, name, "paused", reason);
	} else {
		store_guest_set_state(d->store, name, was_running ? "running" : "stopped");
	}
	char dir[400];
	migration_dir(d, name, dir, sizeof(dir));
	remove_tree(dir);
	return rc;
}

/* The target discards (and, when it answered, is waited for: see
 * wait_discarded), then the guest is taken back. */
static int discard_and_take_back(struct kvzd *d, const struct node *n, json_t *g,
				 bool was_running, char *err, size_t errlen)
{
	const char *name = cfg_str(g, "name");
	if (discard_on_target(n, name))
		wait_discarded(n, name);
	return take_back(d, g, was_running, err, errlen);
}

/* Asks the target whether it runs name: 1 yes, 0 no (it has no such
 * guest, or only an incoming one), -1 unknown. in_commit: a commit of
 * ours may still run there, so "incoming" is unknown too (its record
 * leaves "incoming" as that commit ends, either way). */
static int target_has(const struct node *n, const char *name, bool in_commit)
{
	char state[32];
	long st = target_record(n, name, state, sizeof(state));
	if (st == 200 && in_commit && !strcmp(state, "incoming"))
		return -1;
	if (st == 200)
		return state[0] && strcmp(state, "incoming") ? 1 : 0;
	return st == 404 ? 0 : -1;
}

/* POST commit; a live target still loading the stream answers 503 and is
 * asked again while the job is not cancelled, within
 * MIG_LIVE_TARGET_LIMIT_S. *transport: the last answer was lost. */
static int commit_call(struct outgoing *o, const char *path, json_t *body, json_t **ans,
		       bool *transport, struct op_error *e)
{
	int64_t until = kvzd_now_ms() + MIG_LIVE_TARGET_LIMIT_S * 1000LL;
	for (;;) {
		long st = -1;
		o->h.told = kvzd_now_ms();
		int rc = peer(&o->n, "POST", path, body, ans, &st, e);
		*transport = st < 0;
		if (rc == 0 || st != 503 || !o->live)
			return rc;
		if (job_cancelled(o->j))
			return op_fail(e, 409, "cancelled while node %s was still loading %s", o->n.name,
				       o->name);
		if (kvzd_now_ms() >= until)
			return op_fail(e, 504, "node %s was still loading %s after %d s", o->n.name,
				       o->name, MIG_LIVE_TARGET_LIMIT_S);
		job_progress(o->j, "committing: the target is still loading", o->sent, o->sent);
		/* The target waits a while itself before it says so. */
		struct timespec ts = {0, 200 * 1000000L};
		nanosleep(&ts, NULL);
	}
}

/* Records the hand-over, then commits: 0 when the target runs the guest. */
static int commit(struct outgoing *o, struct op_error *e)
{
	json_t *cfg = json_deep_copy(json_object_get(o->g, "config"));
	json_object_set_new(cfg, "migrating_to", json_string(o->n.name));
	/* Whether the disks went over (settle() removes them only then:
	 * shared, they are the target's very files). */
	json_object_set_new(cfg, "migrating_copied", json_boolean(o->copy_disk));
	store_guest_set_config(o->d->store, o->name, cfg);
	json_decref(cfg);
	store_guest_set_state(o->d->store, o->name, "migrated");
	job_progress(o->j, "committing", o->sent, o->sent);
	char path[128];
	bool transport = false;
	snprintf(path, sizeof(path), "/v1/migrations/%s/commit", o->name);
	json_t *body = mig_stats_export(o->d->store, o->name, kvzd_now_ms()), *ans = NULL;
	int rc = commit_call(o, path, body, &ans, &transport, e);
	json_decref(body);
	if (rc == 0) {
		o->h.committed = kvzd_now_ms();
		/* An older target does not say; a time beyond a day from ours
		 * is a broken or hostile one's (and would overflow below). */
		json_t *ran = json_object_get(ans, "running_ms");
		int64_t t = json_is_integer(ran) ? (int64_t)json_integer_value(ran) : 0;
		o->h.target_running = t > o->h.told - DAY_MS && t < o->h.told + DAY_MS ? t : 0;
		json_decref(ans);
		return 0;
	}
	if (!transport)
		return -1;
	/* The answer was lost: the target may run it or not. */
	for (int i = 0; i < SETTLE_TRIES; i++) {
		int has = target_has(&o->n, o->name, true);
		if (has >= 0)
			return has ? 0 : -1;
		sleep(SETTLE_PAUSE_S);
	}
	return 1;
}

static json_int_t since(int64_t from, int64_t t)
{
	return t ? (json_int_t)(t - from) : -1;
}

/* The job's result and a log line: the figures of the final line and the
 * hand-over's steps, in ms after the stream was done (target_running_ms
 * by the target's clock: beside this one's on one host, or as close as
 * the two hosts' clocks agree; -1 when the target did not say). */
static void report(struct outgoing *o, int64_t end, const char *disk)
{
	const struct handover *h = &o->h;
	json_int_t run = h->target_running ? (json_int_t)(h->target_running - h->completed) : -1;
	json_t *r = json_pack("{s:I, s:I, s:I, s:s, s:b, s:{s:I, s:I, s:I, s:I, s:I, s:I}}",
			      "total_ms", (json_int_t)(end - o->t_start), "downtime_ms",
			      (json_int_t)(o->live ? o->downtime_ms : o->running ? end - o->t_paused : 0),
			      "sent", (json_int_t)o->sent, "disk", disk, "live", o->live, "handover",
			      "completed_at_ms", (json_int_t)h->completed, "told_ms",
			      since(h->completed, h->told), "target_running_ms", run, "committed_ms",
			      since(h->completed, h->committed), "source_stopped_ms",
			      since(h->completed, h->source_stopped), "record_moved_ms",
			      since(h->completed, h->record_moved));
	job_set_result(o->j, r);
	json_decref(r);
	kvz_info("%s: hand-over to %s after the stream: target told +%lld ms, its guest running "
		 "%+lld ms (its clock), committed +%lld ms, source stopped +%lld ms, record moved "
		 "+%lld ms", o->name, o->n.name, (long long)since(h->completed, h->told),
		 (long long)run, (long long)since(h->completed, h->committed),
		 (long long)since(h->completed, h->source_stopped),
		 (long long)since(h->completed, h->record_moved));
}

static int migrate_run(struct kvzd *d, struct job *j, const char *guest, json_t *params,
		       struct op_error *e)
{
	struct outgoing o = {.d = d, .j = j, .name = guest, .sock = -1};
	char why[300];
	/* From the stream on, a failure may be the target's: it says why. */
	bool connected = false;
	o.t_start = kvzd_now_ms();
	o.g = guest_get_or_404(d, guest, e);
	if (!o.g)
		return -1;
	const char *state = cfg_str(o.g, "state");
	int rc = -1;
	json_t *ans = NULL, *req = NULL;
	o.running = !strcmp(state, "running");
	if (!strcmp(state, "paused")) {
		op_fail(e, 409, "guest %s is paused (%s): start it first", guest,
			cfg_str(o.g, "state_reason") ? cfg_str(o.g, "state_reason") : "no reason recorded");
		goto out;
	}
	if (!o.running && strcmp(state, "stopped") && strcmp(state, "crashed")) {
		op_fail(e, 409, "guest %s is %s; try again", guest, state);
		goto out;
	}
	if (node_lookup(d, json_string_value(json_object_get(params, "to")), &o.n, e))
		goto out;
	migration_dir(d, guest, o.dir, sizeof(o.dir));
	snprintf(o.state, sizeof(o.state), "%s/state", o.dir);
	o.params = params;
	o.live = o.running && !json_is_true(json_object_get(params, "offline"));
	if (!o.live && !guest_driver_of(o.g)->migrate_save) {
		op_fail(e, 409, "%s moves only live, while it runs (this kind has no offline migration)",
			guest);
		goto out;
	}
	job_progress(j, "reserving", 0, 0);
	char probe[MIG_PROOF_LEN + 32], probe_path[600];
	const char *disk = cfg_str(json_object_get(o.g, "config"), "disk_path");
	bool copy_storage = json_is_true(json_object_get(params, "copy_storage"));
	probe[0] = probe_path[0] = 0;
	char mine[400];
	guest_image_path(d, guest, mine, sizeof(mine));
	bool extras = vm_disks_count(json_object_get(o.g, "config")) > 1;
	if (disk && !copy_storage && (!strcmp(disk, mine) || extras))
		shared_probe_make(mine, probe, sizeof(probe), probe_path, sizeof(probe_path));
	req = reservation(d, o.g, o.running, o.live, copy_storage, probe, &o.disk_ours, e);
	int reserved = req ? peer(&o.n, "POST", "/v1/migrations", req, &ans, NULL, e) : -1;
	if (probe_path[0])
		unlink(probe_path);
	if (reserved)
		goto out;
	/* The mode the target chose ("auto"); an older target answers none. */
	const char *mode = json_string_value(json_object_get(ans, "disk"));
	if (!mode)
		mode = json_string_value(json_object_get(req, "disk"));
	o.copy_disk = !strcmp(mode, "copy");
	json_t *since = json_object_get(ans, "event_id");
	o.target_since = json_is_integer(since) && json_integer_value(since) > 0 ?
			 (int64_t)json_integer_value(since) : 0;
	json_t *port = json_object_get(ans, "port");
	const char *proof = json_string_value(json_object_get(ans, "proof"));
	if (!json_is_integer(port) || json_integer_value(port) <= 0 ||
	    json_integer_value(port) > 65535 || !proof || strlen(proof) != MIG_PROOF_LEN) {
		op_fail(e, 502, "node %s: a malformed reservation", o.n.name);
		goto discard;
	}
	o.sock = connect_port(&o.n, (int)json_integer_value(port), proof, e);
	if (o.sock < 0)
		goto discard;
	connected = true;
	if (o.live ? transfer_live(&o, e) : transfer(&o, e))
		goto discard;
	o.h.completed = kvzd_now_ms();
	if (job_cancelled(j)) {
		op_fail(e, 409, "cancelled");
		goto discard;
	}
	rc = commit(&o, e);
	if (rc == 1) {
		op_fail(e, 502, "node %s stopped answering during the commit: %s stays paused "
			"here until the node answers again and says which host runs it", o.n.name, guest);
		goto out;
	}
	if (rc == 0) {
		char detail[256], a[32];
		int64_t now = kvzd_now_ms();
		const char *disk_word = !strcmp(mode, "copy") ? "copied" :
					!strcmp(mode, "shared") || !strcmp(mode, "auto") ? "shared" : "none";
		snprintf(detail, sizeof(detail),
			 "to %s: total %lld ms, downtime %lld ms, sent %s (%llu bytes), disk %s", o.n.name,
			 (long long)(now - o.t_start),
			 (long long)(o.live ? o.downtime_ms : o.running ? now - o.t_paused : 0),
			 kvz_format_size(o.sent, a, sizeof(a)), (unsigned long long)o.sent, disk_word);
		forget(d, o.g, o.copy_disk, o.disk_ours, o.n.name, detail, &o.h);
		report(&o, now, disk_word);
		goto out;
	}
discard:
	if (discard_and_take_back(d, &o.n, o.g, o.running, why, sizeof(why))) {
		char first[sizeof(e->msg)];
		snprintf(first, sizeof(first), "%s", e->msg);
		op_fail(e, e->status, "%s; %s did not run on here: %s", first, guest, why);
	}
	/* Last: the target's side may be the cause or a consequence (a
	 * stream the source broke off is "truncated" there). */
	if (connected)
		append_target_reason(&o.n, guest, o.target_since, e);
	store_event_add(d->store, guest, "migration-failed", e->msg);
	rc = -1;
out:
	if (o.sock >= 0)
		close(o.sock);
	json_decref(req);
	json_decref(ans);
	json_decref(o.g);
	return rc;
}

/* ---- recovery ---- */

/* A migrate job a killed kvzd left running: unless the guest was already
 * handed over ("migrated": migration_recover() settles those), the target
 * discards and the guest runs on here. */
static void migrate_recover(struct kvzd *d, json_t *job)
{
	const char *guest = json_string_value(json_object_get(job, "guest"));
	const char *to = json_string_value(json_object_get(json_object_get(job, "params"), "to"));
	json_t *g = guest ? store_guest_get(d->store, guest) : NULL;
	struct node n;
	struct op_error e;
	char why[300];   /* logged by the driver */
	if (g && !guest_migrating(g)) {
		bool running = !strcmp(cfg_str(g, "state"), "running");
		if (to && node_lookup(d, to, &n, &e) == 0)
			discard_and_take_back(d, &n, g, running, why, sizeof(why));
		else
			take_back(d, g, running, why, sizeof(why));
	}
	json_decref(g);
}

const struct job_kind migrate_job = {
	.type = "migrate",
	.run = migrate_run,
	.recover = migrate_recover,
};

/* A guest handed over whose commit went unanswered (kvzd restarted, or
 * the target unreachable through every settle try): the target decides. */
static void settle(struct kvzd *d, json_t *g, const char *how)
{
	const char *name = cfg_str(g, "name");
	const char *to = cfg_str(json_object_get(g, "config"), "migrating_to");
	struct node n;
	struct op_error e;
	char mine[400];
	guest_image_path(d, name, mine, sizeof(mine));
	const char *disk = cfg_str(json_object_get(g, "config"), "disk_path");
	bool ours = disk && !strcmp(disk, mine);
	/* A record from before "migrating_copied": copied when disk 0 is
	 * kvzd's own, as then. */
	json_t *copied = json_object_get(json_object_get(g, "config"), "migrating_copied");
	bool copy = copied ? json_is_true(copied) : ours;
	bool runs_here = guest_supervisor_runs(g);
	int has = to && node_lookup(d, to, &n, &e) == 0 ? target_has(&n, name, false) : -1;
	if (has == 1) {
		char detail[200];
		snprintf(detail, sizeof(detail), "the target runs it (%s)", how);
		forget(d, g, copy, ours, to, detail, NULL);
	} else if (has == 0) {
		char why[300], detail[400];
		int rc = discard_and_take_back(d, &n, g, runs_here, why, sizeof(why));
		snprintf(detail, sizeof(detail), "the target does not run it (%s)%s%s", how,
			 rc ? "; it did not run on here: " : "", rc ? why : "");
		store_event_add(d->store, name, "migration-failed", detail);
	} else {
		kvz_warn("%s: handed over to %s, which does not answer: left paused until it does",
			 name, to ? to : "?");
	}
}

/* Whether a job of guest's is queued or running (a migrate job in its
 * commit holds a "migrated" record that is its own to settle). */
static bool job_pending(struct kvzd *d, const char *guest)
{
	json_t *jobs = store_jobs_unfinished(d->store);
	size_t i;
	json_t *j;
	bool found = false;
	json_array_foreach(jobs, i, j)
		found = found || !strcmp(cfg_str(j, "guest"), guest);
	json_decref(jobs);
	return found;
}

void migration_settle_with(struct kvzd *d, const char *node)
{
	json_t *list = store_guest_list(d->store);
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g) {
		const char *name = cfg_str(g, "name");
		const char *to = cfg_str(json_object_get(g, "config"), "migrating_to");
		if (strcmp(cfg_str(g, "state"), "migrated") || !to || strcmp(to, node) ||
		    job_pending(d, name))
			continue;
		guest_lock(d, name);
		/* Again under the lock: a start, or another round, was first. */
		json_t *now = store_guest_get(d->store, name);
		if (now && !strcmp(cfg_str(now, "state"), "migrated") && !job_pending(d, name))
			settle(d, now, "settled once the target answered");
		json_decref(now);
		guest_unlock(d, name);
	}
	json_decref(list);
}

void migration_recover_incoming(struct kvzd *d);

void migration_recover(struct kvzd *d)
{
	migration_recover_incoming(d);
	json_t *list = store_guest_list(d->store);
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g)
		if (!strcmp(cfg_str(g, "state"), "migrated"))
			settle(d, g, "settled after a kvzd restart");
	json_decref(list);
}

/* ---- submitting ---- */

json_t *migration_start(struct kvzd *d, const char *guest, json_t *req, struct op_error *e)
{
	const char *to = json_string_value(json_object_get(req, "to"));
	json_t *off = json_object_get(req, "offline");
	if (!json_is_object(req) || !to || (off && !json_is_boolean(off))) {
		op_fail(e, 400, "migrate takes {\"to\": NODE, \"offline\": BOOL, \"downtime_ms\": MS, "
			"\"max_bandwidth\": BYTES_PER_S, \"copy_storage\": BOOL}");
		return NULL;
	}
	json_t *dl = json_object_get(req, "downtime_ms"), *bw = json_object_get(req, "max_bandwidth");
	json_t *pre = json_object_get(req, "pre_dumps"), *cs = json_object_get(req, "copy_storage");
	if (cs && !json_is_boolean(cs)) {
		op_fail(e, 400, "copy_storage is a boolean");
		return NULL;
	}
	if ((dl && (!json_is_integer(dl) || json_integer_value(dl) < 1)) ||
	    (bw && (!json_is_integer(bw) || json_integer_value(bw) < 1))) {
		op_fail(e, 400, "downtime_ms and max_bandwidth are positive integers");
		return NULL;
	}
	if (pre && (!json_is_integer(pre) || json_integer_value(pre) < 0 ||
		    json_integer_value(pre) > 10)) {
		op_fail(e, 400, "pre_dumps (a container's memory copies before the final dump) is 0..10");
		return NULL;
	}
	if (json_is_true(off) && (dl || bw || pre)) {
		op_fail(e, 400, "downtime and bandwidth limits are for live migration, not offline");
		return NULL;
	}
	struct node n;
	if (node_lookup(d, to, &n, e))
		return NULL;
	json_t *g = guest_get_or_404(d, guest, e);
	if (!g)
		return NULL;
	const char *why = guest_driver_of(g)->no_migration;
	bool has_disk = cfg_str(json_object_get(g, "config"), "disk_path") != NULL;
	json_decref(g);
	if (why) {
		op_fail(e, 409, "%s: %s", guest, why);
		return NULL;
	}
	if (json_is_true(cs) && !has_disk) {
		op_fail(e, 400, "%s has no disk to copy (copy_storage)", guest);
		return NULL;
	}
	json_t *params = json_pack("{s:s, s:b}", "to", to, "offline", json_is_true(off));
	if (dl)
		json_object_set(params, "downtime_ms", dl);
	if (bw)
		json_object_set(params, "max_bandwidth", bw);
	if (pre)
		json_object_set(params, "pre_dumps", pre);
	if (json_is_true(cs))
		json_object_set_new(params, "copy_storage", json_true());
	json_t *job = job_submit(d, &migrate_job, guest, params, e);
	json_decref(params);
	return job;
}
