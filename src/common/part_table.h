/* Partition tables of raw disk images: finding the Linux partitions of an
 * MBR or GPT disk (or a whole-disk ext2/3/4 file system) from the image's
 * first sectors, and writing the one-partition MBR that VM template images
 * carry. The parser reads guest-controlled bytes: it trusts no count or
 * offset (fuzz/fuzz_part_table.c). */
#ifndef KVZ_PART_TABLE_H
#define KVZ_PART_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define PART_SECTOR 512u
/* What part_table_find needs to see: MBR, GPT header and 128 entries of
 * 128 bytes (the usual array; entries beyond it are not looked at). */
#define PART_HEAD_BYTES (PART_SECTOR * 34u)
#define PART_MAX 16

struct part {
	int number;      /* 1-based, as Linux names it (vda1); 0: the whole disk */
	uint64_t offset; /* bytes from the start of the disk */
	uint64_t size;   /* bytes */
};

/* Linux partitions of a disk of disk_size bytes whose first bytes are
 * head[0..len) (len up to PART_HEAD_BYTES; less for a tiny image). Fills
 * out[] in table order with those that lie wholly inside the disk and
 * returns how many (0: none), or -1 with err when the table is malformed.
 * A disk without a partition table whose start is an ext2/3/4 superblock
 * is one "partition" numbered 0. Linux partitions: MBR type 0x83; GPT
 * "Linux filesystem" and "Linux x86-64 root" types. */
int part_table_find(const uint8_t *head, size_t len, uint64_t disk_size, struct part *out,
		    int max, char *err, size_t errlen);

/* An MBR with one bootable Linux partition (type 0x83) from start_lba for
 * sectors, into mbr[512]; bytes 0..439 (boot code) are left as they are. */
void part_table_write_mbr(uint8_t mbr[PART_SECTOR], uint32_t disk_id, uint32_t start_lba,
			  uint32_t sectors);

#endif
