/* A running VM's CD changed live (issue 14): `kvz set VM --cdrom ISO` and
 * `--eject` reach kvz-vmm over QMP (blockdev-change-medium with the ISO
 * passed by getfd, eject), after install_media_set() recorded the change
 * for the next start. */
#ifndef KVZD_MEDIA_LIVE_H
#define KVZD_MEDIA_LIVE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "guest_config.h"

struct kvzd;

/* req's "cdrom" applied to the running VM name (QMP socket qmp), cfg as
 * install_media_set() left it, had_cdrom whether cfg named an ISO before.
 * A VM started without a CD-ROM drive is no error: the change waits for
 * its next start, and detail says so, as it says when it was applied.
 * 0, or -1 with e set (409: kvz-vmm refused, e.g. the guest locked the
 * tray; 502: kvz-vmm did not answer). */
int media_live_apply(struct kvzd *d, const char *name, const char *qmp, json_t *req,
		     bool had_cdrom, json_t *cfg, char *detail, size_t detaillen,
		     struct op_error *e);

#endif
