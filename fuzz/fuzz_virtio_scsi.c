/* libFuzzer target: the virtio-scsi request path and the CD-ROM's CDB
 * parser (virtio_scsi.c, scsi_cd.c). The input chooses the request header
 * (LUN, CDB), the sizes of the device-writable buffers and how they are
 * split, and the size of the image (a sparse memfd). Checks that the
 * device never writes past the buffers it was given (ASan), never reports
 * more than it wrote, answers with a valid response code, and that a READ
 * never reaches past the medium, and nothing is read without one (the
 * drive's state: locked, unit attention owed, ejected). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "virtio_scsi.h"

#define REQ_LEN 51
#define RESP_LEN 108
#define MAX_IN (256 * 1024)
#define HDR 8                  /* flags, image blocks (3), in_len (3), split */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct virtio_scsi *dev;

static int setup_once(void)
{
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -1;
	dev->fd = memfd_create("kvz-fuzz-iso", MFD_CLOEXEC);
	return dev->fd < 0 ? -1 : 0;
}

static void check_cdb_alone(const uint8_t *cdb, uint64_t blocks)
{
	struct scsi_cd cd;
	struct scsi_cd_result r;
	scsi_cd_init(&cd, true, blocks * SCSI_CD_BLOCK);
	scsi_cd_command(&cd, cdb, 32, &r);
	if (r.data_len > SCSI_CD_DATA_MAX)
		abort();
	if (r.read_len && (r.read_offset + r.read_len > blocks * SCSI_CD_BLOCK))
		abort();   /* a READ past the medium */
	if (r.status != SCSI_STATUS_GOOD && r.status != SCSI_STATUS_CHECK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int ready;
	if (!ready) {
		if (setup_once() < 0)
			abort();
		ready = 1;
	}
	if (size < HDR + REQ_LEN)
		return 0;
	uint8_t flags = data[0];
	uint64_t blocks = 1 + ((uint64_t)data[1] | (uint64_t)data[2] << 8 | (uint64_t)data[3] << 16);
	uint32_t in_len = ((uint32_t)data[4] | (uint32_t)data[5] << 8 | (uint32_t)data[6] << 16) % MAX_IN;
	uint8_t split = data[7];
	if (ftruncate(dev->fd, (off_t)(blocks * SCSI_CD_BLOCK)) < 0)
		abort();
	scsi_cd_init(&dev->cd, true, blocks * SCSI_CD_BLOCK);
	/* The drive's medium state, as host operations and earlier guest
	 * commands leave it: locked, medium changed (unit attention owed),
	 * ejected (no medium: nothing may be read). */
	if (flags & 4)
		dev->cd.locked = true;
	if (flags & 8)
		scsi_cd_insert(&dev->cd, blocks * SCSI_CD_BLOCK);
	if (flags & 16)
		scsi_cd_remove(&dev->cd, true);
	bool empty = !dev->cd.medium;

	uint8_t req[REQ_LEN];
	memcpy(req, data + HDR, REQ_LEN);
	if (!(flags & 1)) {           /* mostly the real LUN, so the CDB is reached */
		memset(req, 0, 8);
		req[0] = 1;
	}
	check_cdb_alone(req + 19, blocks);
	uint8_t *in = malloc(in_len ? in_len : 1);
	if (!in)
		abort();
	/* Up to four device-writable segments, cut where the input says. */
	struct virtq_elem *e = &dev->elem;
	memset(e, 0, sizeof(*e));
	e->iov[0] = (struct iovec){.iov_base = req, .iov_len = flags & 2 ? REQ_LEN - 1 : REQ_LEN};
	e->nout = 1;
	e->out_len = e->iov[0].iov_len;
	uint32_t at = 0;
	for (unsigned i = 0; i < 4 && at < in_len; i++) {
		uint32_t len = i == 3 ? in_len - at : (in_len - at) * ((split >> (2 * i)) & 3) / 3;
		if (!len)
			continue;
		e->iov[e->nout + e->nin++] = (struct iovec){.iov_base = in + at, .iov_len = len};
		at += len;
	}
	e->in_len = at;
	uint32_t used = virtio_scsi_handle_request(dev);
	if (used > e->in_len)
		abort();
	if (empty && used > RESP_LEN + SCSI_CD_DATA_MAX)
		abort();   /* image data moved from a drive without a medium */
	if (used >= RESP_LEN && in[11] != 0 && in[11] != 3)
		abort();
	free(in);
	return 0;
}
