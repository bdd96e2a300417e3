/* A read-only SCSI CD-ROM (MMC) logical unit: the command descriptor block
 * parser and its replies, without any transport. The guest is hostile:
 * every CDB field is checked against the medium; the unit never writes.
 *
 * Commands: TEST UNIT READY, REQUEST SENSE, INQUIRY (standard and the
 * supported-pages VPD page), MODE SENSE(6/10) (the capabilities page),
 * START STOP UNIT (LoEj opens and closes the tray), PREVENT ALLOW (locks
 * the tray), READ CAPACITY(10), READ(10), READ(12), READ TOC (formats 0
 * and 1, LBA or MSF), GET CONFIGURATION (current profile CD-ROM), GET
 * EVENT STATUS NOTIFICATION (polled, media class), REPORT LUNS. Writes
 * end in DATA PROTECT, anything else in ILLEGAL REQUEST / invalid opcode.
 *
 * Removable medium, as a real drive (and QEMU's scsi-cd): the host
 * inserts and removes media (scsi_cd_insert/scsi_cd_remove); after an
 * insertion the next command but INQUIRY, REPORT LUNS and REQUEST SENSE
 * ends in UNIT ATTENTION 06/28/00 (medium may have changed), once; with
 * no medium or the tray open, commands that need one end in NOT READY
 * 02/3A/0x (medium not present). GET EVENT STATUS reports each media
 * event once (eject request, new media, media removal). */
#ifndef KVZ_VMM_SCSI_CD_H
#define KVZ_VMM_SCSI_CD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCSI_CD_BLOCK 2048u
#define SCSI_STATUS_GOOD 0x00
#define SCSI_STATUS_CHECK 0x02
#define SCSI_SENSE_LEN 18u         /* fixed format */
#define SCSI_CD_DATA_MAX 256u      /* largest reply that is not image data */

/* GET EVENT STATUS media event codes (MMC-6 table 5.8). */
enum scsi_cd_event {
	SCSI_CD_EV_NONE = 0, SCSI_CD_EV_EJECT_REQUEST = 1, SCSI_CD_EV_NEW_MEDIA = 2,
	SCSI_CD_EV_MEDIA_REMOVAL = 3,
};

struct scsi_cd {
	uint64_t blocks;           /* 2048-byte blocks of the medium (0: none) */
	bool medium;               /* a medium is in the drive */
	bool tray_open;
	bool locked;               /* PREVENT ALLOW MEDIUM REMOVAL */
	bool unit_attention;       /* 06/28/00 owed to the next command */
	bool tray_moved;           /* the guest moved the tray (cleared by the host) */
	uint8_t event;             /* enum scsi_cd_event, reported once */
	uint8_t sense[SCSI_SENSE_LEN];   /* of the last CHECK CONDITION */
};

struct scsi_cd_result {
	uint8_t status;            /* SCSI_STATUS_* */
	uint8_t sense[SCSI_SENSE_LEN];   /* valid when status is CHECK */
	uint8_t data[SCSI_CD_DATA_MAX];  /* reply data (data_len bytes) */
	uint32_t data_len;
	uint64_t read_offset;      /* READ: bytes of the image to send */
	uint32_t read_len;
};

/* image_size: bytes of the image (a partial last block is not visible);
 * the drive starts with that medium in it, tray closed, no event pending.
 * has_medium false: an empty drive, tray open. */
void scsi_cd_init(struct scsi_cd *cd, bool has_medium, uint64_t image_size);

/* The host puts a medium in and closes the tray: unit attention and a
 * new-media event follow. */
void scsi_cd_insert(struct scsi_cd *cd, uint64_t image_size);
/* The host opens the tray and takes the medium out (media-removal event).
 * force: even when the guest locked the tray. Returns false (nothing
 * changed, an eject-request event is raised for the guest) when locked
 * and not forced. */
bool scsi_cd_remove(struct scsi_cd *cd, bool force);
/* Whether the guest may read: a medium and the tray closed. */
bool scsi_cd_ready(const struct scsi_cd *cd);

/* Runs one command. cdb_len is how many CDB bytes the transport carries.
 * The reply is cut to the CDB's allocation length; a READ asks the caller
 * to move read_len bytes from read_offset. */
void scsi_cd_command(struct scsi_cd *cd, const uint8_t *cdb, size_t cdb_len,
		     struct scsi_cd_result *r);

#endif
