/* The container's root as a detached mount tree made by the supervisor and
 * attached by the container's first process inside its own mount namespace.
 *
 * With a user namespace the tree is idmapped (MOUNT_ATTR_IDMAP) to it: files
 * stay owned by 0..65535 on disk and show so inside, while the container's
 * processes act as the host ids of their range. Only the supervisor can make
 * it (idmapping needs CAP_SYS_ADMIN over the filesystem's superblock), and
 * only after the container's id maps are written; the container attaches it
 * onto its working directory, which the supervisor set to the root's mount
 * point before clone (the kernel carries a cwd into the copied mount
 * namespace), so the container never resolves a host path its mapped root
 * may not be allowed to walk. */
#ifndef KVZ_CT_IDMOUNT_H
#define KVZ_CT_IDMOUNT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A detached copy of the mount at dir, idmapped to pid's user namespace
 * unless pid is 0. must_map: fail when the filesystem cannot be idmapped;
 * otherwise warn once and hand out the copy unmapped (files owned by host
 * ids outside the range show as the overflow id inside). Returns the tree's
 * fd (close-on-exec). */
int idmount_tree(const char *dir, pid_t pid, bool must_map, char *err, size_t len);

/* In the container: mounts the tree onto the working directory and enters
 * its root, so that "." is the root filesystem, a mount of our own. */
int idmount_attach(int tree, char *err, size_t len);

/* Sends one byte and the tree fd over a UNIX socket; receives them. */
int idmount_send(int sock, int tree, char *err, size_t len);
int idmount_recv(int sock);

#endif
