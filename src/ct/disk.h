/* A container's private area: a btrfs filesystem in a sparse image file,
 * attached through a loop device.
 *
 * Why btrfs: the container's `df` must show exactly its quota and the quota
 * must grow while mounted. ext4 cannot grow online here (no
 * CAP_SYS_RESOURCE), XFS grows online but mkfs.xfs refuses anything under
 * 300 MB and its df shows the size minus the log; btrfs formats sizes from
 * 128M in a few ms, reports the image size exactly in statfs and grows online
 * with one ioctl (BTRFS_IOC_RESIZE "max" after LOOP_SET_CAPACITY). */
#ifndef KVZ_CT_DISK_H
#define KVZ_CT_DISK_H

#include <stddef.h>
#include <stdint.h>

/* Creates a sparse image of size bytes (must not exist) and formats it. */
int disk_image_create(const char *image, uint64_t size, char *err, size_t len);
/* Attaches image to a free loop device that detaches by itself when the
 * last user (fd or mount) goes. Returns the open loop fd, its path in dev:
 * /dev/loopN, or /proc/self/fd/FD (valid while the fd is open) on a host
 * whose /dev lacks the node. */
int disk_loop_attach(const char *image, char *dev, size_t devlen, char *err, size_t len);
/* Before image is mounted: when a btrfs with its UUID is mounted on this
 * kernel already and does not lie on image itself, image is a copy of it
 * (a migration's target on the source's host, a copied private area),
 * which Linux before 6.7 refuses to mount ("File exists") and later ones
 * mount under a temporary UUID: gives it a UUID of its own (btrfstune -m).
 * Refuses when image itself is mounted (through another loop device). */
int disk_own_fsid(const char *image, char *err, size_t len);
/* disk_own_fsid, then loop-attaches image and mounts it on target in the
 * caller's mount namespace. Returns the loop fd (dev: its path, as
 * disk_loop_attach), -1 with err. */
int disk_attach_mount(const char *image, const char *target, char *dev, size_t devlen,
		      char *err, size_t len);
/* disk_attach_mount without keeping the loop fd. */
int disk_mount(const char *image, const char *target, char *err, size_t len);
/* Grows the image to size and the filesystem mounted at mountpoint with it;
 * refuses to shrink. */
int disk_grow(const char *image, const char *loopdev, const char *mountpoint,
	      uint64_t size, char *err, size_t len);
/* Size of the image file. */
int disk_image_size(const char *image, uint64_t *size);

#endif
