/* The device allow-list of a container: which device nodes its processes may
 * create (mknod) and open. Everything not listed is denied, including every
 * block device. cgroup v1: the devices controller's devices.deny/allow;
 * cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program on the container's
 * cgroup. */
#ifndef KVZ_CT_DEVICES_H
#define KVZ_CT_DEVICES_H

#include "cgroup.h"

#include <limits.h>
#include <stddef.h>

#define DEV_ANY (-1L)
enum { DEV_MKNOD = 1, DEV_READ = 2, DEV_WRITE = 4 };

struct dev_rule {
	char type;        /* 'c' or 'b' */
	long major, minor; /* DEV_ANY: every number */
	unsigned access;  /* DEV_* bits */
	char path[128];   /* --device: the host node, bound to the same place in /dev */
};

#define DEV_MAX_EXTRA 32
/* What --device added to the built-in list (null, zero, full, random,
 * urandom, tty, console, ptmx, pts). */
struct dev_list {
	struct dev_rule extra[DEV_MAX_EXTRA];
	size_t n;
};

/* --device PATH[:rwm]: PATH must be a char or block device node on the host. */
int devices_parse(const char *arg, struct dev_list *l, char *err, size_t len);
/* Installs the allow-list on the container's cgroup (before anything joins it). */
int devices_apply(const struct cgroup *cg, const struct dev_list *l, char *err, size_t len);
/* Where an extra device appears in the container: its host path when that is
 * under /dev, else /dev/BASENAME. */
void devices_container_path(const struct dev_rule *r, char *out, size_t size);

#endif
