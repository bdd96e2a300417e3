/* The CD-ROM's SCSI state machine (scsi_cd.c) with a removable medium:
 * sense data byte by byte after removal, insertion and the guest's own
 * tray commands, GET EVENT STATUS media events, the lock and force. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "scsi_cd.h"

#define BLOCKS 100u

static struct scsi_cd_result r;

static void cmd(struct scsi_cd *cd, uint8_t op, uint8_t b1, uint8_t b4)
{
	uint8_t cdb[32] = {op, b1};
	cdb[4] = b4;
	cdb[7] = 0;
	cdb[8] = 0xFF;        /* allocation length (10-byte CDBs) */
	if (op == 0x03 || op == 0x12)
		cdb[4] = cdb[4] ? cdb[4] : 0xFF;
	scsi_cd_command(cd, cdb, sizeof(cdb), &r);
}

static void read10(struct scsi_cd *cd, uint32_t lba, uint16_t n)
{
	uint8_t cdb[32] = {0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			   (uint8_t)lba, 0, (uint8_t)(n >> 8), (uint8_t)n};
	scsi_cd_command(cd, cdb, sizeof(cdb), &r);
}

/* A CHECK CONDITION with exactly this fixed-format sense. */
static void expect_sense(uint8_t key, uint8_t asc, uint8_t ascq)
{
	uint8_t want[SCSI_SENSE_LEN] = {0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq};
	assert_int_equal(r.status, SCSI_STATUS_CHECK);
	assert_memory_equal(r.sense, want, sizeof(want));
	assert_int_equal(r.data_len, 0);
	assert_int_equal(r.read_len, 0);
}

static void expect_good(void)
{
	assert_int_equal(r.status, SCSI_STATUS_GOOD);
}

/* GET EVENT STATUS NOTIFICATION, polled, media class: event, media status. */
static void expect_event(struct scsi_cd *cd, uint8_t event, uint8_t status)
{
	cmd(cd, 0x4A, 1, 0x10);
	expect_good();
	uint8_t want[8] = {0, 6, 0x04, 0x10, event, status, 0, 0};
	assert_int_equal(r.data_len, 8);
	assert_memory_equal(r.data, want, sizeof(want));
}

static void expect_capacity(struct scsi_cd *cd, uint32_t blocks)
{
	cmd(cd, 0x25, 0, 0);
	expect_good();
	uint32_t last = blocks - 1;
	uint8_t want[8] = {(uint8_t)(last >> 24), (uint8_t)(last >> 16), (uint8_t)(last >> 8),
			   (uint8_t)last, 0, 0, 0x08, 0};
	assert_memory_equal(r.data, want, 8);
}

static void test_fresh_drive(void **state)
{
	(void)state;
	struct scsi_cd cd;
	scsi_cd_init(&cd, true, BLOCKS * SCSI_CD_BLOCK);
	cmd(&cd, 0x00, 0, 0);
	expect_good();
	expect_event(&cd, 0, 0x02);         /* no change, medium present */
	expect_capacity(&cd, BLOCKS);
	read10(&cd, BLOCKS - 1, 1);
	expect_good();
	assert_int_equal(r.read_len, SCSI_CD_BLOCK);
}

static void test_eject_then_not_ready(void **state)
{
	(void)state;
	struct scsi_cd cd;
	scsi_cd_init(&cd, true, BLOCKS * SCSI_CD_BLOCK);
	assert_true(scsi_cd_remove(&cd, false));
	assert_false(scsi_cd_ready(&cd));
	cmd(&cd, 0x00, 0, 0);               /* TEST UNIT READY */
	expect_sense(0x02, 0x3A, 0x00);
	read10(&cd, 0, 1);
	expect_sense(0x02, 0x3A, 0x00);
	cmd(&cd, 0x25, 0, 0);               /* READ CAPACITY */
	expect_sense(0x02, 0x3A, 0x00);
	cmd(&cd, 0x43, 0, 0);               /* READ TOC */
	expect_sense(0x02, 0x3A, 0x00);
	cmd(&cd, 0x12, 0, 0);               /* INQUIRY needs no medium */
	expect_good();
	/* REQUEST SENSE: not ready, medium not present. */
	cmd(&cd, 0x03, 0, 0);
	expect_good();
	uint8_t want[SCSI_SENSE_LEN] = {0x70, 0, 0x02, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x3A, 0};
	assert_int_equal(r.data_len, SCSI_SENSE_LEN);
	assert_memory_equal(r.data, want, sizeof(want));
	/* The removal is reported once, then the tray stays open and empty. */
	expect_event(&cd, 3, 0x01);
	expect_event(&cd, 0, 0x01);
	/* No current profile without a medium. */
	cmd(&cd, 0x46, 0, 0);
	expect_good();
	assert_int_equal(r.data[6] << 8 | r.data[7], 0);
	/* A second eject of an empty drive changes nothing. */
	assert_true(scsi_cd_remove(&cd, false));
	expect_event(&cd, 0, 0x01);
}

static void test_change_unit_attention_once(void **state)
{
	(void)state;
	struct scsi_cd cd;
	scsi_cd_init(&cd, true, BLOCKS * SCSI_CD_BLOCK);
	assert_true(scsi_cd_remove(&cd, false));
	scsi_cd_insert(&cd, 40 * SCSI_CD_BLOCK + 100);   /* partial block not visible */
	/* INQUIRY and GET EVENT STATUS pass a pending unit attention... */
	cmd(&cd, 0x12, 0, 0);
	expect_good();
	expect_event(&cd, 2, 0x02);          /* new media, present */
	/* ...the next other command gets it, once. */
	cmd(&cd, 0x00, 0, 0);
	expect_sense(0x06, 0x28, 0x00);
	cmd(&cd, 0x00, 0, 0);
	expect_good();
	expect_capacity(&cd, 40);            /* READ CAPACITY follows the medium */
	read10(&cd, 40, 1);
	expect_sense(0x05, 0x21, 0x00);
	read10(&cd, 39, 1);
	expect_good();
	assert_int_equal(r.read_offset, 39 * SCSI_CD_BLOCK);

	/* REQUEST SENSE reports the unit attention itself and clears it. */
	scsi_cd_insert(&cd, BLOCKS * SCSI_CD_BLOCK);
	cmd(&cd, 0x03, 0, 0);
	uint8_t want[SCSI_SENSE_LEN] = {0x70, 0, 0x06, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x28, 0};
	assert_memory_equal(r.data, want, sizeof(want));
	cmd(&cd, 0x00, 0, 0);
	expect_good();
	expect_capacity(&cd, BLOCKS);
}

static void test_lock_and_force(void **state)
{
	(void)state;
	struct scsi_cd cd;
	scsi_cd_init(&cd, true, BLOCKS * SCSI_CD_BLOCK);
	cmd(&cd, 0x1E, 0, 1);               /* PREVENT MEDIUM REMOVAL */
	expect_good();
	assert_true(cd.locked);
	/* The host's eject without force: refused, the guest is asked. */
	assert_false(scsi_cd_remove(&cd, false));
	assert_true(scsi_cd_ready(&cd));
	expect_event(&cd, 1, 0x02);          /* eject request, medium still in */
	cmd(&cd, 0x00, 0, 0);
	expect_good();
	/* The guest's own eject (START STOP, LoEj) is refused while locked. */
	cmd(&cd, 0x1B, 0, 0x02);
	expect_sense(0x05, 0x53, 0x02);
	assert_true(scsi_cd_ready(&cd));
	/* The guest allows removal: the host's eject works. */
	cmd(&cd, 0x1E, 0, 0);
	assert_true(scsi_cd_remove(&cd, false));
	expect_event(&cd, 3, 0x01);

	/* Locked again (an empty drive may be locked too); force ejects and
	 * unlocks. */
	scsi_cd_insert(&cd, BLOCKS * SCSI_CD_BLOCK);
	cmd(&cd, 0x00, 0, 0);
	expect_sense(0x06, 0x28, 0x00);
	cmd(&cd, 0x1E, 0, 1);
	assert_true(scsi_cd_remove(&cd, true));
	assert_false(cd.locked);
	assert_false(cd.medium);
	cmd(&cd, 0x00, 0, 0);
	expect_sense(0x02, 0x3A, 0x00);
	/* Locked and empty: the guest cannot open the open tray further, nor
	 * does it matter; closing an empty tray leaves it not ready. */
	cmd(&cd, 0x1B, 0, 0x03);            /* LoEj + start: close */
	expect_good();
	assert_false(cd.tray_open);
	cmd(&cd, 0x00, 0, 0);
	expect_sense(0x02, 0x3A, 0x00);
	cmd(&cd, 0x1E, 0, 1);
	cmd(&cd, 0x1B, 0, 0x02);            /* open, locked, no medium */
	expect_sense(0x02, 0x53, 0x02);
}

/* The guest opens the tray over a medium and closes it again. */
static void test_guest_tray(void **state)
{
	(void)state;
	struct scsi_cd cd;
	scsi_cd_init(&cd, true, BLOCKS * SCSI_CD_BLOCK);
	cmd(&cd, 0x1B, 0, 0x02);            /* LoEj, stop: open */
	expect_good();
	assert_true(cd.tray_open && cd.medium && cd.tray_moved);
	cmd(&cd, 0x00, 0, 0);
	expect_sense(0x02, 0x3A, 0x00);
	expect_event(&cd, 3, 0x03);          /* removal; tray open, medium in it */
	cmd(&cd, 0x1B, 0, 0x03);            /* close */
	expect_good();
	cmd(&cd, 0x00, 0, 0);
	expect_sense(0x06, 0x28, 0x00);
	cmd(&cd, 0x00, 0, 0);
	expect_good();
	cmd(&cd, 0x1B, 0, 0x01);            /* start without LoEj: nothing moves */
	expect_good();
	assert_false(cd.tray_open);
	/* The host ejects what the guest's open tray holds. */
	cmd(&cd, 0x1B, 0, 0x02);
	assert_true(scsi_cd_remove(&cd, false));
	assert_false(cd.medium);
	assert_int_equal(cd.blocks, 0);
}

/* An empty drive from the start (--cdrom ""). */
static void test_empty_drive(void **state)
{
	(void)state;
	struct scsi_cd cd;
	scsi_cd_init(&cd, false, 12345);
	assert_int_equal(cd.blocks, 0);
	cmd(&cd, 0x00, 0, 0);
	expect_sense(0x02, 0x3A, 0x00);
	expect_event(&cd, 0, 0x01);
	/* Hostile reads of an empty drive never reach the transport. */
	read10(&cd, 0, 0);
	expect_sense(0x02, 0x3A, 0x00);
	read10(&cd, 0xFFFFFFFF, 0xFFFF);
	expect_sense(0x02, 0x3A, 0x00);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fresh_drive),
		cmocka_unit_test(test_eject_then_not_ready),
		cmocka_unit_test(test_change_unit_attention_once),
		cmocka_unit_test(test_lock_and_force),
		cmocka_unit_test(test_guest_tray),
		cmocka_unit_test(test_empty_drive),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
