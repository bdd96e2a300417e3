/* The VM's part of a migration (guest_driver.h migrate_*): the machine
 * state saved by kvz-vmm into a file (vm_state.h), and the target's
 * kvz-vmm started with --incoming file:. */
#include <stdio.h>
#include <string.h>

#include "guest_config.h"
#include "guest_driver.h"
#include "guest_ops.h"
#include "migration.h"
#include "mono_clock.h"
#include "qmp_client.h"
#include "vm_state.h"

#define QMP_TIMEOUT_MS 5000

int vm_migrate_save(struct kvzd *d, struct job *j, json_t *g, const char *path,
			   struct op_error *e)
{
	(void)d;
	const char *name = cfg_str(g, "name");
	struct qmp_client *c = guest_qmp_open(name, cfg_str(g, "qmp"), e);
	if (!c)
		return -1;
	int rc = vm_state_save(j, "saving state", name, c, path, e);
	qmp_client_close(c);
	return rc;
}

int vm_migrate_resume(struct kvzd *d, json_t *g, char *err, size_t errlen)
{
	(void)d;
	return vm_state_cancel_and_resume(cfg_str(g, "name"), cfg_str(g, "qmp"), err, errlen);
}

int vm_migrate_start(struct kvzd *d, json_t *g, const char *path, struct op_error *e)
{
	char uri[500];
	snprintf(uri, sizeof(uri), "file:%s", path);
	const char *extra[] = {"--incoming", uri, NULL};
	return guest_start_locked(d, g, extra, e);
}

/* ---- live: getfd + migrate fd:mig / migrate-incoming fd:mig ---- */

#define POLL_MS 100
/* Between looks at kvz-vmm and the source while migrate-incoming runs. */
#define ANSWER_SLICE_MS 1000

static void drain(struct qmp_client *c)
{
	json_t *ev;
	while ((ev = qmp_client_next_event(c, 0)))
		json_decref(ev);
}

/* Until kvz-vmm's next event (a MIGRATION status change: completed is
 * seen at once, not up to a poll interval late), at most POLL_MS. */
static void wait_event(struct qmp_client *c)
{
	json_decref(qmp_client_next_event(c, POLL_MS));
}

/* migrate-set-parameters from the job's params, when any. */
static int set_limits(struct qmp_client *c, const char *name, json_t *params,
		      struct op_error *e)
{
	json_t *args = json_object();
	json_t *dl = json_object_get(params, "downtime_ms");
	json_t *bw = json_object_get(params, "max_bandwidth");
	if (dl)
		json_object_set(args, "downtime-limit", dl);
	if (bw)
		json_object_set(args, "max-bandwidth", bw);
	char err[300];
	int rc = json_object_size(args) ? qmp_client_execute(c, "migrate-set-parameters", args,
							      NULL, NULL, 0, err, sizeof(err))
					: 0;
	json_decref(args);
	return rc ? op_fail(e, 409, "%s: migrate-set-parameters: %s", name, err) : 0;
}

/* The phase a query-migrate answer shows, for the progress bar. Copying
 * the disk, the first pass is the disk's bulk copy. */
static void live_phase(json_t *r, char *buf, size_t len)
{
	const char *st = cfg_str(r, "status");
	json_t *ram = json_object_get(r, "ram");
	long long pass = json_integer_value(json_object_get(ram, "dirty-sync-count")) + 1;
	bool disk = json_object_get(r, "disk") != NULL;
	if (st && !strcmp(st, "active"))
		snprintf(buf, len, "pre-copy pass %lld%s", pass,
			 !disk ? "" : pass == 1 ? ", copying the disk" : ", RAM and disk");
	else if (st && !strcmp(st, "device"))
		snprintf(buf, len, "stop-and-copy");
	else
		snprintf(buf, len, "%s", st ? st : "setup");
}

static int follow_send(struct job *j, const char *name, struct qmp_client *c,
		       int64_t *downtime_ms, uint64_t *sent, struct op_error *e)
{
	char err[300], phase[64];
	for (;;) {
		json_t *r = NULL;
		drain(c);
		if (job_cancelled(j)) {
			vm_state_cancel(c, name);
			return op_fail(e, 409, "cancelled");
		}
		if (qmp_client_execute(c, "query-migrate", NULL, &r, NULL, 0, err, sizeof(err)))
			return op_fail(e, 502, "%s: query-migrate: %s", name, err);
		const char *st = cfg_str(r, "status");
		json_t *ram = json_object_get(r, "ram");
		uint64_t done = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
		uint64_t total = (uint64_t)json_integer_value(json_object_get(ram, "total"));
		live_phase(r, phase, sizeof(phase));
		job_progress(j, phase, done, total);
		int rc = 1;
		if (st && !strcmp(st, "completed")) {
			*downtime_ms = json_integer_value(json_object_get(r, "downtime"));
			*sent = done;
			rc = 0;
		} else if (!st || !strcmp(st, "failed") || !strcmp(st, "cancelled")) {
			const char *why = cfg_str(r, "error-desc");
			rc = op_fail(e, 502, "%s: the migration %s: %s", name, st ? st : "ended",
				     why ? why : "kvz-vmm gave no reason");
		}
		json_decref(r);
		if (rc <= 0)
			return rc;
		wait_event(c);
	}
}

int vm_migrate_send(struct kvzd *d, struct job *j, json_t *g, int sock, json_t *params,
		    int64_t *downtime_ms, uint64_t *sent, struct op_error *e)
{
	(void)d;
	const char *name = cfg_str(g, "name");
	char err[300];
	struct qmp_client *c = guest_qmp_open(name, cfg_str(g, "qmp"), e);
	if (!c)
		return -1;
	int rc = set_limits(c, name, params, e);
	if (rc == 0 && qmp_client_getfd(c, "mig", sock, err, sizeof(err)))
		rc = op_fail(e, 502, "%s: getfd: %s", name, err);
	/* blk: the disk travels in the stream (no shared storage). */
	json_t *args = json_pack("{s:s, s:b}", "uri", "fd:mig", "blk",
				 json_is_true(json_object_get(params, "blk")));
	if (rc == 0 && qmp_client_execute(c, "migrate", args, NULL, NULL, 0, err, sizeof(err)))
		rc = op_fail(e, 409, "%s: migrate: %s", name, err);
	json_decref(args);
	if (rc == 0)
		rc = follow_send(j, name, c, downtime_ms, sent, e);
	qmp_client_close(c);
	return rc;
}

int vm_migrate_listen(struct kvzd *d, json_t *g, struct op_error *e)
{
	const char *extra[] = {"--incoming", "defer", NULL};
	return guest_start_locked(d, g, extra, e);
}

/* A failed step of the hand-over, with what kvz-vmm's log ends with (a
 * bad stream ends it with one line there): "NAME: STEP: ERR (its log
 * ends: ...)". */
static void receive_failed(struct kvzd *d, const char *name, const char *step, char *err,
			   size_t errlen)
{
	char why[300], tail[320];
	snprintf(why, sizeof(why), "%s", err);
	guest_log_tail(d, name, tail, sizeof(tail));
	snprintf(err, errlen, "%s: %s: %s%s%s%s", name, step, why, tail[0] ? " (its log ends: " : "",
		 tail, tail[0] ? ")" : "");
}

/* migrate-incoming, waiting for its answer as long as kvz-vmm lives, the
 * source has not discarded (its job failed or was cancelled) and
 * MIG_LIVE_TARGET_LIMIT_S has not passed: a loaded host answers late, and
 * a slow answer is no reason to throw a healthy stream away. 0, -1 with
 * err, or -2 when discarded meanwhile (err "discarded: " and why, which
 * the receiver keeps as the reason the source is told). */
static int incoming_answer(json_t *g, struct qmp_client *c, bool (*stopped)(void *), void *arg,
			   char *err, size_t errlen)
{
	json_t *args = json_pack("{s:s}", "uri", "fd:mig");
	int rc = qmp_client_send(c, "migrate-incoming", args, err, errlen) ? -1 : 0;
	json_decref(args);
	int64_t start = kvz_mono_ms();
	while (rc == 0) {
		rc = qmp_client_reply(c, ANSWER_SLICE_MS, NULL, NULL, 0, err, errlen);
		if (rc != QMP_CLIENT_PENDING)
			return rc ? -1 : 0;
		long long waited = (long long)(kvz_mono_ms() - start) / 1000;
		if (stopped(arg)) {
			snprintf(err, errlen, "discarded: %s: migrate-incoming: no answer from kvz-vmm "
				 "in %lld s", cfg_str(g, "name"), waited);
			return -2;
		}
		if (!guest_supervisor_runs(g)) {
			snprintf(err, errlen, "kvz-vmm ended after %lld s without an answer", waited);
			return -1;
		}
		if (waited >= MIG_LIVE_TARGET_LIMIT_S) {
			snprintf(err, errlen, "no answer from kvz-vmm in %lld s", waited);
			return -1;
		}
		rc = 0;
	}
	return -1;
}

int vm_migrate_receive(struct kvzd *d, json_t *g, int sock, bool (*stopped)(void *), void *arg,
		       char *err, size_t errlen)
{
	const char *name = cfg_str(g, "name");
	const char *step = "connecting to kvz-vmm's QMP";
	struct qmp_client *c = qmp_client_connect(cfg_str(g, "qmp"), QMP_TIMEOUT_MS, err, errlen);
	int rc = c ? 0 : -1;
	if (rc == 0) {
		step = "getfd";
		rc = qmp_client_getfd(c, "mig", sock, err, errlen) ? -1 : 0;
	}
	if (rc == 0) {
		step = "migrate-incoming";
		rc = incoming_answer(g, c, stopped, arg, err, errlen);
	}
	/* Until the stream is loaded; kvz-vmm ends on a bad one (the QMP
	 * connection breaks). */
	while (rc == 0) {
		json_t *r = NULL;
		drain(c);
		if (stopped(arg)) {
			snprintf(err, errlen, "discarded");
			rc = -2;
			break;
		}
		step = "loading the stream (query-migrate)";
		if (qmp_client_execute(c, "query-migrate", NULL, &r, NULL, 0, err, errlen)) {
			rc = -1;
			break;
		}
		const char *st = cfg_str(r, "status");
		bool done = st && !strcmp(st, "completed");
		if (st && (!strcmp(st, "failed") || !strcmp(st, "cancelled"))) {
			snprintf(err, errlen, "the incoming migration %s", st);
			rc = -1;
		}
		json_decref(r);
		if (done)
			break;
		if (rc == 0)
			wait_event(c);
	}
	if (c)
		qmp_client_close(c);
	if (rc == -1)
		receive_failed(d, name, step, err, errlen);
	else if (rc == -2 && !strncmp(err, "discarded: ", 11)) {
		/* Why kvz-vmm kept the stream waiting, with its log's end. */
		char why[400], tail[320];
		snprintf(why, sizeof(why), "%s", err);
		guest_log_tail(d, name, tail, sizeof(tail));
		snprintf(err, errlen, "%s%s%s%s", why, tail[0] ? " (its log ends: " : "", tail,
			 tail[0] ? ")" : "");
	}
	return rc ? -1 : 0;
}
