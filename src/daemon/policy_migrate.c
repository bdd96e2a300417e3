#include "policy_migrate.h"

#include <stdio.h>
#include <string.h>

#include "guest_driver.h"
#include "migration.h"
#include "nodes.h"
#include "policy_placement.h"
#include "store.h"

int policy_migrate(struct kvzd *d, const char *guest, bool act, char *out, size_t len)
{
	json_t *g = store_guest_get(d->store, guest);
	if (!g) {
		snprintf(out, len, "migrate acts on a guest; %s is none", guest);
		return -1;
	}
	const char *no = guest_driver_of(g)->no_migration;
	uint64_t need = policy_guest_need(g);
	json_decref(g);
	if (no) {
		snprintf(out, len, "%s", no);
		return -1;
	}
	json_t *nodes = node_list(d);
	char node[64];
	int rc = policy_pick_node(nodes, need, node, sizeof(node), out, len);
	json_decref(nodes);
	if (rc || !act)
		return rc;
	struct op_error e;
	json_t *req = json_pack("{s:s}", "to", node);
	json_t *job = migration_start(d, guest, req, &e);
	json_decref(req);
	if (!job) {
		snprintf(out, len, "migrate to %s: %s", node, e.msg);
		return -1;
	}
	size_t l = strlen(out);
	snprintf(out + l, len - l, "; job %lld",
		 (long long)json_integer_value(json_object_get(job, "id")));
	json_decref(job);
	return 0;
}
