/* Policy actions that reach outside kvzd (policy_hooks.c): webhook and
 * command. */
#ifndef KVZD_POLICY_HOOKS_H
#define KVZD_POLICY_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "policy_rules.h"

/* POSTs {rule, guest, action, trigger (reason), ts_ms} to r->url within
 * r->timeout_s, following no redirect: 0 for a 2xx answer, else -1; the
 * status or the error in res. */
int policy_webhook(const struct policy_rule *r, const char *guest, const char *reason,
		   int64_t now_ms, char *res, size_t len);
/* Runs r->argv (no shell) with only PATH, LANG, KVZ_GUEST, KVZ_RULE and
 * KVZ_TRIGGER in its environment, killed (its process group) after
 * r->timeout_s: 0 when it exited 0, else -1; its exit status and last
 * output line in res. */
int policy_command(const struct policy_rule *r, const char *guest, const char *reason,
		   char *res, size_t len);

#endif
