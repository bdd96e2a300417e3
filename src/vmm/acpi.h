/* ACPI tables (RSDP, XSDT, FADT, FACS, MADT, DSDT): how a Linux guest finds
 * the vCPUs, the IOAPIC, the PCI host bridge, the PM1 registers of
 * acpi_pm.c and the S5 sleep state, and so powers the machine off and
 * resets it the ACPI way. */
#ifndef KVZ_VMM_ACPI_H
#define KVZ_VMM_ACPI_H

#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

/* The tables sit in the e820-reserved BIOS area, below the MP table, where
 * Linux scans for the RSDP (0xE0000-0xFFFFF). */
#define ACPI_TABLES_ADDR 0xE0000u
#define ACPI_TABLES_MAX  0x10000u

struct pci_bus;

/* Where acpi_build_tables put each table, as offsets from the area's start
 * (the RSDP is at 0, 36 bytes; the tables from ACPI_TABLES_START). */
#define ACPI_TABLES_START 48u
#define ACPI_RSDP_LEN     36u
#define ACPI_RSDP_XSDT_OFF 24u       /* the RSDP's 64-bit XSDT address */
#define ACPI_FADT_DSDT_OFF 40u       /* 32-bit DSDT */
#define ACPI_FADT_XFACS_OFF 132u     /* X_FIRMWARE_CTRL */
#define ACPI_FADT_XDSDT_OFF 140u     /* X_DSDT */
#define ACPI_SDT_HEADER_LEN 36u
struct acpi_layout {
	uint32_t len;                 /* bytes used */
	uint32_t dsdt, facs, fadt, madt, xsdt;
	uint32_t nxsdt;               /* 64-bit entries after the XSDT's header */
};

/* Builds every table into area[0, cap) as if area were at guest address
 * base: with base 0 the pointers are offsets, which fw_cfg's table loader
 * (acpi_loader.c) turns into addresses once the firmware placed them.
 * Returns 0, or -1 with one line in err. */
int acpi_build_tables(uint8_t *area, size_t cap, uint64_t base, int ncpus, struct pci_bus *pci,
		      struct acpi_layout *lay, char *err, size_t errlen);

/* Writes the tables for ncpus vCPUs and the devices on pci (may be NULL) at
 * ACPI_TABLES_ADDR. Returns 0, or -1 with one line in err. */
int acpi_write_tables(struct guest_mem *m, int ncpus, struct pci_bus *pci, char *err, size_t errlen);

#endif
