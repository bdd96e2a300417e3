/* virtio-scsi (virtio spec 5.6) with one read-only CD-ROM (scsi_cd.h) at
 * target 0, LUN 0: --cdrom ISO. Chosen over AHCI/ATAPI because SeaBIOS and
 * every Linux installer kernel drive it, and it reuses the virtio-pci
 * transport, the I/O thread and the virtqueue walker already hardened
 * against hostile guests: one small request format to parse (the request
 * header and the CDB) instead of an AHCI HBA's registers, FIS and PRD
 * tables plus ATAPI packets.
 *
 * The medium changes at run time (QMP eject, blockdev-change-medium): the
 * new image comes as an open descriptor (the seccomp filter forbids open),
 * is checked as an ISO 9660 image and replaces the old one under vp.lock,
 * so a request is served wholly from one medium or the other. */
#ifndef KVZ_VIRTIO_SCSI_H
#define KVZ_VIRTIO_SCSI_H

#include "scsi_cd.h"
#include "virtio_pci.h"

#define VIRTIO_ID_SCSI 8
#define VIRTIO_SCSI_CONFIG_LEN 36
/* The CD-ROM's name in QMP commands ("device", "id") and events. */
#define VIRTIO_SCSI_QMP_NAME "cdrom0"

struct qmp_server;

struct virtio_scsi {
	struct virtio_pci vp;
	int fd;                       /* the medium, read-only; -1 for none (vp.lock) */
	struct scsi_cd cd;            /* guarded by vp.lock */
	uint8_t config[VIRTIO_SCSI_CONFIG_LEN];
	/* Where the guest's own tray moves (START STOP UNIT) are announced
	 * (DEVICE_TRAY_MOVED), or NULL. Set and used under vp.lock, so once
	 * unset no event is under way; the server's lock is a leaf. */
	struct qmp_server *qmp;
	struct virtq_elem elem;       /* request being served (I/O thread only) */
	uint8_t bounce[64 * 1024];    /* image data on its way to guest buffers */
};

/* Opens the ISO read-only and registers the PCI function; an empty path
 * makes an empty drive (tray open). Returns NULL with one line in err;
 * nothing is left open on failure. */
struct virtio_scsi *virtio_scsi_create(const struct vmm_context *ctx, const char *path,
				       char *err, size_t errlen);
void virtio_scsi_destroy(struct virtio_scsi *s);

/* What a host-side medium operation did to the tray, for QMP's
 * DEVICE_TRAY_MOVED events (opened, then closed, in that order). */
struct virtio_scsi_tray {
	bool opened, closed;
};

/* QMP eject: opens the tray and removes the medium. Refused (-1, err
 * "locked") while the guest holds the tray locked and force is false: the
 * guest then sees an eject request. An empty drive is no error. */
int virtio_scsi_eject(struct virtio_scsi *s, bool force, struct virtio_scsi_tray *t,
		      char *err, size_t errlen);
/* QMP blockdev-change-medium: fd (taken: closed on failure too) must be an
 * ISO 9660 image; the old medium goes, the new one is in with the tray
 * closed. Refused while locked, as eject without force. */
int virtio_scsi_change(struct virtio_scsi *s, int fd, struct virtio_scsi_tray *t,
		       char *err, size_t errlen);
/* Events for the guest's tray moves go to qmp (NULL: nowhere). */
void virtio_scsi_set_qmp(struct virtio_scsi *s, struct qmp_server *qmp);
/* For query-block: medium present, tray open, locked, bytes of medium. */
void virtio_scsi_query(struct virtio_scsi *s, bool *medium, bool *tray_open, bool *locked,
		       uint64_t *bytes);

/* Section version of the CD-ROM's state: the transport's, then the
 * drive's (medium, tray, lock, unit attention, event, sense). 1 had the
 * transport's alone (still loaded: the drive as it was started). */
#define VIRTIO_SCSI_STATE_VERSION 2

/* One request from the request queue (exposed for the fuzzer): the chain
 * in s->elem, the used length returned. */
uint32_t virtio_scsi_handle_request(struct virtio_scsi *s);

#endif
