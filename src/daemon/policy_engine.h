/* kvzd's policy engine (docs/policy.md): one thread that evaluates the
 * enabled rules every second (policy_eval.h) against the monitor's latest
 * samples, the event table and the guest list, and carries out actions
 * (policy_actions.c). In cluster mode (docs/cluster.md) only the rules'
 * leader evaluates, with the cluster's rules, guests and events, and sends
 * a guest's action to its owner. */
#ifndef KVZD_POLICY_ENGINE_H
#define KVZD_POLICY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kvzd.h"
#include "policy_rules.h"

/* The pseudo-guest that events about rules (added, removed, enabled,
 * disabled) are recorded under, like nodes.h's "@nodes". */
#define POLICY_EVENTS "@policies"

/* cap: actions carried out per minute over all rules (0: none). */
int policy_engine_start(struct kvzd *d, int cap, char *err, size_t errlen);
void policy_engine_stop(void);
/* The rules changed in the store: read them again before the next tick. */
void policy_engine_reload(struct kvzd *d);
/* A dry run at at_ms (0: now): array of {rule, guest, action, level,
 * trigger, reason, would}. */
json_t *policy_engine_plan(struct kvzd *d, int64_t at_ms);
/* Carry out (approve) or drop (reject) a proposal of a suggest rule: 0, or
 * an HTTP status with err. */
int policy_engine_approve(struct kvzd *d, int64_t id, const char *who, char *err, size_t len);
int policy_engine_reject(struct kvzd *d, int64_t id, const char *who, char *err, size_t len);

/* Metric m of guest (NULL: the host) from this host's monitor and samples:
 * 0 with *out, or -1 when there is no fresh value. */
int policy_local_metric(struct kvzd *d, const char *guest, enum policy_metric m, double *out);

/* policy_actions.c: carries out r's action on guest (reason: the trigger
 * that fired); 0 or -1, one line of what happened in res. */
int policy_act(struct kvzd *d, const struct policy_rule *r, const char *guest,
	       const char *reason, char *res, size_t len);
/* Whether action a works on a guest (carried out on the guest's node in
 * cluster mode) rather than beside it (notify, webhook, command: on the
 * node that runs the rules). */
bool policy_action_on_owner(enum policy_action a);

/* For plans: what r's action would do on guest now, in out (empty when
 * there is nothing to add); -1 when it could not act (out says why). */
int policy_describe(struct kvzd *d, const struct policy_rule *r, const char *guest, char *out,
		    size_t len);

#endif
