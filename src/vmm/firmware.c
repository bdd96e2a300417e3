/* Firmware boot: the ROM image and the fw_cfg items SeaBIOS reads. */
#include "firmware.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "acpi_loader.h"
#include "boot.h"
#include "fw_cfg.h"
#include "parse.h"
#include "pci.h"

#define E820_RAM 1
#define E820_ENTRY_LEN 20   /* le64 address, le64 length, le32 type */
#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_BLK_DEVICE 0x1042
#define VIRTIO_SCSI_DEVICE 0x1048

int firmware_read(const char *spec, struct firmware_image *img, char *err, size_t errlen)
{
	memset(img, 0, sizeof(*img));
	const char *path = spec;
	if (!strcmp(spec, "bios")) {
		FILE *probe = fopen(FIRMWARE_SEABIOS, "rb");
		path = probe ? FIRMWARE_SEABIOS : FIRMWARE_SEABIOS_OLD;
		if (probe)
			fclose(probe);
	}
	char why[400];
	size_t size;
	uint8_t *data = boot_read_file(path, &size, why, sizeof(why));
	if (!data) {
		snprintf(err, errlen, "--firmware %s: %s%s", spec, why,
			 strcmp(spec, "bios") ? "" : " (install Debian's seabios package)");
		return -1;
	}
	if (size < 0x10000 || size > FIRMWARE_MAX_SIZE || size % 0x10000) {
		snprintf(err, errlen, "--firmware %s: %zu bytes is not a firmware image "
			 "(a multiple of 64 KiB, at most 16 MiB)", path, size);
		free(data);
		return -1;
	}
	void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "--firmware %s: %s", path, strerror(errno));
		free(data);
		return -1;
	}
	memcpy(map, data, size);
	free(data);
	img->data = map;
	img->size = size;
	img->gpa = 0x100000000ull - size;
	return 0;
}

void firmware_free(struct firmware_image *img)
{
	if (img->data)
		munmap(img->data, img->size);
	memset(img, 0, sizeof(*img));
}

int firmware_copy_low(const struct firmware_image *img, struct guest_mem *m, char *err,
		      size_t errlen)
{
	size_t n = img->size < FIRMWARE_LOW_SIZE ? img->size : FIRMWARE_LOW_SIZE;
	uint8_t *dst = guest_mem_ptr(m, 0x100000 - n, n);
	if (!dst) {
		snprintf(err, errlen, "no RAM below 1 MiB for the firmware");
		return -1;
	}
	memcpy(dst, img->data + img->size - n, n);
	return 0;
}

int firmware_parse_boot(const char *arg, struct boot_order *out)
{
	uint64_t n;
	if (!strcmp(arg, "disk"))
		*out = (struct boot_order){.kind = BOOT_ORDER_DISK};
	else if (!strcmp(arg, "cdrom"))
		*out = (struct boot_order){.kind = BOOT_ORDER_CDROM};
	else if (kvz_parse_u64(arg, 0, 15, &n))
		*out = (struct boot_order){.kind = BOOT_ORDER_INDEX, .index = (unsigned)n};
	else
		return -1;
	return 0;
}

struct disk_list {
	uint8_t slots[PCI_MAX_DEVICES];
	unsigned n;
	int cdrom_slot;       /* the virtio-scsi CD-ROM's, -1 if none */
};

static void collect_disk(void *opaque, const struct pci_device *dev)
{
	struct disk_list *l = opaque;
	uint16_t vendor = (uint16_t)(dev->config[0] | dev->config[1] << 8);
	uint16_t device = (uint16_t)(dev->config[2] | dev->config[3] << 8);
	if (vendor == VIRTIO_VENDOR && device == VIRTIO_BLK_DEVICE && l->n < PCI_MAX_DEVICES)
		l->slots[l->n++] = dev->devfn >> 3;
	if (vendor == VIRTIO_VENDOR && device == VIRTIO_SCSI_DEVICE && l->cdrom_slot < 0)
		l->cdrom_slot = dev->devfn >> 3;
}

/* SeaBIOS matches its own pattern, "/pci@i0cf8/ANY@SLOT" for a disk and
 * ".../ANY@0/ANY@TARGET,LUN" for SCSI, against each line's prefix; the
 * lines are QEMU's names for a virtio-blk disk and a SCSI CD. */
static int put_line(char *out, size_t outlen, size_t *at, const char *fmt, unsigned slot)
{
	int w = snprintf(out + *at, outlen - *at, fmt, slot);
	if (w < 0 || (size_t)w >= outlen - *at)
		return -1;
	*at += (size_t)w;
	return 0;
}

#define DISK_PATH "/pci@i0cf8/scsi@%x/disk@0,0\n"
#define CDROM_PATH "/pci@i0cf8/scsi@%x/channel@0/disk@0,0\n"

/* Every disk but skip (-1: none), in --disk order. */
static int put_disks(const struct disk_list *d, int skip, char *out, size_t outlen, size_t *at)
{
	for (unsigned i = 0; i < d->n; i++)
		if ((int)i != skip && put_line(out, outlen, at, DISK_PATH, d->slots[i]) < 0)
			return -1;
	return 0;
}

static int put_cdrom(const struct disk_list *d, char *out, size_t outlen, size_t *at)
{
	return d->cdrom_slot < 0 ? 0 : put_line(out, outlen, at, CDROM_PATH, (unsigned)d->cdrom_slot);
}

int firmware_bootorder(struct pci_bus *pci, const struct boot_order *order, char *out,
		       size_t outlen, char *err, size_t errlen)
{
	struct disk_list d = {.n = 0, .cdrom_slot = -1};
	pci_bus_foreach(pci, collect_disk, &d);
	size_t at = 0;
	int rc = 0;
	out[0] = 0;
	switch (order->kind) {
	case BOOT_ORDER_DEFAULT:
		return 0;
	case BOOT_ORDER_CDROM:
		if (d.cdrom_slot < 0) {
			snprintf(err, errlen, "--boot cdrom: there is no --cdrom");
			return -1;
		}
		rc = put_cdrom(&d, out, outlen, &at) < 0 || put_disks(&d, -1, out, outlen, &at) < 0;
		break;
	case BOOT_ORDER_INDEX:
		if (order->index >= d.n) {
			snprintf(err, errlen, "--boot %u: there are %u disks (counted from 0)",
				 order->index, d.n);
			return -1;
		}
		rc = put_line(out, outlen, &at, DISK_PATH, d.slots[order->index]) < 0 ||
		     put_disks(&d, (int)order->index, out, outlen, &at) < 0 ||
		     put_cdrom(&d, out, outlen, &at) < 0;
		break;
	case BOOT_ORDER_DISK:
		if (d.n == 0) {
			snprintf(err, errlen, "--boot: there is no --disk to boot from");
			return -1;
		}
		rc = put_disks(&d, -1, out, outlen, &at) < 0 || put_cdrom(&d, out, outlen, &at) < 0;
		break;
	}
	if (rc) {
		snprintf(err, errlen, "boot order too long");
		return -1;
	}
	return (int)at;
}

static int add_e820(struct fw_cfg *c, const struct guest_mem *m)
{
	uint8_t tab[2 * E820_ENTRY_LEN] = {0};
	uint64_t ranges[2][2] = {{0, m->lo_size}, {GUEST_MEM_HI_START, m->hi_size}};
	size_t n = 0;
	for (int i = 0; i < 2; i++) {
		if (!ranges[i][1])
			continue;
		uint8_t *e = tab + n * E820_ENTRY_LEN;
		uint32_t type = E820_RAM;
		memcpy(e, &ranges[i][0], 8);
		memcpy(e + 8, &ranges[i][1], 8);
		memcpy(e + 16, &type, 4);
		n++;
	}
	return fw_cfg_add_file(c, "etc/e820", tab, n * E820_ENTRY_LEN);
}

int firmware_fw_cfg_items(struct fw_cfg *c, const struct guest_mem *m, int ncpus,
			  struct pci_bus *pci, const struct boot_order *order, char *err,
			  size_t errlen)
{
	char bootorder[PCI_MAX_DEVICES * 40];
	int blen = firmware_bootorder(pci, order, bootorder, sizeof(bootorder), err, errlen);
	if (blen < 0)
		return -1;
	uint16_t port = FIRMWARE_SERIAL_PORT;
	int rc = fw_cfg_add_u64(c, FW_CFG_RAM_SIZE, m->size);
	if (rc == 0)
		rc = fw_cfg_add_u16(c, FW_CFG_NB_CPUS, (uint16_t)ncpus);
	if (rc == 0)
		rc = fw_cfg_add_u16(c, FW_CFG_MAX_CPUS, (uint16_t)ncpus);
	if (rc == 0)
		rc = fw_cfg_add_u16(c, FW_CFG_NOGRAPHIC, 1);
	if (rc == 0)   /* no "Press ESC for boot menu" wait */
		rc = fw_cfg_add_u16(c, FW_CFG_BOOT_MENU, 0);
	if (rc == 0)
		rc = add_e820(c, m);
	if (rc == 0)
		rc = fw_cfg_add_file(c, "etc/sercon-port", &port, sizeof(port));
	if (rc == 0 && blen > 0)
		rc = fw_cfg_add_file(c, "bootorder", bootorder, (size_t)blen + 1);
	if (rc < 0) {
		snprintf(err, errlen, "fw_cfg: %s", strerror(-rc));
		return -1;
	}
	return acpi_loader_add(c, ncpus, pci, err, errlen);
}
