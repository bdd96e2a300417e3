/* A read-only SCSI CD-ROM (MMC) logical unit: the command descriptor block
 * parser and its replies, without any transport. The guest is hostile:
 * every CDB field is checked against the medium; the unit never writes.
 *
 * Commands: TEST UNIT READY, REQUEST SENSE, INQUIRY (standard and the
 * supported-pages VPD page), MODE SENSE(6/10) (the capabilities page),
 * START STOP UNIT and PREVENT ALLOW (accepted, nothing moves), READ
 * CAPACITY(10), READ(10), READ(12), READ TOC (formats 0 and 1, LBA or
 * MSF), GET CONFIGURATION (current profile CD-ROM), GET EVENT STATUS
 * NOTIFICATION (polled, media class), REPORT LUNS. Writes end in DATA
 * PROTECT, anything else in ILLEGAL REQUEST / invalid opcode. */
#ifndef KVZ_VMM_SCSI_CD_H
#define KVZ_VMM_SCSI_CD_H

#include <stddef.h>
#include <stdint.h>

#define SCSI_CD_BLOCK 2048u
#define SCSI_STATUS_GOOD 0x00
#define SCSI_STATUS_CHECK 0x02
#define SCSI_SENSE_LEN 18u         /* fixed format */
#define SCSI_CD_DATA_MAX 256u      /* largest reply that is not image data */

struct scsi_cd {
	uint64_t blocks;           /* 2048-byte blocks of the image */
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

/* image_size: bytes of the image (a partial last block is not visible). */
void scsi_cd_init(struct scsi_cd *cd, uint64_t image_size);

/* Runs one command. cdb_len is how many CDB bytes the transport carries.
 * The reply is cut to the CDB's allocation length; a READ asks the caller
 * to move read_len bytes from read_offset. */
void scsi_cd_command(struct scsi_cd *cd, const uint8_t *cdb, size_t cdb_len,
		     struct scsi_cd_result *r);

#endif
