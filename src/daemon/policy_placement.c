#include "policy_placement.h"

#include <stdio.h>
#include <string.h>

#include "parse.h"

static double idle_share(json_t *n)
{
	double cpus = (double)json_integer_value(json_object_get(n, "cpus"));
	return cpus > 0 ? json_number_value(json_object_get(n, "cpus_idle")) / cpus : 0;
}

int policy_pick_node(json_t *nodes, uint64_t need, char *node, size_t nlen, char *why,
		     size_t wlen)
{
	json_t *best = NULL;
	size_t i, reachable = 0;
	json_t *n;
	json_array_foreach(nodes, i, n) {
		if (!json_is_true(json_object_get(n, "reachable")))
			continue;
		reachable++;
		json_int_t avail = json_integer_value(json_object_get(n, "mem_available"));
		if (avail < 0 || (uint64_t)avail < need)
			continue;
		double s = idle_share(n), bs = best ? idle_share(best) : -1;
		if (!best || s > bs ||
		    (s == bs && avail > json_integer_value(json_object_get(best, "mem_available"))))
			best = n;
	}
	char a[32], b[32];
	if (!best) {
		if (!json_array_size(nodes))
			snprintf(why, wlen, "no node in the registry (kvz node add)");
		else if (!reachable)
			snprintf(why, wlen, "none of %zu node(s) is reachable", json_array_size(nodes));
		else
			snprintf(why, wlen, "no reachable node has %s of memory available",
				 kvz_format_size(need, a, sizeof(a)));
		return -1;
	}
	snprintf(node, nlen, "%s", json_string_value(json_object_get(best, "name")));
	snprintf(why, wlen, "to %s (%.0f%% of %lld CPUs idle, %s available, needs %s)", node,
		 100.0 * idle_share(best), (long long)json_integer_value(json_object_get(best, "cpus")),
		 kvz_format_size((uint64_t)json_integer_value(json_object_get(best, "mem_available")),
				 a, sizeof(a)),
		 kvz_format_size(need, b, sizeof(b)));
	return 0;
}

uint64_t policy_guest_need(json_t *g)
{
	json_t *cfg = json_object_get(g, "config");
	const char *keys[] = {"memory", "memory_hard", "memory_soft"};
	for (size_t i = 0; i < 3; i++) {
		json_int_t v = json_integer_value(json_object_get(cfg, keys[i]));
		if (v > 0)
			return (uint64_t)v;
	}
	return 0;
}
