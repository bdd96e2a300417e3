/* The container's filesystem view, set up by the container's first process
 * inside its new mount namespace (/proc and /sys are already there, made by
 * the supervisor: kernfs.h): a minimal /dev on tmpfs (bind-mounted host
 * nodes: works with and without a user namespace), devpts with its own
 * ptmx, /dev/console, then pivot_root. */
#ifndef KVZ_CT_ROOTFS_H
#define KVZ_CT_ROOTFS_H

#include "devices.h"

#include <stddef.h>

/* The working directory must be the root filesystem's mount (as the
 * supervisor mounted it, copied into the caller's mount namespace). console
 * is the host path of the pty slave to show as /dev/console, or NULL; devs
 * the --device nodes to bind into /dev. */
int rootfs_enter(const char *console, const struct dev_list *devs, char *err, size_t len);

#endif
