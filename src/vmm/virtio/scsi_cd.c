/* The SCSI CD-ROM command set (scsi_cd.h). Multi-byte CDB and reply
 * fields are big-endian, as SCSI has them. */
#include "scsi_cd.h"

#include <stdbool.h>
#include <string.h>

enum {
	OP_TEST_UNIT_READY = 0x00, OP_REQUEST_SENSE = 0x03, OP_INQUIRY = 0x12,
	OP_MODE_SENSE6 = 0x1A, OP_START_STOP = 0x1B, OP_PREVENT_ALLOW = 0x1E,
	OP_READ_CAPACITY10 = 0x25, OP_READ10 = 0x28, OP_WRITE10 = 0x2A, OP_READ_TOC = 0x43,
	OP_GET_CONFIGURATION = 0x46, OP_GET_EVENT_STATUS = 0x4A, OP_MODE_SENSE10 = 0x5A,
	OP_REPORT_LUNS = 0xA0, OP_READ12 = 0xA8, OP_WRITE12 = 0xAA,
};

enum {
	KEY_NO_SENSE = 0x0, KEY_NOT_READY = 0x2, KEY_ILLEGAL_REQUEST = 0x5,
	KEY_UNIT_ATTENTION = 0x6, KEY_DATA_PROTECT = 0x7,
};
#define ASC_INVALID_OPCODE 0x20
#define ASC_LBA_OUT_OF_RANGE 0x21
#define ASC_INVALID_FIELD 0x24
#define ASC_WRITE_PROTECTED 0x27
#define ASC_MEDIUM_CHANGED 0x28        /* not ready to ready change, medium may have changed */
#define ASC_NO_MEDIUM 0x3A
#define ASC_REMOVAL_PREVENTED 0x53     /* ASCQ 02: medium removal prevented */
#define MEDIA_TRAY_OPEN 0x01           /* GET EVENT STATUS media status bits */
#define MEDIA_PRESENT 0x02
#define PAGE_CAPABILITIES 0x2A
#define PAGE_ALL 0x3F
#define LEAD_OUT_TRACK 0xAA

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, v >> 16); put16(p + 2, v); }

void scsi_cd_init(struct scsi_cd *cd, bool has_medium, uint64_t image_size)
{
	memset(cd, 0, sizeof(*cd));
	cd->medium = has_medium;
	cd->tray_open = !has_medium;
	cd->blocks = has_medium ? image_size / SCSI_CD_BLOCK : 0;
	cd->sense[0] = 0x70;
	cd->sense[7] = SCSI_SENSE_LEN - 8;
}

void scsi_cd_insert(struct scsi_cd *cd, uint64_t image_size)
{
	cd->medium = true;
	cd->tray_open = false;
	cd->blocks = image_size / SCSI_CD_BLOCK;
	cd->unit_attention = true;
	cd->event = SCSI_CD_EV_NEW_MEDIA;
}

bool scsi_cd_remove(struct scsi_cd *cd, bool force)
{
	if (!cd->medium && cd->tray_open)
		return true;              /* already empty: nothing to tell */
	if (cd->locked && !force) {
		cd->event = SCSI_CD_EV_EJECT_REQUEST;
		return false;
	}
	cd->locked = false;           /* as QEMU: a forced eject unlocks */
	cd->medium = false;
	cd->tray_open = true;
	cd->blocks = 0;
	cd->unit_attention = false;
	cd->event = SCSI_CD_EV_MEDIA_REMOVAL;
	return true;
}

bool scsi_cd_ready(const struct scsi_cd *cd)
{
	return cd->medium && !cd->tray_open;
}

static void set_sense(uint8_t *sense, uint8_t key, uint8_t asc)
{
	memset(sense, 0, SCSI_SENSE_LEN);
	sense[0] = 0x70;
	sense[2] = key;
	sense[7] = SCSI_SENSE_LEN - 8;
	sense[12] = asc;
}

static void check_q(struct scsi_cd *cd, struct scsi_cd_result *r, uint8_t key, uint8_t asc,
		    uint8_t ascq)
{
	r->status = SCSI_STATUS_CHECK;
	set_sense(r->sense, key, asc);   /* current error, fixed format */
	r->sense[13] = ascq;
	memcpy(cd->sense, r->sense, sizeof(cd->sense));
	r->data_len = 0;
	r->read_len = 0;
}

static void check(struct scsi_cd *cd, struct scsi_cd_result *r, uint8_t key, uint8_t asc)
{
	check_q(cd, r, key, asc, 0);
}

/* Reply of n bytes already in r->data, cut to the allocation length. */
static void reply(struct scsi_cd_result *r, uint32_t n, uint32_t alloc)
{
	r->data_len = n < alloc ? n : alloc;
}

static void inquiry(struct scsi_cd *cd, const uint8_t *cdb, struct scsi_cd_result *r)
{
	uint32_t alloc = be16(cdb + 3);
	uint8_t *d = r->data;
	if (cdb[1] & 1) {             /* EVPD: only the list of pages */
		if (cdb[2] != 0) {
			check(cd, r, KEY_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
			return;
		}
		d[0] = 0x05;
		d[3] = 1;                 /* one page: 0x00 itself */
		reply(r, 5, alloc);
		return;
	}
	d[0] = 0x05;                  /* peripheral type: CD/DVD */
	d[1] = 0x80;                  /* removable */
	d[2] = 0x05;                  /* SPC-3 */
	d[3] = 0x02;                  /* response data format */
	d[4] = 36 - 5;
	memcpy(d + 8, "KVZ     ", 8);
	memcpy(d + 16, "KVZ CD-ROM      ", 16);
	memcpy(d + 32, "1.0 ", 4);
	reply(r, 36, alloc);
}

/* The capabilities page (MMC 0x2A): reads CD-R/RW media, no writing, the
 * medium can be locked and ejected. */
static uint32_t capabilities_page(uint8_t *p)
{
	p[0] = PAGE_CAPABILITIES;
	p[1] = 18;
	p[2] = 0x03;                  /* reads CD-R, CD-RW */
	p[6] = 0x29;                  /* lock, eject, tray */
	put16(p + 8, 706);            /* max read speed, kB/s: 4x */
	put16(p + 12, 2048);          /* buffer size, KiB */
	put16(p + 14, 706);           /* current read speed */
	return 20;
}

static void mode_sense(struct scsi_cd *cd, const uint8_t *cdb, bool ten, struct scsi_cd_result *r)
{
	uint8_t page = cdb[2] & 0x3F;
	uint32_t alloc = ten ? be16(cdb + 7) : cdb[4];
	uint32_t hdr = ten ? 8 : 4;
	if (page != PAGE_CAPABILITIES && page != PAGE_ALL) {
		check(cd, r, KEY_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
		return;
	}
	uint32_t n = hdr + capabilities_page(r->data + hdr);
	if (ten)
		put16(r->data, n - 2);
	else
		r->data[0] = (uint8_t)(n - 1);
	reply(r, n, alloc);
}

static void read_capacity(struct scsi_cd *cd, struct scsi_cd_result *r)
{
	if (!cd->blocks) {
		check(cd, r, KEY_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	}
	uint64_t last = cd->blocks - 1;
	put32(r->data, last > 0xFFFFFFFEu ? 0xFFFFFFFFu : (uint32_t)last);
	put32(r->data + 4, SCSI_CD_BLOCK);
	r->data_len = 8;
}

static void read_blocks(struct scsi_cd *cd, uint64_t lba, uint64_t count, struct scsi_cd_result *r)
{
	/* The transport bounds a read by its buffers; this bounds it by the
	 * medium (and keeps read_len in 32 bits: at most 65535 blocks here
	 * for READ(10), the medium's size for READ(12)). */
	if (lba > cd->blocks || count > cd->blocks - lba || count * SCSI_CD_BLOCK > UINT32_MAX) {
		check(cd, r, KEY_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	}
	r->read_offset = lba * SCSI_CD_BLOCK;
	r->read_len = (uint32_t)(count * SCSI_CD_BLOCK);
}

/* An address in a TOC: LBA, or minutes/seconds/frames (+ the 2 s pregap). */
static void put_addr(uint8_t *p, uint64_t lba, bool msf)
{
	if (!msf) {
		put32(p, (uint32_t)lba);
		return;
	}
	uint64_t f = lba + 150;
	p[0] = 0;
	p[1] = (uint8_t)(f / (60 * 75) > 255 ? 255 : f / (60 * 75));
	p[2] = (uint8_t)(f / 75 % 60);
	p[3] = (uint8_t)(f % 75);
}

static void read_toc(struct scsi_cd *cd, const uint8_t *cdb, struct scsi_cd_result *r)
{
	bool msf = cdb[1] & 0x02;
	uint8_t format = cdb[2] & 0x0F;
	uint8_t track = cdb[6];
	uint32_t alloc = be16(cdb + 7);
	uint8_t *d = r->data;
	uint32_t n = 4;
	if (format == 1) {            /* session info: one session, track 1 at 0 */
		d[2] = d[3] = 1;
		d[5] = 0x14;
		d[6] = 1;
		put_addr(d + 8, 0, msf);
		n = 12;
	} else if (format == 0 && (track <= 1 || track == LEAD_OUT_TRACK)) {
		d[2] = d[3] = 1;
		if (track <= 1) {         /* track 1: data, from LBA 0 */
			d[n + 1] = 0x14;
			d[n + 2] = 1;
			put_addr(d + n + 4, 0, msf);
			n += 8;
		}
		d[n + 1] = 0x14;
		d[n + 2] = LEAD_OUT_TRACK;
		put_addr(d + n + 4, cd->blocks, msf);
		n += 8;
	} else {
		check(cd, r, KEY_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
		return;
	}
	put16(d, n - 2);
	reply(r, n, alloc);
}

static void get_configuration(struct scsi_cd *cd, const uint8_t *cdb, struct scsi_cd_result *r)
{
	/* The header alone: data length, current profile CD-ROM (0x0008), or
	 * none without a readable medium. */
	put32(r->data, 8 - 4);
	put16(r->data + 6, scsi_cd_ready(cd) ? 0x0008 : 0);
	reply(r, 8, be16(cdb + 7));
}

/* Polled media class: the pending event (reported once) and the media
 * status (tray open, medium present). */
static void event_status(struct scsi_cd *cd, const uint8_t *cdb, struct scsi_cd_result *r)
{
	if (!(cdb[1] & 1)) {          /* only polled operation */
		check(cd, r, KEY_ILLEGAL_REQUEST, ASC_INVALID_FIELD);
		return;
	}
	uint8_t *d = r->data;
	d[3] = 0x10;                  /* supported: media class */
	uint32_t n = 4;
	if (cdb[4] & 0x10) {
		d[2] = 0x04;
		d[n] = cd->event;
		d[n + 1] = (uint8_t)((cd->tray_open ? MEDIA_TRAY_OPEN : 0) |
				     (cd->medium ? MEDIA_PRESENT : 0));
		cd->event = SCSI_CD_EV_NONE;
		n += 4;
	} else {
		d[2] = 0x80;              /* no event available */
	}
	put16(d, n - 2);
	reply(r, n, be16(cdb + 7));
}

/* A pending unit attention is what REQUEST SENSE reports (and clears);
 * without one and without a medium, NOT READY as a drive would say. */
static void request_sense(struct scsi_cd *cd, const uint8_t *cdb, struct scsi_cd_result *r)
{
	if (cd->unit_attention) {
		cd->unit_attention = false;
		set_sense(cd->sense, KEY_UNIT_ATTENTION, ASC_MEDIUM_CHANGED);
	} else if ((cd->sense[2] & 0x0F) == KEY_NO_SENSE && !scsi_cd_ready(cd)) {
		set_sense(cd->sense, KEY_NOT_READY, ASC_NO_MEDIUM);
	}
	memcpy(r->data, cd->sense, SCSI_SENSE_LEN);
	set_sense(cd->sense, KEY_NO_SENSE, 0);
	reply(r, SCSI_SENSE_LEN, cdb[4]);
}

static void report_luns(const uint8_t *cdb, struct scsi_cd_result *r)
{
	put32(r->data, 8);            /* one LUN, 0 */
	reply(r, 16, be32(cdb + 6));
}

/* Bytes of the CDB each opcode group has (SPC: the group in the top 3 bits). */
static size_t cdb_size(uint8_t op)
{
	switch (op >> 5) {
	case 0: return 6;
	case 1: case 2: return 10;
	case 4: return 16;
	case 5: return 12;
	default: return 6;
	}
}

/* START STOP UNIT with LoEj: start 0 opens the tray (refused while the
 * guest's own lock holds it), start 1 closes it; closing over a medium
 * is a medium change for the guest. Without LoEj nothing moves. */
static void start_stop(struct scsi_cd *cd, const uint8_t *cdb, struct scsi_cd_result *r)
{
	bool start = cdb[4] & 1, loej = cdb[4] & 2;
	if (!loej || start == !cd->tray_open)
		return;
	if (!start && cd->locked) {
		if (cd->medium)
			check_q(cd, r, KEY_ILLEGAL_REQUEST, ASC_REMOVAL_PREVENTED, 2);
		else
			check_q(cd, r, KEY_NOT_READY, ASC_REMOVAL_PREVENTED, 2);
		return;
	}
	cd->tray_open = !start;
	cd->tray_moved = true;
	if (start && cd->medium) {
		cd->unit_attention = true;
		cd->event = SCSI_CD_EV_NEW_MEDIA;
	} else if (!start && cd->medium) {
		cd->event = SCSI_CD_EV_MEDIA_REMOVAL;
	}
}

/* Commands a pending unit attention does not stop (SPC-4 5.14; MMC-6:
 * GET CONFIGURATION and GET EVENT STATUS NOTIFICATION neither). */
static bool passes_unit_attention(uint8_t op)
{
	return op == OP_INQUIRY || op == OP_REPORT_LUNS || op == OP_REQUEST_SENSE ||
	       op == OP_GET_CONFIGURATION || op == OP_GET_EVENT_STATUS;
}

static bool needs_medium(uint8_t op)
{
	return op == OP_TEST_UNIT_READY || op == OP_READ_CAPACITY10 || op == OP_READ10 ||
	       op == OP_READ12 || op == OP_READ_TOC;
}

void scsi_cd_command(struct scsi_cd *cd, const uint8_t *cdb, size_t cdb_len,
		     struct scsi_cd_result *r)
{
	memset(r, 0, sizeof(*r));
	if (cdb_len == 0 || cdb_len < cdb_size(cdb[0])) {
		check(cd, r, KEY_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	if (cd->unit_attention && !passes_unit_attention(cdb[0])) {
		cd->unit_attention = false;
		check(cd, r, KEY_UNIT_ATTENTION, ASC_MEDIUM_CHANGED);
		return;
	}
	if (needs_medium(cdb[0]) && !scsi_cd_ready(cd)) {
		check(cd, r, KEY_NOT_READY, ASC_NO_MEDIUM);
		return;
	}
	switch (cdb[0]) {
	case OP_TEST_UNIT_READY:
		return;
	case OP_START_STOP: start_stop(cd, cdb, r); return;
	case OP_PREVENT_ALLOW:
		cd->locked = cdb[4] & 1;
		return;
	case OP_REQUEST_SENSE: request_sense(cd, cdb, r); return;
	case OP_INQUIRY: inquiry(cd, cdb, r); return;
	case OP_MODE_SENSE6: mode_sense(cd, cdb, false, r); return;
	case OP_MODE_SENSE10: mode_sense(cd, cdb, true, r); return;
	case OP_READ_CAPACITY10: read_capacity(cd, r); return;
	case OP_READ10: read_blocks(cd, be32(cdb + 2), be16(cdb + 7), r); return;
	case OP_READ12: read_blocks(cd, be32(cdb + 2), be32(cdb + 6), r); return;
	case OP_READ_TOC: read_toc(cd, cdb, r); return;
	case OP_GET_CONFIGURATION: get_configuration(cd, cdb, r); return;
	case OP_GET_EVENT_STATUS: event_status(cd, cdb, r); return;
	case OP_REPORT_LUNS: report_luns(cdb, r); return;
	case OP_WRITE10:
	case OP_WRITE12:
		check(cd, r, KEY_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return;
	default:
		check(cd, r, KEY_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
}
