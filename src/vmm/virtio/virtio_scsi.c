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
};

struct virtio_scsi *virtio_scsi_create(const struct vmm_context *ctx, const char *path,
				       char *err, size_t errlen)
{
	struct virtio_scsi *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "--cdrom: out of memory");
		return NULL;
	}
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (s->fd < 0 || fstat(s->fd, &st) < 0) {
		snprintf(err, errlen, "--cdrom %s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < (off_t)SCSI_CD_BLOCK) {
		snprintf(err, errlen, "--cdrom %s: not an image file of at least one 2048-byte block",
			 path);
		goto fail;
	}
	scsi_cd_init(&s->cd, (uint64_t)st.st_size);
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
	close(s->fd);
	free(s);
}
