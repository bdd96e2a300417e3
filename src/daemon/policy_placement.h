/* Where the policy action `migrate` sends a guest (policy_migrate.h):
 * pure choices over node_list()'s answer, for unit tests. */
#ifndef KVZD_POLICY_PLACEMENT_H
#define KVZD_POLICY_PLACEMENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* nodes: as node_list() gives them (borrowed). The reachable node with
 * the largest share of idle CPUs (cpus_idle / cpus; then the most
 * available memory) whose mem_available is at least need bytes: 0 with its
 * name in node and the figures in why, or -1 with why none fits. Pure. */
int policy_pick_node(json_t *nodes, uint64_t need, char *node, size_t nlen, char *why,
		     size_t wlen);
/* The memory a guest needs on a node: a VM's memory, a container's hard
 * limit (else its soft one); 0 when it has none. */
uint64_t policy_guest_need(json_t *g);

#endif
