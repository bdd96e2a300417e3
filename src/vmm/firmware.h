/* Firmware boot (--firmware bios|PATH): the ROM image, what kvz-vmm puts
 * in fw_cfg for it, and the boot order.
 *
 * Memory: the image is mapped read-only so that it ends at 4 GiB (where
 * the reset vector is); its last 128 KiB is also copied into RAM at
 * 0xE0000-0xFFFFF. On a PC the chipset's PAM registers map that range to
 * the ROM or to RAM; SeaBIOS "shadows" itself by setting PAM to RAM and
 * copying the image down from the 4 GiB alias. Here the range is always
 * RAM, preloaded with the ROM's contents: reads see what the ROM would
 * show, SeaBIOS's copy finds RAM and rewrites the same bytes, and the PAM
 * registers of the host bridge are plain read/write bytes. system_reset
 * clears them and copies the image down again, which is what a PAM reset
 * plus SeaBIOS's fresh shadowing would produce. */
#ifndef KVZ_VMM_FIRMWARE_H
#define KVZ_VMM_FIRMWARE_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

#define FIRMWARE_SEABIOS     "/usr/share/seabios/bios-256k.bin"
#define FIRMWARE_SEABIOS_OLD "/usr/share/seabios/bios.bin"
#define FIRMWARE_MAX_SIZE    (16u << 20)
#define FIRMWARE_LOW_SIZE    0x20000u   /* the 0xE0000-0xFFFFF alias */
#define FIRMWARE_SERIAL_PORT 0x3F8      /* etc/sercon-port: SeaBIOS on ttyS0 */

struct firmware_image {
	uint8_t *data;        /* page-aligned mapping, what the ROM slot maps */
	size_t size;          /* multiple of 64 KiB */
	uint64_t gpa;         /* 4 GiB - size */
};

/* Resolves "bios" to Debian's SeaBIOS, reads and checks the image.
 * Returns 0, or -1 with one line in err. */
int firmware_read(const char *spec, struct firmware_image *img, char *err, size_t errlen);
void firmware_free(struct firmware_image *img);

/* Copies the image's last 128 KiB to 0xE0000 (power-on and reset). */
int firmware_copy_low(const struct firmware_image *img, struct guest_mem *m, char *err,
		      size_t errlen);

/* Boot order (--boot): BOOT_ORDER_DEFAULT lets the firmware choose
 * (SeaBIOS: CD-ROMs, then disks); otherwise the disks, or --disk N first. */
enum boot_order_kind { BOOT_ORDER_DEFAULT, BOOT_ORDER_DISK, BOOT_ORDER_CDROM, BOOT_ORDER_INDEX };
struct boot_order {
	enum boot_order_kind kind;
	unsigned index;       /* BOOT_ORDER_INDEX: which --disk, from 0 */
};
/* Parses disk, cdrom or N. Returns 0 or -1. */
int firmware_parse_boot(const char *arg, struct boot_order *out);

struct fw_cfg;
struct pci_bus;

/* The items SeaBIOS reads: RAM size and e820 map, CPU count, no boot
 * menu, the serial console port, the boot order and the ACPI tables
 * (acpi_loader.c). Returns 0, or -1 with one line in err. */
int firmware_fw_cfg_items(struct fw_cfg *c, const struct guest_mem *m, int ncpus,
			  struct pci_bus *pci, const struct boot_order *order, char *err,
			  size_t errlen);

/* The bootorder file's text for order (OpenFirmware paths of the virtio
 * disks on pci, in --disk order), into out. Returns its length, 0 for
 * none, or -1 when --boot names what does not exist (err says why). */
int firmware_bootorder(struct pci_bus *pci, const struct boot_order *order, char *out,
		       size_t outlen, char *err, size_t errlen);

#endif
