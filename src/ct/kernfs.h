/* The container's view of the kernel's file systems, mounted by the
 * supervisor under the root filesystem before the container's first process
 * makes its own mount namespace:
 *   /proc           the container's pid namespace; /proc/sys (but
 *                   /proc/sys/net), sysrq-trigger, irq, bus, fs read-only;
 *                   kcore, keys, kmsg, kallsyms, timer_list, sched_debug,
 *                   latency_stats, acpi, scsi... masked
 *   /sys            the container's net namespace, read-only; firmware and
 *                   powercap masked
 *   /sys/fs/cgroup  only the container's own cgroup(s), read-only
 * Made by host root in the supervisor's mount namespace, they reach a
 * container with a user namespace as a copy the kernel locks: its root
 * cannot unmount them, remount them read-write or move them away. */
#ifndef KVZ_CT_KERNFS_H
#define KVZ_CT_KERNFS_H

#include "cgroup.h"

#include <stddef.h>
#include <sys/types.h>

/* target: the root filesystem's mount point; init: the container's first
 * process, whose pid and net namespaces /proc and /sys show. */
int kernfs_mount(const char *target, pid_t init, const struct cgroup *cg, char *err, size_t len);

/* After a CRIU restore, whose /proc and /sys the kernel does not lock:
 * replaces them in init's mount namespace by kernfs_mount's tree, copied
 * locked (kernfs_relock.c). scratch: a directory the helper may cover with
 * a tmpfs in a private mount namespace. */
int kernfs_relock(const char *scratch, pid_t init, const struct cgroup *cg, char *err, size_t len);

#endif
