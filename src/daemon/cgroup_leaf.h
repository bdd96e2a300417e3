/* kvzd's own cgroup on a pure cgroup v2 host (see cgroup_leaf.c). */
#pragma once
#include <stddef.h>

/* Moves the calling process into OWN/kvz/_supervisors when ROOT is a
 * cgroup2 mount and the caller's cgroup OWN (from proc_cgroup, i.e.
 * /proc/self/cgroup) is not the root: the kvz-ct it starts can then give
 * its containers controllers in OWN. 0 when moved or nothing to do. */
int kvzd_cgroup_leaf(const char *root, const char *proc_cgroup, char *err, size_t len);
