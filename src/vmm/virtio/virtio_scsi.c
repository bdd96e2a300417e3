/* virtio-scsi: control, event and one request queue; the request header
 * and CDB from the driver-readable part of a chain, the response header
 * and the data in its device-writable part. */
#include "virtio_scsi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "iso_image.h"
#include "qmp_server.h"
#include "state/state_buf.h"

#define QUEUE_SIZE 128
#define Q_CONTROL 0
#define Q_EVENT 1
#define Q_REQUEST 2
#define CDB_SIZE 32
#define SENSE_SIZE 96
#define REQ_LEN (19 + CDB_SIZE)      /* lun[8], id, task attr, prio, crn, cdb */
#define RESP_LEN (12 + SENSE_SIZE)   /* sense_len, resid, qualifier, status, response, sense */
#define S_OK 0
#define S_BAD_TARGET 3
#define S_FAILURE 9
#define T_TMF 0
#define T_AN_QUERY 1
#define T_AN_SUBSCRIBE 2
#define KEY_MEDIUM_ERROR 0x3

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }   /* little-endian host */

static void build_config(struct virtio_scsi *s)
{
	uint8_t *c = s->config;
	memset(c, 0, sizeof(s->config));
	put32(c + 0, 1);                  /* request queues */
	put32(c + 4, VIRTQ_MAX_SEGS - 2); /* segments a request may have */
	put32(c + 8, 0xFFFF);             /* sectors a command may move */
	put32(c + 12, QUEUE_SIZE);
	put32(c + 16, 0);                 /* no event info */
	put32(c + 20, SENSE_SIZE);
	put32(c + 24, CDB_SIZE);
	/* max_channel 0, max_target 0, max_lun 0 */
}

/* Target 0, LUN 0 in the single-level format: 1, target, 0x40|lun >> 8, lun. */
static bool our_lun(const uint8_t *lun)
{
	return lun[0] == 1 && lun[1] == 0 && ((lun[2] << 8 | lun[3]) & 0x3FFF) == 0;
}

/* Sends read_len bytes of the image from read_offset into the data-in
 * buffers after the response header; returns the bytes moved, or -1 on
 * a host read error. */
static int64_t send_image(struct virtio_scsi *s, const struct scsi_cd_result *r, uint64_t room)
{
	const struct virtq_elem *e = &s->elem;
	uint64_t want = r->read_len < room ? r->read_len : room;
	uint64_t done = 0;
	while (done < want) {
		size_t chunk = want - done < sizeof(s->bounce) ? want - done : sizeof(s->bounce);
		struct iovec iov = {.iov_base = s->bounce, .iov_len = chunk};
		ssize_t got = preadv(s->fd, &iov, 1, (off_t)(r->read_offset + done));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return -1;
		virtq_buf_to_iov(e->iov + e->nout, e->nin, RESP_LEN + done, s->bounce, (size_t)got);
		done += (uint64_t)got;
	}
	return (int64_t)done;
}

uint32_t virtio_scsi_handle_request(struct virtio_scsi *s)
{
	const struct virtq_elem *e = &s->elem;
	uint8_t req[REQ_LEN], resp[RESP_LEN] = {0};
	if (e->out_len < REQ_LEN || e->in_len < RESP_LEN)
		return 0;   /* not a request: nothing to answer in */
	virtq_iov_to_buf(e->iov, e->nout, 0, req, sizeof(req));
	const struct iovec *in = e->iov + e->nout;
	if (!our_lun(req)) {
		resp[11] = S_BAD_TARGET;
		virtq_buf_to_iov(in, e->nin, 0, resp, sizeof(resp));
		return RESP_LEN;
	}
	struct scsi_cd_result r;
	scsi_cd_command(&s->cd, req + 19, CDB_SIZE, &r);
	if (s->cd.tray_moved) {
		s->cd.tray_moved = false;
		if (s->qmp)
			qmp_server_emit(s->qmp, "DEVICE_TRAY_MOVED",
					json_pack("{s:s,s:s,s:b}", "device", VIRTIO_SCSI_QMP_NAME, "id",
						  VIRTIO_SCSI_QMP_NAME, "tray-open", s->cd.tray_open));
	}
	uint64_t room = e->in_len - RESP_LEN;
	uint64_t moved = 0;
	if (r.read_len) {
		int64_t n = send_image(s, &r, room);
		if (n < 0) {
			r.status = SCSI_STATUS_CHECK;
			memset(r.sense, 0, sizeof(r.sense));
			r.sense[0] = 0x70;
			r.sense[2] = KEY_MEDIUM_ERROR;
			r.sense[7] = SCSI_SENSE_LEN - 8;
			n = 0;
		}
		moved = (uint64_t)n;
	} else if (r.data_len) {
		moved = r.data_len < room ? r.data_len : room;
		virtq_buf_to_iov(in, e->nin, RESP_LEN, r.data, (size_t)moved);
	}
	if (r.status == SCSI_STATUS_CHECK) {
		put32(resp, SCSI_SENSE_LEN);
		memcpy(resp + 12, r.sense, SCSI_SENSE_LEN);
	}
	uint64_t resid = room - moved;
	put32(resp + 4, resid > UINT32_MAX ? UINT32_MAX : (uint32_t)resid);
	resp[10] = r.status;
	resp[11] = S_OK;
	virtq_buf_to_iov(in, e->nin, 0, resp, sizeof(resp));
	return (uint32_t)(RESP_LEN + moved);
}

/* Task management succeeds (nothing is ever in flight across requests);
 * asynchronous notifications: none supported. */
static uint32_t handle_control(struct virtio_scsi *s)
{
	const struct virtq_elem *e = &s->elem;
	uint32_t type;
	if (e->out_len < 4 || virtq_iov_to_buf(e->iov, e->nout, 0, &type, 4) != 4)
		return 0;
	uint8_t resp[5] = {0};
	size_t n;
	if (type == T_TMF)
		n = 1;                        /* response: FUNCTION COMPLETE */
	else if (type == T_AN_QUERY || type == T_AN_SUBSCRIBE)
		n = 5;                        /* event_actual 0, response OK */
	else
		return 0;
	if (e->in_len < n)
		return 0;
	return (uint32_t)virtq_buf_to_iov(e->iov + e->nout, e->nin, 0, resp, n);
}

/* ---- the medium, changed by the host (QMP thread) ---- */

int virtio_scsi_eject(struct virtio_scsi *s, bool force, struct virtio_scsi_tray *t,
		      char *err, size_t errlen)
{
	pthread_mutex_lock(&s->vp.lock);
	bool was_open = s->cd.tray_open;
	bool done = scsi_cd_remove(&s->cd, force);
	int old = done ? s->fd : -1;
	if (done)
		s->fd = -1;
	pthread_mutex_unlock(&s->vp.lock);
	if (old >= 0)
		close(old);
	*t = (struct virtio_scsi_tray){.opened = done && !was_open};
	if (!done)
		snprintf(err, errlen, "locked");
	return done ? 0 : -1;
}

int virtio_scsi_change(struct virtio_scsi *s, int fd, struct virtio_scsi_tray *t,
		       char *err, size_t errlen)
{
	uint64_t size;
	char why[128];
	*t = (struct virtio_scsi_tray){0};
	if (iso_image_check(fd, &size, why, sizeof(why)) < 0) {
		close(fd);
		snprintf(err, errlen, "%s", why);
		return -1;
	}
	pthread_mutex_lock(&s->vp.lock);
	bool was_open = s->cd.tray_open;
	bool done = scsi_cd_remove(&s->cd, false);
	int old = -1;
	if (done) {
		old = s->fd;
		s->fd = fd;
		scsi_cd_insert(&s->cd, size);
	}
	pthread_mutex_unlock(&s->vp.lock);
	if (!done) {
		close(fd);
		snprintf(err, errlen, "locked");
		return -1;
	}
	if (old >= 0)
		close(old);
	*t = (struct virtio_scsi_tray){.opened = !was_open, .closed = true};
	return 0;
}

void virtio_scsi_set_qmp(struct virtio_scsi *s, struct qmp_server *qmp)
{
	pthread_mutex_lock(&s->vp.lock);
	s->qmp = qmp;
	pthread_mutex_unlock(&s->vp.lock);
}

void virtio_scsi_query(struct virtio_scsi *s, bool *medium, bool *tray_open, bool *locked,
		       uint64_t *bytes)
{
	pthread_mutex_lock(&s->vp.lock);
	*medium = s->cd.medium;
	*tray_open = s->cd.tray_open;
	*locked = s->cd.locked;
	*bytes = s->cd.blocks * SCSI_CD_BLOCK;
	pthread_mutex_unlock(&s->vp.lock);
}

/* ---- machine state ---- */

/* A bus reset, as QEMU's: the lock is released and the tray closes over
 * whatever medium there is. */
static void scsi_reset(void *dev, struct virtio_pci *vp)
{
	struct virtio_scsi *s = dev;
	(void)vp;
	s->cd.locked = false;
	if (s->cd.medium)
		s->cd.tray_open = false;
}

static void scsi_save(void *dev, struct virtio_pci *vp, struct state_buf *out)
{
	const struct scsi_cd *cd = &((struct virtio_scsi *)dev)->cd;
	(void)vp;
	state_put_u8(out, cd->medium);
	state_put_u8(out, cd->tray_open);
	state_put_u8(out, cd->locked);
	state_put_u8(out, cd->unit_attention);
	state_put_u8(out, cd->event);
	state_put_u64(out, cd->blocks);
	state_put_bytes(out, cd->sense, sizeof(cd->sense));
}

/* Version 1 had no drive state: the drive stays as the command line made
 * it. The medium itself is the caller's to supply again (--cdrom): it must
 * be as large as the saved one. */
static int scsi_load(void *dev, struct virtio_pci *vp, struct state_cursor *in, uint32_t version,
		     char *err, size_t errlen)
{
	struct virtio_scsi *s = dev;
	(void)vp;
	if (version < 2)
		return 0;
	struct scsi_cd cd = {0};
	cd.medium = state_get_bool(in);
	cd.tray_open = state_get_bool(in);
	cd.locked = state_get_bool(in);
	cd.unit_attention = state_get_bool(in);
	cd.event = state_get_u8(in);
	cd.blocks = state_get_u64(in);
	state_get_bytes(in, cd.sense, sizeof(cd.sense));
	if (in->bad) {
		snprintf(err, errlen, "truncated");
		return -1;
	}
	if (cd.event > SCSI_CD_EV_MEDIA_REMOVAL || (!cd.medium && (cd.blocks || !cd.tray_open))) {
		snprintf(err, errlen, "bad CD-ROM state (event %u, medium %d, tray open %d)", cd.event,
			 cd.medium, cd.tray_open);
		return -1;
	}
	if (cd.medium && (!s->cd.medium || s->cd.blocks != cd.blocks)) {
		snprintf(err, errlen, "the CD-ROM held a medium of %llu blocks; --cdrom gives %llu (supply the same ISO)",
			 (unsigned long long)cd.blocks, (unsigned long long)s->cd.blocks);
		return -1;
	}
	s->cd = cd;
	return 0;
}

static void scsi_queue_notify(void *dev, struct virtio_pci *vp, unsigned q)
{
	struct virtio_scsi *s = dev;
	struct virtq *vq = &vp->vq[q];
	if (q == Q_EVENT)
		return;   /* buffers wait for events that never come */
	do {
		int r;
		while ((r = virtq_pop(vq, &s->elem)) > 0)
			virtq_push(vq, s->elem.head, q == Q_REQUEST ? virtio_scsi_handle_request(s)
								    : handle_control(s));
		virtio_pci_queue_done(vp, q);
		if (r < 0) {
			virtio_pci_queue_broken(vp, q);
			return;
		}
	} while (virtq_rearm(vq));
}

/* sense_size and cdb_size are the only writable fields: the layout stays
 * 96/32 (what Linux and SeaBIOS write anyway). */
static void scsi_config_written(void *dev, struct virtio_pci *vp, uint32_t off, unsigned len)
{
	(void)vp;
	(void)off;
	(void)len;
	build_config(dev);
}

static const struct virtio_dev_ops scsi_ops = {
	.queue_notify = scsi_queue_notify,
	.config_written = scsi_config_written,
	.reset = scsi_reset,
	.save = scsi_save,
	.load = scsi_load,
};

/* The medium named on the command line; an empty path: none. */
static int open_medium(struct virtio_scsi *s, const char *path, char *err, size_t errlen)
{
	s->fd = -1;
	if (!path[0]) {
		scsi_cd_init(&s->cd, false, 0);
		return 0;
	}
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (s->fd < 0 || fstat(s->fd, &st) < 0) {
		snprintf(err, errlen, "--cdrom %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)SCSI_CD_BLOCK) {
		snprintf(err, errlen, "--cdrom %s: not an image file of at least one 2048-byte block",
			 path);
		return -1;
	}
	scsi_cd_init(&s->cd, true, (uint64_t)st.st_size);
	return 0;
}

struct virtio_scsi *virtio_scsi_create(const struct vmm_context *ctx, const char *path,
				       char *err, size_t errlen)
{
	struct virtio_scsi *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "--cdrom: out of memory");
		return NULL;
	}
	if (open_medium(s, path, err, errlen) < 0)
		goto fail;
	build_config(s);
	struct virtio_pci_params p = {
		.device_id = VIRTIO_ID_SCSI,
		.class_code = 0x010000,       /* mass storage: SCSI */
		.nqueues = 3,
		.queue_size = QUEUE_SIZE,
		.config = s->config,
		.config_len = sizeof(s->config),
		.ops = &scsi_ops,
		.dev = s,
		.state_version = VIRTIO_SCSI_STATE_VERSION,
		.state_min_version = 1,
	};
	if (virtio_pci_init(&s->vp, ctx, &p, "scsi", err, errlen) < 0)
		goto fail;
	return s;
fail:
	if (s->fd >= 0)
		close(s->fd);
	free(s);
	return NULL;
}

void virtio_scsi_destroy(struct virtio_scsi *s)
{
	if (!s)
		return;
	virtio_pci_destroy(&s->vp);
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}
