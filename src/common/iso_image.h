/* The ISO 9660 check shared by kvzd (install media) and kvz-vmm (a medium
 * changed at run time): a regular file of a sane size whose first volume
 * descriptor carries the standard identifier "CD001". */
#ifndef KVZ_COMMON_ISO_IMAGE_H
#define KVZ_COMMON_ISO_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define ISO_SECTOR 2048
/* 16 system sectors, then the first volume descriptor: type byte, "CD001". */
#define ISO_SIGNATURE_AT (16 * ISO_SECTOR + 1)
#define ISO_MIN_BYTES (17 * ISO_SECTOR)
/* Larger than any install medium (a dual-layer Blu-ray is 50 GB). */
#define ISO_MAX_BYTES (64ull << 30)

/* 0 with the image's size in *size, or -1 with why it is not an ISO image
 * in why (a phrase: "not an ISO 9660 image (no CD001 at byte 32769)"). */
int iso_image_check(int fd, uint64_t *size, char *why, size_t whylen);

#endif
