/* The policy engine's decisions (policy_triggers.c), apart from the daemon:
 * everything it reads and does goes through struct policy_env, so that unit
 * tests drive it with a fake clock, fake metrics and fake actions. Not
 * thread-safe: the engine (policy_engine.c) holds its lock around calls. */
#ifndef KVZD_POLICY_EVAL_H
#define KVZD_POLICY_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "policy_rules.h"

/* The name a host-wide rule (host_cpu_pct without guest conditions,
 * peer_unreachable) acts under in records. */
#define POLICY_HOST "@host"
/* The event type nodes.c records when a node fails its health check,
 * detail "NODE N" (N failed checks in a row). */
#define POLICY_PEER_EVENT "node-unreachable"

struct policy_env {
	void *ctx;
	int64_t (*now_ms)(void *ctx);
	/* New reference: array of guests {name, type, state, tags (array,
	 * optional)}, ordered by name. */
	json_t *(*guests)(void *ctx);
	/* The latest value of metric m of guest (NULL: the host); 0, or -1
	 * when there is none. */
	int (*metric)(void *ctx, const char *guest, enum policy_metric m, double *out);
	/* The id of the newest event (where reading starts), and the events
	 * after since as an array of {id, guest, type, detail}. */
	int64_t (*event_cursor)(void *ctx);
	json_t *(*events)(void *ctx, int64_t since);
	/* Carries out r's action on guest (reason: what fired it); 0, or -1;
	 * either way one line of what happened in result. */
	int (*act)(void *ctx, const struct policy_rule *r, const char *guest, const char *reason,
		   char *result, size_t len);
	/* Optional (NULL: none). Why metric m cannot be had on this host
	 * (e.g. no PSI on cgroup v1), or NULL when it can. */
	const char *(*metric_missing)(void *ctx, enum policy_metric m);
	/* Optional. For plans: what r's action would do on guest now (migrate:
	 * the node it would choose and why) in out; 0, or -1 when it could not
	 * act (out says why). */
	int (*describe)(void *ctx, const struct policy_rule *r, const char *guest, char *out,
			size_t len);
	/* Records a decision in the audit trail (state: planned, proposed,
	 * done, failed, skipped). */
	void (*record)(void *ctx, const struct policy_rule *r, const char *guest,
		       const char *state, const char *reason, const char *result);
};

struct policy_eval;

/* cap: actions carried out per minute across all rules (0: no cap). */
struct policy_eval *policy_eval_new(int cap);
void policy_eval_free(struct policy_eval *e);
/* Replaces the rule set; a rule whose definition is unchanged keeps its
 * state (cooldowns, windows, counts). 0 or -1 (out of memory). */
int policy_eval_set_rules(struct policy_eval *e, const struct policy_rule *rules, int n);
/* One evaluation at env->now_ms(): fires what is due. */
void policy_eval_tick(struct policy_eval *e, const struct policy_env *env);
/* What a tick at at_ms (0: now) would do and why, changing nothing: an
 * array of {rule, guest, action, level, trigger, reason, would}. */
json_t *policy_eval_plan(struct policy_eval *e, const struct policy_env *env, int64_t at_ms);
/* The rule called name, or NULL. */
const struct policy_rule *policy_eval_rule(struct policy_eval *e, const char *name);

#endif
