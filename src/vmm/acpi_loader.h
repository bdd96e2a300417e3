/* kvz's ACPI tables handed to the firmware through fw_cfg's table loader
 * (QEMU's "linker/loader" protocol): the tables as two files with offsets
 * for pointers, and a command list telling the firmware to place them
 * (RSDP in the F segment, the rest in high memory), patch the pointers and
 * compute the checksums. One set of tables for both boot paths. */
#ifndef KVZ_VMM_ACPI_LOADER_H
#define KVZ_VMM_ACPI_LOADER_H

#include <stddef.h>
#include <stdint.h>

struct fw_cfg;
struct pci_bus;

#define ACPI_LOADER_ENTRY_LEN 128
#define ACPI_LOADER_ALLOCATE  1
#define ACPI_LOADER_ADD_POINTER 2
#define ACPI_LOADER_ADD_CHECKSUM 3
#define ACPI_LOADER_ZONE_HIGH 1
#define ACPI_LOADER_ZONE_FSEG 2

/* Adds etc/acpi/tables, etc/acpi/rsdp and etc/table-loader to c.
 * Returns 0, or -1 with one line in err. */
int acpi_loader_add(struct fw_cfg *c, int ncpus, struct pci_bus *pci, char *err, size_t errlen);

#endif
