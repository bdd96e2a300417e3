/* Install media (issue 14 §3): an ISO image attached to a VM as its
 * read-only CD-ROM (kvz-vmm --cdrom, virtio-scsi) and the firmware's boot
 * order, CD or disk first. The ISO is a path from a client: looked up
 * beneath the image directories like kernels (image_dirs.h), a regular
 * file with the ISO 9660 signature and a sane size, at create, at set and
 * again at each start. There kvzd opens it and kvz-vmm gets that open
 * file (/proc/self/fd/N), so a name swapped after the check changes
 * nothing. */
#ifndef KVZD_INSTALL_MEDIA_H
#define KVZD_INSTALL_MEDIA_H

#include <jansson.h>
#include <stddef.h>

#include "guest_config.h"
#include "iso_image.h"

struct image_dirs;

/* The ISO at path opened read-only (O_CLOEXEC), its symlink-free path in
 * real; -1 with a 400 in e when it is not an ISO image in the image
 * directories. */
int install_media_open(const struct image_dirs *dirs, const char *path, char *real,
		       size_t reallen, struct op_error *e);

/* Create: "cdrom" (the ISO) and "boot" (cdrom, the default, disk or
 * firmware: the firmware's own order) of a VM installed from it. */
int install_media_config(const struct image_dirs *dirs, json_t *req, json_t *cfg,
			 struct op_error *e);

/* Does a set request touch the install media ("cdrom", "boot")? */
bool install_media_in(json_t *req);

/* Set, for the next start: "cdrom" a path attaches an ISO, null ejects it
 * (a VM that booted the CD first then boots its disk); "boot" direct,
 * firmware, disk or cdrom for a VM with a system of its own. What changed
 * in detail, for the event. */
int install_media_set(const struct image_dirs *dirs, json_t *req, json_t *cfg, char *detail,
		      size_t detaillen, struct op_error *e);

#endif
