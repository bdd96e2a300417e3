/* virtio-scsi (virtio spec 5.6) with one read-only CD-ROM (scsi_cd.h) at
 * target 0, LUN 0: --cdrom ISO. Chosen over AHCI/ATAPI because SeaBIOS and
 * every Linux installer kernel drive it, and it reuses the virtio-pci
 * transport, the I/O thread and the virtqueue walker already hardened
 * against hostile guests: one small request format to parse (the request
 * header and the CDB) instead of an AHCI HBA's registers, FIS and PRD
 * tables plus ATAPI packets. */
#ifndef KVZ_VIRTIO_SCSI_H
#define KVZ_VIRTIO_SCSI_H

#include "scsi_cd.h"
#include "virtio_pci.h"

#define VIRTIO_ID_SCSI 8
#define VIRTIO_SCSI_CONFIG_LEN 36

struct virtio_scsi {
	struct virtio_pci vp;
	int fd;                       /* the image, read-only */
	struct scsi_cd cd;            /* guarded by vp.lock */
	uint8_t config[VIRTIO_SCSI_CONFIG_LEN];
	struct virtq_elem elem;       /* request being served (I/O thread only) */
	uint8_t bounce[64 * 1024];    /* image data on its way to guest buffers */
};

/* Opens the ISO read-only and registers the PCI function. Returns NULL
 * with one line in err; nothing is left open on failure. */
struct virtio_scsi *virtio_scsi_create(const struct vmm_context *ctx, const char *path,
				       char *err, size_t errlen);
void virtio_scsi_destroy(struct virtio_scsi *s);

/* One request from the request queue (exposed for the fuzzer): the chain
 * in s->elem, the used length returned. */
uint32_t virtio_scsi_handle_request(struct virtio_scsi *s);

#endif
