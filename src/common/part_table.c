#include "part_table.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MBR_SIG_OFF 510
#define MBR_PART_OFF 446
#define MBR_TYPE_LINUX 0x83
#define MBR_TYPE_GPT 0xee
#define EXT_MAGIC_OFF (1024 + 56)
#define GPT_ENTRY_MIN 128

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)le16(p) | (uint32_t)le16(p + 2) << 16; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* GUIDs as stored on disk (first three fields little-endian). */
static const uint8_t guid_linux_fs[16] = {0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47,
					  0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4};
static const uint8_t guid_linux_root_x86_64[16] = {0xe3, 0xbc, 0x68, 0x4f, 0xcd, 0xe8, 0xb1, 0x4d,
						   0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7, 0x09};

/* Adds [lba, lba+sectors) when it is non-empty and inside the disk. */
static void add(struct part *out, int *n, int max, int number, uint64_t lba, uint64_t sectors,
		uint64_t disk_size)
{
	if (*n >= max || !sectors || lba > UINT64_MAX / PART_SECTOR ||
	    sectors > UINT64_MAX / PART_SECTOR)
		return;
	uint64_t off = lba * PART_SECTOR, size = sectors * PART_SECTOR;
	if (off >= disk_size || size > disk_size - off)
		return;
	out[(*n)++] = (struct part){.number = number, .offset = off, .size = size};
}

static int find_gpt(const uint8_t *head, size_t len, uint64_t disk_size, struct part *out,
		    int max, char *err, size_t errlen)
{
	if (len < 2 * PART_SECTOR) {
		snprintf(err, errlen, "protective MBR but no GPT header in the image");
		return -1;
	}
	const uint8_t *h = head + PART_SECTOR;
	if (memcmp(h, "EFI PART", 8)) {
		snprintf(err, errlen, "protective MBR but no GPT signature at LBA 1");
		return -1;
	}
	uint64_t entries_lba = le64(h + 72);
	uint32_t count = le32(h + 80), esize = le32(h + 84);
	if (esize < GPT_ENTRY_MIN || esize > 4096 || esize % 8) {
		snprintf(err, errlen, "GPT entry size %u is not valid", esize);
		return -1;
	}
	int n = 0;
	for (uint32_t i = 0; i < count && i < 128; i++) {
		if (entries_lba > (UINT64_MAX - (uint64_t)i * esize) / PART_SECTOR)
			break;
		uint64_t at = entries_lba * PART_SECTOR + (uint64_t)i * esize;
		if (at > len || esize > len - at)
			break; /* beyond what we read: not looked at */
		const uint8_t *e = head + at;
		if (memcmp(e, guid_linux_fs, 16) && memcmp(e, guid_linux_root_x86_64, 16))
			continue;
		uint64_t first = le64(e + 32), last = le64(e + 40);
		if (last < first)
			continue;
		add(out, &n, max, (int)i + 1, first, last - first + 1, disk_size);
	}
	return n;
}

int part_table_find(const uint8_t *head, size_t len, uint64_t disk_size, struct part *out,
		    int max, char *err, size_t errlen)
{
	int n = 0;
	if (len < PART_SECTOR) {
		snprintf(err, errlen, "the image is smaller than one sector");
		return -1;
	}
	bool has_mbr = head[MBR_SIG_OFF] == 0x55 && head[MBR_SIG_OFF + 1] == 0xaa;
	/* A whole-disk file system: its superblock's magic at 1080. */
	if (len >= EXT_MAGIC_OFF + 2 && le16(head + EXT_MAGIC_OFF) == 0xef53 &&
	    (!has_mbr || !head[MBR_PART_OFF + 4])) {
		add(out, &n, max, 0, 0, disk_size / PART_SECTOR, disk_size);
		return n;
	}
	if (!has_mbr) {
		snprintf(err, errlen, "no partition table (MBR signature) and no ext2/3/4 file system");
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = head + MBR_PART_OFF + 16 * i;
		if (e[4] == MBR_TYPE_GPT)
			return find_gpt(head, len, disk_size, out, max, err, errlen);
	}
	for (int i = 0; i < 4; i++) {
		const uint8_t *e = head + MBR_PART_OFF + 16 * i;
		if (e[4] == MBR_TYPE_LINUX)
			add(out, &n, max, i + 1, le32(e + 8), le32(e + 12), disk_size);
	}
	return n;
}

void part_table_write_mbr(uint8_t mbr[PART_SECTOR], uint32_t disk_id, uint32_t start_lba,
			  uint32_t sectors)
{
	memset(mbr + 440, 0, PART_SECTOR - 440);
	put32(mbr + 440, disk_id);
	uint8_t *e = mbr + MBR_PART_OFF;
	e[0] = 0x80;                                /* bootable, for firmware boot */
	e[1] = 0xfe, e[2] = 0xff, e[3] = 0xff;      /* CHS: beyond, use LBA */
	e[4] = MBR_TYPE_LINUX;
	e[5] = 0xfe, e[6] = 0xff, e[7] = 0xff;
	put32(e + 8, start_lba);
	put32(e + 12, sectors);
	mbr[MBR_SIG_OFF] = 0x55;
	mbr[MBR_SIG_OFF + 1] = 0xaa;
}
