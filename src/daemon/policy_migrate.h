/* The policy action `migrate`: the guest goes to the least-loaded node of
 * the registry (nodes.h) on which its memory fits. */
#ifndef KVZD_POLICY_MIGRATE_H
#define KVZD_POLICY_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "kvzd.h"

/* Picks the node for guest (0 with the plan in out) and with act submits
 * the migration job. */
int policy_migrate(struct kvzd *d, const char *guest, bool act, char *out, size_t len);

#endif
