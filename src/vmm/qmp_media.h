/* QMP commands for the CD-ROM's removable medium (QEMU's names): eject,
 * blockdev-change-medium, query-block, and the DEVICE_TRAY_MOVED event.
 * Kept apart from qmp_control.c, which lists them in its command table. */
#ifndef KVZ_VMM_QMP_MEDIA_H
#define KVZ_VMM_QMP_MEDIA_H

#include <jansson.h>

#include "qmp_server.h"
#include "virtio/virtio_scsi.h"

#define QMP_CDROM_NAME VIRTIO_SCSI_QMP_NAME

/* opaque: the struct vmm_control. */
json_t *qmp_media_eject(void *opaque, json_t *args, struct qmp_error *err);
json_t *qmp_media_change(void *opaque, json_t *args, struct qmp_error *err);
json_t *qmp_media_query_block(void *opaque, json_t *args, struct qmp_error *err);

#endif
