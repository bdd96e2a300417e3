/* fw_cfg table loader commands for the tables of acpi.c. Each command is a
 * 128-byte entry: le32 command, then its arguments (file names 56 bytes). */
#include "acpi_loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acpi.h"
#include "fw_cfg.h"

#define TABLES_FILE "etc/acpi/tables"
#define RSDP_FILE   "etc/acpi/rsdp"
#define LOADER_FILE "etc/table-loader"
#define MAX_COMMANDS 16
#define TABLES_CAP 0x10000u

struct loader {
	uint8_t cmds[MAX_COMMANDS][ACPI_LOADER_ENTRY_LEN];
	unsigned n;
	bool overflow;
};

static uint8_t *next_cmd(struct loader *l, uint32_t command)
{
	if (l->n == MAX_COMMANDS) {
		l->overflow = true;
		return NULL;
	}
	uint8_t *e = l->cmds[l->n++];
	memset(e, 0, ACPI_LOADER_ENTRY_LEN);
	memcpy(e, &command, 4);   /* little-endian host */
	return e;
}

static void cmd_allocate(struct loader *l, const char *file, uint32_t align, uint8_t zone)
{
	uint8_t *e = next_cmd(l, ACPI_LOADER_ALLOCATE);
	if (!e)
		return;
	strncpy((char *)e + 4, file, FW_CFG_NAME_LEN - 1);
	memcpy(e + 4 + FW_CFG_NAME_LEN, &align, 4);
	e[4 + FW_CFG_NAME_LEN + 4] = zone;
}

/* dest[offset .. offset+size) += address of src. */
static void cmd_pointer(struct loader *l, const char *dest, const char *src, uint32_t offset,
			uint8_t size)
{
	uint8_t *e = next_cmd(l, ACPI_LOADER_ADD_POINTER);
	if (!e)
		return;
	strncpy((char *)e + 4, dest, FW_CFG_NAME_LEN - 1);
	strncpy((char *)e + 4 + FW_CFG_NAME_LEN, src, FW_CFG_NAME_LEN - 1);
	memcpy(e + 4 + 2 * FW_CFG_NAME_LEN, &offset, 4);
	e[4 + 2 * FW_CFG_NAME_LEN + 4] = size;
}

/* file[offset] made so that file[start .. start+len) sums to 0. */
static void cmd_checksum(struct loader *l, const char *file, uint32_t offset, uint32_t start,
			 uint32_t len)
{
	uint8_t *e = next_cmd(l, ACPI_LOADER_ADD_CHECKSUM);
	if (!e)
		return;
	strncpy((char *)e + 4, file, FW_CFG_NAME_LEN - 1);
	memcpy(e + 4 + FW_CFG_NAME_LEN, &offset, 4);
	memcpy(e + 4 + FW_CFG_NAME_LEN + 4, &start, 4);
	memcpy(e + 4 + FW_CFG_NAME_LEN + 8, &len, 4);
}

static uint32_t table_len(const uint8_t *area, uint32_t off)
{
	uint32_t len;
	memcpy(&len, area + off + 4, 4);
	return len;
}

static void sdt_checksum(struct loader *l, const uint8_t *area, uint32_t off)
{
	cmd_checksum(l, TABLES_FILE, off + 9, off, table_len(area, off));
}

/* The commands: placement, every pointer the tables hold (all offsets into
 * the tables file, built at base 0), then the checksums, which must come
 * after the pointers they cover. */
static void build_commands(struct loader *l, const uint8_t *area, const struct acpi_layout *lay)
{
	cmd_allocate(l, RSDP_FILE, 16, ACPI_LOADER_ZONE_FSEG);
	cmd_allocate(l, TABLES_FILE, 64, ACPI_LOADER_ZONE_HIGH);   /* the FACS wants 64 */
	cmd_pointer(l, TABLES_FILE, TABLES_FILE, lay->fadt + ACPI_FADT_DSDT_OFF, 4);
	cmd_pointer(l, TABLES_FILE, TABLES_FILE, lay->fadt + ACPI_FADT_XFACS_OFF, 8);
	cmd_pointer(l, TABLES_FILE, TABLES_FILE, lay->fadt + ACPI_FADT_XDSDT_OFF, 8);
	for (uint32_t i = 0; i < lay->nxsdt; i++)
		cmd_pointer(l, TABLES_FILE, TABLES_FILE, lay->xsdt + ACPI_SDT_HEADER_LEN + 8 * i, 8);
	cmd_pointer(l, RSDP_FILE, TABLES_FILE, ACPI_RSDP_XSDT_OFF, 8);
	sdt_checksum(l, area, lay->dsdt);
	sdt_checksum(l, area, lay->fadt);
	sdt_checksum(l, area, lay->madt);
	sdt_checksum(l, area, lay->xsdt);
	cmd_checksum(l, RSDP_FILE, 8, 0, 20);
	cmd_checksum(l, RSDP_FILE, 32, 0, ACPI_RSDP_LEN);
}

int acpi_loader_add(struct fw_cfg *c, int ncpus, struct pci_bus *pci, char *err, size_t errlen)
{
	uint8_t *area = malloc(TABLES_CAP);
	struct loader *l = calloc(1, sizeof(*l));
	int rc = -1;
	struct acpi_layout lay;
	if (!area || !l) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (acpi_build_tables(area, TABLES_CAP, 0, ncpus, pci, &lay, err, errlen) < 0)
		goto out;
	build_commands(l, area, &lay);
	uint8_t rsdp[ACPI_RSDP_LEN];
	memcpy(rsdp, area, sizeof(rsdp));
	/* The tables file keeps the bytes before the first table unused: no
	 * second RSDP signature in memory. */
	memset(area, 0, ACPI_TABLES_START);
	int r = l->overflow ? -1 : 0;
	if (r == 0)
		r = fw_cfg_add_file(c, RSDP_FILE, rsdp, sizeof(rsdp));
	if (r == 0)
		r = fw_cfg_add_file(c, TABLES_FILE, area, lay.len);
	if (r == 0)
		r = fw_cfg_add_file(c, LOADER_FILE, l->cmds, (size_t)l->n * ACPI_LOADER_ENTRY_LEN);
	if (r < 0) {
		snprintf(err, errlen, "cannot add the ACPI tables to fw_cfg");
		goto out;
	}
	rc = 0;
out:
	free(area);
	free(l);
	return rc;
}
