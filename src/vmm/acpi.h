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

/* Writes the tables for ncpus vCPUs and the devices on pci (may be NULL) at
 * ACPI_TABLES_ADDR. Returns 0, or -1 with one line in err. */
int acpi_write_tables(struct guest_mem *m, int ncpus, struct pci_bus *pci, char *err, size_t errlen);

#endif
