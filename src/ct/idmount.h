/* The container's root mounted again by the supervisor, from a detached
 * mount tree, on a staging directory of its own mount namespace.
 *
 * With a user namespace the tree is idmapped (MOUNT_ATTR_IDMAP) to it: files
 * stay owned by 0..65535 on disk and show so inside, while the container's
 * processes act as the host ids of their range. Only the supervisor can make
 * it (idmapping needs CAP_SYS_ADMIN over the filesystem's superblock), and
 * only after the container's id maps are written. The supervisor mounts
 * /proc and /sys on it (kernfs.h) and hands the container's first process a
 * descriptor of it, which that process enters before it copies the mount
 * namespace (the kernel carries a working directory into the copy), so the
 * container never resolves a host path its mapped root may not be allowed
 * to walk. */
#ifndef KVZ_CT_IDMOUNT_H
#define KVZ_CT_IDMOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A detached copy of the mount at dir, nodev, idmapped to pid's user
 * namespace unless pid is 0. must_map: fail when the filesystem cannot be idmapped;
 * otherwise warn once and hand out the copy unmapped (files owned by host
 * ids outside the range show as the overflow id inside). Returns the tree's
 * fd (close-on-exec). */
int idmount_tree(const char *dir, pid_t pid, bool must_map, char *err, size_t len);

/* Mounts the tree on top of dir (in the caller's mount namespace). */
int idmount_place(int tree, const char *dir, char *err, size_t len);

/* Sends one byte and the tree fd over a UNIX socket; receives them. */
int idmount_send(int sock, int tree, char *err, size_t len);
int idmount_recv(int sock);

#endif
