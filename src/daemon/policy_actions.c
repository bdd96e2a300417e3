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

/* A snapshot job, then the oldest snapshots beyond keep_last are removed.
 * The job runs on: retention counts the snapshots that exist now. */
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
	int extra = (int)json_array_size(snaps) - (r->keep_last - 1);
	int removed = 0;
	for (int i = 0; i < extra; i++) {
		const char *name = json_string_value(json_object_get(json_array_get(snaps, (size_t)i),
								     "name"));
		if (name && !snapshot_delete(d, guest, name, &e))
			removed++;
		else if (name)
			kvz_warn("policy %s: cannot remove snapshot %s of %s: %s", r->name, name,
				 guest, e.msg);
	}
	json_decref(snaps);
	snprintf(res, len, "snapshot job %lld; %d old snapshot(s) removed (keep %d)", id, removed,
		 r->keep_last);
	return 0;
}

int policy_act(struct kvzd *d, const struct policy_rule *r, const char *guest, char *res,
	       size_t len)
{
	if (r->action == ACT_NOTIFY) {
		kvz_info("policy %s: %s: %s", r->name, guest, r->message);
		store_event_add(d->store, guest, "policy-notify", r->message);
		return done(res, len, "notified: %s", r->message);
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
	case ACT_STOP:
		rc = guest_stop(d, guest, 30, false, &e) ? failed(res, len, &e)
							  : done(res, len, "%s stopped", guest);
		break;
	default:
		snprintf(res, len, "unavailable: kvzd has no live migration");
		rc = -1;
	}
	json_decref(g);
	return rc;
}
