/* What policy rules do to guests (policy_engine.h): each action goes through
 * the same guest operations as the API, so locks, checks and events are the
 * API's. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "guest_config.h"
#include "guest_ops.h"
#include "log.h"
#include "policy_engine.h"
#include "backups.h"
#include "policy_hooks.h"
#include "policy_migrate.h"
#include "policy_retention.h"
#include "snapshots.h"
#include "store.h"

static int done(char *res, size_t len, const char *fmt, const char *arg)
{
	snprintf(res, len, fmt, arg);
	return 0;
}

static int failed(char *res, size_t len, const struct op_error *e)
{
	snprintf(res, len, "%s", e->msg);
	return -1;
}

static int act_restart(struct kvzd *d, const char *guest, json_t *g, char *res, size_t len)
{
	struct op_error e;
	if (!strcmp(cfg_str(g, "state"), "running") && guest_stop(d, guest, 30, false, &e))
		return failed(res, len, &e);
	if (guest_start(d, guest, &e))
		return failed(res, len, &e);
	return done(res, len, "%s started", guest);
}

static int set_field(struct kvzd *d, const char *guest, json_t *req, char *res, size_t len)
{
	struct op_error e;
	char *what = json_dumps(req, JSON_COMPACT);
	int rc = guest_set(d, guest, req, &e);
	if (rc)
		failed(res, len, &e);
	else
		snprintf(res, len, "set %s", what ? what : "");
	free(what);
	json_decref(req);
	return rc;
}

static int act_set_cpus(struct kvzd *d, const struct policy_rule *r, const char *guest,
			json_t *cfg, char *res, size_t len)
{
	double cur = json_number_value(json_object_get(cfg, "cpus"));
	double want = fmin(fmax(cur + r->cpus_delta, r->cpus_min), r->cpus_max);
	if (cur <= 0) {
		snprintf(res, len, "%s has no CPU limit to change", guest);
		return -1;
	}
	if (want == cur) {
		snprintf(res, len, "cpus already %g (bounds %d..%d)", cur, r->cpus_min, r->cpus_max);
		return 0;
	}
	return set_field(d, guest, json_pack("{s:f}", "cpus", want), res, len);
}

/* The soft limit moves step_pct of the hard limit toward it. */
static int act_raise_memory(struct kvzd *d, const struct policy_rule *r, const char *guest,
			    json_t *cfg, char *res, size_t len)
{
	json_int_t soft = json_integer_value(json_object_get(cfg, "memory_soft"));
	json_int_t hard = json_integer_value(json_object_get(cfg, "memory_hard"));
	if (hard <= 0 || soft >= hard) {
		snprintf(res, len, "soft memory limit already at the hard limit");
		return 0;
	}
	json_int_t want = soft + hard / 100 * r->step_pct;
	if (want > hard)
		want = hard;
	char v[64];
	snprintf(v, sizeof(v), "%lld:%lld", (long long)want, (long long)hard);
	return set_field(d, guest, json_pack("{s:s}", "memory", v), res, len);
}

/* Asks the balloon for step_pct less than the VM's current target. */
static int act_balloon(struct kvzd *d, const struct policy_rule *r, const char *guest,
		       json_t *cfg, char *res, size_t len)
{
	json_int_t cur = json_integer_value(json_object_get(cfg, "memory_target"));
	if (cur <= 0)
		cur = json_integer_value(json_object_get(cfg, "memory"));
	json_int_t want = cur - cur / 100 * r->step_pct;
	if (want < (16 << 20)) {
		snprintf(res, len, "memory target already at the 16M floor");
		return 0;
	}
	return set_field(d, guest, json_pack("{s:I}", "memory", want), res, len);
}

/* A snapshot job, then the snapshots beyond the retention (keep_last,
 * keep_daily) are removed. The job runs on: retention counts the
 * snapshots that exist now plus the one being taken (an entry without a
 * name, created now). */
static int act_snapshot(struct kvzd *d, const struct policy_rule *r, const char *guest,
			char *res, size_t len)
{
	struct op_error e;
	json_t *job = snapshot_create(d, guest, NULL, &e);
	if (!job)
		return failed(res, len, &e);
	long long id = (long long)json_integer_value(json_object_get(job, "id"));
	json_decref(job);
	json_t *snaps = store_snapshot_list(d->store, guest);
	int64_t now = kvzd_now_ms();
	json_array_append_new(snaps, json_pack("{s:s, s:I}", "name", "", "created_ms",
					       (json_int_t)now));
	json_t *drop = policy_retention_drop(snaps, r->keep_last, r->keep_daily, now);
	int removed = 0;
	size_t i;
	json_t *n;
	json_array_foreach(drop, i, n) {
		const char *name = json_string_value(n);
		if (!*name)
			continue;
		if (!snapshot_delete(d, guest, name, &e))
			removed++;
		else
			kvz_warn("policy %s: cannot remove snapshot %s of %s: %s", r->name, name,
				 guest, e.msg);
	}
	json_decref(drop);
	json_decref(snaps);
	snprintf(res, len, "snapshot job %lld; %d old snapshot(s) removed (keep %d, daily %d)", id,
		 removed, r->keep_last, r->keep_daily);
	return 0;
}

/* A backup job that applies the retention itself once the backup is
 * complete (backups.h), so that a failed backup removes nothing. */
static int act_backup(struct kvzd *d, const struct policy_rule *r, const char *guest,
		      char *res, size_t len)
{
	struct op_error e;
	json_t *job = backup_create_kept(d, guest, r->keep_last, r->keep_daily, &e);
	if (!job)
		return failed(res, len, &e);
	snprintf(res, len, "backup job %lld (keep %d, daily %d)",
		 (long long)json_integer_value(json_object_get(job, "id")), r->keep_last,
		 r->keep_daily);
	json_decref(job);
	return 0;
}

int policy_describe(struct kvzd *d, const struct policy_rule *r, const char *guest, char *out,
		    size_t len)
{
	out[0] = 0;
	switch (r->action) {
	case ACT_MIGRATE: return policy_migrate(d, guest, false, out, len);
	case ACT_WEBHOOK: snprintf(out, len, "POST %s", r->url); return 0;
	case ACT_COMMAND: snprintf(out, len, "run %s", r->argv[0]); return 0;
	default: return 0;
	}
}

bool policy_action_on_owner(enum policy_action a)
{
	return a != ACT_NOTIFY && a != ACT_WEBHOOK && a != ACT_COMMAND;
}

int policy_act(struct kvzd *d, const struct policy_rule *r, const char *guest,
	       const char *reason, char *res, size_t len)
{
	switch (r->action) {
	case ACT_NOTIFY:
		kvz_info("policy %s: %s: %s", r->name, guest, r->message);
		store_event_add(d->store, guest, "policy-notify", r->message);
		return done(res, len, "notified: %s", r->message);
	case ACT_WEBHOOK:
		return policy_webhook(r, guest, reason, kvzd_now_ms(), res, len);
	case ACT_COMMAND:
		return policy_command(r, guest, reason, res, len);
	case ACT_MIGRATE:
		return policy_migrate(d, guest, true, res, len);
	default:
		break;
	}
	struct op_error e;
	json_t *g = guest_get_or_404(d, guest, &e);
	if (!g)
		return failed(res, len, &e);
	json_t *cfg = json_object_get(g, "config");
	int rc;
	switch (r->action) {
	case ACT_RESTART: rc = act_restart(d, guest, g, res, len); break;
	case ACT_SET_CPUS: rc = act_set_cpus(d, r, guest, cfg, res, len); break;
	case ACT_RAISE_MEMORY: rc = act_raise_memory(d, r, guest, cfg, res, len); break;
	case ACT_BALLOON: rc = act_balloon(d, r, guest, cfg, res, len); break;
	case ACT_SNAPSHOT: rc = act_snapshot(d, r, guest, res, len); break;
	case ACT_BACKUP: rc = act_backup(d, r, guest, res, len); break;
	case ACT_STOP:
		rc = guest_stop(d, guest, 30, false, &e) ? failed(res, len, &e)
							  : done(res, len, "%s stopped", guest);
		break;
	default:
		snprintf(res, len, "%s: not an action on a guest", policy_action_name(r->action));
		rc = -1;
	}
	json_decref(g);
	return rc;
}
