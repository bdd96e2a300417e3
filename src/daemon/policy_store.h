/* Where policy rules are kept: kvzd's SQLite store on a single host, etcd
 * in cluster mode (cluster_policies.c), behind one interface for the API
 * and the engine. A change goes between policy_store_begin and
 * policy_store_end: begin reads the rules the change is checked against,
 * and the change is made only if they are still the rules then (one
 * process lock on a single host; etcd's compare across the cluster). */
#ifndef KVZD_POLICY_STORE_H
#define KVZD_POLICY_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "guest_ops.h"
#include "kvzd.h"

struct policy_txn {
	bool cluster;
	int64_t rev;      /* cluster: the revision the rules were read at */
	json_t *rules;    /* the rules as begin read them */
};

/* Every rule, by name ({name, rule, enabled, created_ms, updated_ms}), or
 * NULL with e when they cannot be read (cluster mode without etcd). */
json_t *policy_store_list(struct kvzd *d, struct op_error *e);
/* Rule name or NULL (none, or it cannot be read). */
json_t *policy_store_get(struct kvzd *d, const char *name);

/* 0, or -1 with e; on 0 the caller must call policy_store_end. */
int policy_store_begin(struct kvzd *d, struct policy_txn *t, struct op_error *e);
/* The rule called name in t's list (borrowed), or NULL. */
json_t *policy_txn_find(struct policy_txn *t, const char *name);
/* Each: 0, or -1 with e (404 no such rule, 409 it exists or the rules
 * changed meanwhile, 500/503 the store failed). */
int policy_store_insert(struct kvzd *d, struct policy_txn *t, const char *name, json_t *rule,
			struct op_error *e);
int policy_store_enable(struct kvzd *d, struct policy_txn *t, const char *name, bool on,
			struct op_error *e);
int policy_store_delete(struct kvzd *d, struct policy_txn *t, const char *name,
			struct op_error *e);
void policy_store_end(struct policy_txn *t);

#endif
