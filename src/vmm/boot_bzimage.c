/* The Linux x86 boot protocol, 64-bit entry: setup header checks, kernel at
 * 1 MiB, zero page with e820, command line and initrd. */
#include "boot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Setup header offsets (Documentation/arch/x86/boot.rst). */
#define HDR_SETUP_SECTS    0x1F1
#define HDR_BOOT_FLAG      0x1FE
#define HDR_JUMP           0x200
#define HDR_VERSION        0x206
#define HDR_VID_MODE       0x1FA
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS      0x211
#define HDR_RAMDISK_IMAGE  0x218
#define HDR_RAMDISK_SIZE   0x21C
#define HDR_HEAP_END_PTR   0x224
#define HDR_CMD_LINE_PTR   0x228
#define HDR_INITRD_MAX     0x22C
#define HDR_RELOCATABLE    0x234
#define HDR_XLOADFLAGS     0x236
#define HDR_CMDLINE_SIZE   0x238
#define HDR_INIT_SIZE      0x260
#define HDR_END_MAX        0x290   /* boot_params fields after the header */

#define LOADED_HIGH   0x01
#define CAN_USE_HEAP  0x80
#define XLF_KERNEL_64 0x01
#define MIN_PROTOCOL  0x020C       /* 2.12: xloadflags, 64-bit entry */

static uint16_t rd16(const uint8_t *p, unsigned off) { uint16_t v; memcpy(&v, p + off, 2); return v; }
static uint32_t rd32(const uint8_t *p, unsigned off) { uint32_t v; memcpy(&v, p + off, 4); return v; }
static void wr16(uint8_t *p, unsigned off, uint16_t v) { memcpy(p + off, &v, 2); }
static void wr32(uint8_t *p, unsigned off, uint32_t v) { memcpy(p + off, &v, 4); }

static int check_header(const uint8_t *img, size_t size, const char *path, char *err, size_t errlen)
{
	if (size < 1024 || rd16(img, HDR_BOOT_FLAG) != 0xAA55) {
		snprintf(err, errlen, "%s: not a bzImage (no boot sector signature)", path);
		return -1;
	}
	uint16_t version = rd16(img, HDR_VERSION);
	if (version < MIN_PROTOCOL) {
		snprintf(err, errlen, "%s: boot protocol %u.%02u is too old (need 2.12 for 64-bit entry)",
			 path, version >> 8, version & 0xFF);
		return -1;
	}
	if (!(img[HDR_XLOADFLAGS] & XLF_KERNEL_64)) {
		snprintf(err, errlen, "%s: kernel has no 64-bit entry point (XLF_KERNEL_64)", path);
		return -1;
	}
	return 0;
}

static int load_initrd(struct guest_mem *m, const char *path, uint64_t kernel_end,
		       uint32_t initrd_max, uint8_t *zp, char *err, size_t errlen)
{
	size_t size;
	uint8_t *data = boot_read_file(path, &size, err, errlen);
	if (!data)
		return -1;
	uint64_t top = m->lo_size;
	if ((uint64_t)initrd_max + 1 < top)
		top = (uint64_t)initrd_max + 1;
	uint64_t addr = top >= size ? (top - size) & ~0xFFFull : 0;
	if (addr < kernel_end) {
		snprintf(err, errlen, "initrd %s (%zu MiB) does not fit in guest RAM below 0x%llx: raise --memory",
			 path, size >> 20, (unsigned long long)top);
		free(data);
		return -1;
	}
	memcpy(guest_mem_ptr(m, addr, size), data, size);
	free(data);
	wr32(zp, HDR_RAMDISK_IMAGE, (uint32_t)addr);
	wr32(zp, HDR_RAMDISK_SIZE, (uint32_t)size);
	return 0;
}

int boot_load_bzimage(struct guest_mem *m, const uint8_t *img, size_t size,
		      const struct boot_config *cfg, struct boot_entry *entry,
		      char *err, size_t errlen)
{
	if (check_header(img, size, cfg->kernel, err, errlen) < 0)
		return -1;
	unsigned setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	size_t kernel_off = (size_t)(setup_sects + 1) * 512;
	if (kernel_off >= size) {
		snprintf(err, errlen, "%s: truncated bzImage", cfg->kernel);
		return -1;
	}
	size_t kernel_len = size - kernel_off;
	uint32_t init_size = rd32(img, HDR_INIT_SIZE);
	uint64_t need = init_size > kernel_len ? init_size : kernel_len;
	uint8_t *dst = guest_mem_ptr(m, BOOT_KERNEL_ADDR, need);
	if (!dst) {
		snprintf(err, errlen, "%s needs %llu MiB above 1 MiB to decompress: raise --memory",
			 cfg->kernel, (unsigned long long)(need >> 20) + 1);
		return -1;
	}
	memcpy(dst, img + kernel_off, kernel_len);

	uint8_t *zp = guest_mem_ptr(m, BOOT_ZERO_PAGE_ADDR, 4096);
	memset(zp, 0, 4096);
	/* The setup header is copied as the kernel describes it: its length is
	 * given by the jump at 0x200. */
	size_t hdr_end = 0x202 + img[HDR_JUMP + 1];
	if (hdr_end > HDR_END_MAX)
		hdr_end = HDR_END_MAX;
	memcpy(zp + HDR_SETUP_SECTS, img + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
	wr16(zp, HDR_VID_MODE, 0xFFFF);
	zp[HDR_TYPE_OF_LOADER] = 0xFF;
	zp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	wr16(zp, HDR_HEAP_END_PTR, 0xFE00);
	wr32(zp, HDR_CMD_LINE_PTR, BOOT_CMDLINE_ADDR);
	if (boot_write_cmdline(m, cfg->cmdline, rd32(img, HDR_CMDLINE_SIZE), err, errlen) < 0)
		return -1;
	if (cfg->initrd &&
	    load_initrd(m, cfg->initrd, BOOT_KERNEL_ADDR + need, rd32(img, HDR_INITRD_MAX), zp, err,
			errlen) < 0)
		return -1;
	boot_fill_e820(m, zp);
	return boot_bzimage_entry(img, size, cfg, entry, err, errlen);
}

int boot_bzimage_entry(const uint8_t *head, size_t size, const struct boot_config *cfg,
		       struct boot_entry *entry, char *err, size_t errlen)
{
	if (check_header(head, size, cfg->kernel, err, errlen) < 0)
		return -1;
	entry->kind = BOOT_LINUX_BZIMAGE;
	entry->rip = BOOT_KERNEL_ADDR + 0x200;
	entry->rsi = BOOT_ZERO_PAGE_ADDR;
	entry->rbx = 0;
	return 0;
}
