/* ACPI tables for a PC with fixed ACPI hardware (acpi_pm.c). Linux finds
 * the RSDP by scanning the BIOS area, follows the XSDT to the FADT (PM1
 * registers, SCI, reset register, FACS and DSDT pointers) and the MADT
 * (LAPICs, IOAPIC, the SCI's interrupt override). The DSDT is hand-
 * assembled AML: the PCI host bridge (without it an ACPI kernel does not
 * scan PCI), its _PRT (INTx -> GSI as in the MP table), the ISA devices and
 * the _S5_ package that makes acpi_power_off() available.
 *
 * Not hardware-reduced ACPI: that mode takes away the legacy PIC and PIT
 * setup a PC guest relies on, and a stock kernel booted under it took ten
 * times longer and hung in its reboot path. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "acpi.h"
#include "acpi_pm.h"
#include "boot.h"
#include "pci.h"

#define ACPI_LAPIC_ADDR  0xFEE00000u
#define ACPI_IOAPIC_ADDR 0xFEC00000u
#define SDT_HEADER_LEN   36
#define FADT_LEN         276       /* ACPI 6.x FADT, up to the hypervisor id */
#define FACS_LEN         64
#define AML_BUF_MAX      4096

/* ---- byte buffers ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
	bool overflow;
	uint64_t base;        /* guest address of p[0], for the tables' pointers */
};

static void put(struct buf *b, const void *data, size_t len)
{
	if (b->overflow || b->len + len > b->cap) {
		b->overflow = true;
		return;
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void put8(struct buf *b, uint8_t v) { put(b, &v, 1); }
static void put16(struct buf *b, uint16_t v) { put(b, &v, 2); }
static void put32(struct buf *b, uint32_t v) { put(b, &v, 4); }
static void put64(struct buf *b, uint64_t v) { put(b, &v, 8); }

/* ---- AML (ACPI 6.x section 20) ---- */

enum {
	AML_ZERO = 0x00, AML_ONE = 0x01, AML_NAME = 0x08, AML_BYTE = 0x0A, AML_WORD = 0x0B,
	AML_DWORD = 0x0C, AML_STRING = 0x0D, AML_SCOPE = 0x10, AML_BUFFER = 0x11,
	AML_PACKAGE = 0x12, AML_EXT = 0x5B, AML_DEVICE = 0x82,
};

/* PkgLength counts its own bytes too; up to 3 bytes covers 1 MiB. */
static void aml_pkglen(struct buf *b, size_t content)
{
	size_t v = content + 1;
	if (v < 0x40) {
		put8(b, (uint8_t)v);
		return;
	}
	v = content + 2;
	if (v < 0x1000) {
		put8(b, (uint8_t)(0x40 | (v & 0xF)));
		put8(b, (uint8_t)(v >> 4));
		return;
	}
	v = content + 3;
	put8(b, (uint8_t)(0x80 | (v & 0xF)));
	put8(b, (uint8_t)(v >> 4));
	put8(b, (uint8_t)(v >> 12));
}

/* op [ext] PkgLength body: the body is built first so its length is known. */
static void aml_wrap(struct buf *b, bool ext, uint8_t op, const struct buf *body)
{
	if (body->overflow) {
		b->overflow = true;
		return;
	}
	if (ext)
		put8(b, AML_EXT);
	put8(b, op);
	aml_pkglen(b, body->len);
	put(b, body->p, body->len);
}

static void aml_integer(struct buf *b, uint32_t v)
{
	if (v == 0) {
		put8(b, AML_ZERO);
	} else if (v == 1) {
		put8(b, AML_ONE);
	} else if (v <= 0xFF) {
		put8(b, AML_BYTE);
		put8(b, (uint8_t)v);
	} else if (v <= 0xFFFF) {
		put8(b, AML_WORD);
		put16(b, (uint16_t)v);
	} else {
		put8(b, AML_DWORD);
		put32(b, v);
	}
}

/* Name(seg, integer); seg is exactly four characters. */
static void aml_name_int(struct buf *b, const char *seg, uint32_t v)
{
	put8(b, AML_NAME);
	put(b, seg, 4);
	aml_integer(b, v);
}

static void aml_name_string(struct buf *b, const char *seg, const char *s)
{
	put8(b, AML_NAME);
	put(b, seg, 4);
	put8(b, AML_STRING);
	put(b, s, strlen(s) + 1);
}

#define LOCAL_BUF(name) uint8_t name##_mem[AML_BUF_MAX]; \
	struct buf name = {.p = name##_mem, .cap = sizeof(name##_mem)}

/* Package() of integers. */
static void aml_package(struct buf *b, const uint32_t *v, uint8_t n)
{
	LOCAL_BUF(body);
	put8(&body, n);
	for (uint8_t i = 0; i < n; i++)
		aml_integer(&body, v[i]);
	aml_wrap(b, false, AML_PACKAGE, &body);
}

/* Word address space descriptor (bus numbers or I/O), producer. */
static void res_word(struct buf *b, uint8_t type, uint8_t type_flags, uint16_t min, uint16_t max)
{
	put8(b, 0x88);
	put16(b, 13);
	put8(b, type);
	put8(b, 0x0C);        /* min and max fixed, positive decode, producer */
	put8(b, type_flags);
	put16(b, 0);          /* granularity */
	put16(b, min);
	put16(b, max);
	put16(b, 0);          /* translation */
	put16(b, (uint16_t)(max - min + 1));
}

static void res_dword_memory(struct buf *b, uint32_t min, uint32_t max)
{
	put8(b, 0x87);
	put16(b, 23);
	put8(b, 0);           /* memory */
	put8(b, 0x0C);
	put8(b, 0x01);        /* read-write, non-cacheable */
	put32(b, 0);
	put32(b, min);
	put32(b, max);
	put32(b, 0);
	put32(b, max - min + 1);
}

/* The host bridge's windows: every bus, all I/O but the config ports,
 * the 32-bit MMIO window the bus assigns BARs from. */
static void aml_host_bridge_crs(struct buf *b)
{
	LOCAL_BUF(res);
	res_word(&res, 2, 0, 0, 0xFF);
	const uint8_t cfg_io[8] = {0x47, 0x01, 0xF8, 0x0C, 0xF8, 0x0C, 0x01, 0x08};
	put(&res, cfg_io, sizeof(cfg_io));
	res_word(&res, 1, 0x03, 0x0000, 0x0CF7);
	res_word(&res, 1, 0x03, 0x0D00, 0xFFFF);
	res_dword_memory(&res, (uint32_t)PCI_MMIO_WINDOW_START, (uint32_t)(PCI_MMIO_WINDOW_END - 1));
	put8(&res, 0x79);     /* end tag, checksum 0 = not checked */
	put8(&res, 0);

	LOCAL_BUF(body);
	aml_integer(&body, (uint32_t)res.len);
	put(&body, res.p, res.len);
	body.overflow |= res.overflow;
	put8(b, AML_NAME);
	put(b, "_CRS", 4);
	aml_wrap(b, false, AML_BUFFER, &body);
}

struct prt_ctx {
	struct buf *b;
	uint8_t count;
};

/* _PRT entry: Package(){slot << 16 | 0xFFFF, INTA, 0, GSI}. */
static void aml_prt_entry(void *opaque, const struct pci_device *dev)
{
	struct prt_ctx *c = opaque;
	uint32_t e[4] = {((uint32_t)(dev->devfn >> 3) << 16) | 0xFFFF, 0, 0, dev->irq_line};
	aml_package(c->b, e, 4);
	c->count++;
}

static void aml_host_bridge(struct buf *b, struct pci_bus *pci)
{
	LOCAL_BUF(dev);
	put(&dev, "PCI0", 4);
	aml_name_string(&dev, "_HID", "PNP0A03");
	aml_name_int(&dev, "_UID", 0);
	aml_name_int(&dev, "_SEG", 0);
	aml_name_int(&dev, "_BBN", 0);
	aml_host_bridge_crs(&dev);

	LOCAL_BUF(entries);
	struct prt_ctx c = {&entries, 0};
	if (pci)
		pci_bus_foreach(pci, aml_prt_entry, &c);
	LOCAL_BUF(prt);
	put8(&prt, c.count);
	put(&prt, entries.p, entries.len);
	prt.overflow |= entries.overflow;
	put8(&dev, AML_NAME);
	put(&dev, "_PRT", 4);
	aml_wrap(&dev, false, AML_PACKAGE, &prt);

	LOCAL_BUF(sb);
	put(&sb, "_SB_", 4);
	aml_wrap(&sb, true, AML_DEVICE, &dev);
	aml_wrap(b, false, AML_SCOPE, &sb);
}

/* The ISA devices, so that their PNP drivers (8250_pnp, i8042, rtc_cmos)
 * find them the way they do on a PC's firmware. */
struct isa_dev {
	const char name[5], *hid;
	uint16_t io[2];       /* ports of up to two ranges, 0 = none */
	uint8_t io_len[2];
	uint8_t irq;
};

static const struct isa_dev isa_devs[] = {
	{"COM1", "PNP0501", {0x3F8, 0}, {8, 0}, 4},
	{"KBD_", "PNP0303", {0x60, 0x64}, {1, 1}, 1},
	{"MOU_", "PNP0F13", {0, 0}, {0, 0}, 12},
	{"RTC_", "PNP0B00", {0x70, 0}, {2, 0}, 8},
};

static void aml_isa_device(struct buf *b, const struct isa_dev *d)
{
	LOCAL_BUF(res);
	for (int i = 0; i < 2; i++) {
		if (!d->io[i])
			continue;
		put8(&res, 0x47);
		put8(&res, 0x01);     /* 16-bit decode */
		put16(&res, d->io[i]);
		put16(&res, d->io[i]);
		put8(&res, 1);
		put8(&res, d->io_len[i]);
	}
	put8(&res, 0x22);             /* IRQNoFlags: edge, active high */
	put16(&res, (uint16_t)(1u << d->irq));
	put8(&res, 0x79);
	put8(&res, 0);

	LOCAL_BUF(buffer);
	aml_integer(&buffer, (uint32_t)res.len);
	put(&buffer, res.p, res.len);
	buffer.overflow |= res.overflow;

	LOCAL_BUF(dev);
	put(&dev, d->name, 4);
	aml_name_string(&dev, "_HID", d->hid);
	aml_name_int(&dev, "_UID", 0);
	put8(&dev, AML_NAME);
	put(&dev, "_CRS", 4);
	aml_wrap(&dev, false, AML_BUFFER, &buffer);
	aml_wrap(b, true, AML_DEVICE, &dev);
}

static void aml_isa_devices(struct buf *b)
{
	LOCAL_BUF(sb);
	put(&sb, "_SB_", 4);
	for (size_t i = 0; i < sizeof(isa_devs) / sizeof(isa_devs[0]); i++)
		aml_isa_device(&sb, &isa_devs[i]);
	aml_wrap(b, false, AML_SCOPE, &sb);
}

/* ---- tables ---- */

static void sdt_header(struct buf *b, const char *sig, uint8_t revision)
{
	put(b, sig, 4);
	put32(b, 0);          /* length, patched by sdt_finish */
	put8(b, revision);
	put8(b, 0);           /* checksum, patched */
	put(b, "KVZ   ", 6);
	put(b, "KVZVMM  ", 8);
	put32(b, 1);
	put(b, "KVZ ", 4);
	put32(b, 1);
}

/* Sets length and checksum of the table that starts at offset start. */
static void sdt_finish(struct buf *b, size_t start)
{
	if (b->overflow)
		return;
	uint32_t len = (uint32_t)(b->len - start);
	memcpy(b->p + start + 4, &len, 4);
	b->p[start + 9] = boot_table_checksum(b->p + start, len);
}

static void align16(struct buf *b)
{
	while (b->len % 16 && !b->overflow)
		put8(b, 0);
}

static uint64_t here(const struct buf *b) { return b->base + b->len; }

static uint64_t put_dsdt(struct buf *b, struct pci_bus *pci)
{
	align16(b);
	uint64_t addr = here(b);
	size_t start = b->len;
	sdt_header(b, "DSDT", 2);
	aml_host_bridge(b, pci);
	aml_isa_devices(b);
	const uint32_t s5[2] = {ACPI_SLP_TYP_S5, 0};
	put8(b, AML_NAME);
	put(b, "_S5_", 4);
	aml_package(b, s5, 2);
	sdt_finish(b, start);
	return addr;
}

/* Generic address structure in I/O space, accessed bytes bits at a time. */
static void put_gas_io(struct buf *b, uint16_t port, uint8_t bits)
{
	put8(b, 1);           /* system I/O */
	put8(b, bits);        /* bit width */
	put8(b, 0);           /* bit offset */
	put8(b, bits == 8 ? 1 : bits == 16 ? 2 : 3);   /* access size */
	put64(b, port);
}

/* The FACS has no use here (no S3 waking vector, no global lock users),
 * but a FADT without one is not valid outside hardware-reduced mode. */
static uint64_t put_facs(struct buf *b)
{
	while (b->len % 64 && !b->overflow)
		put8(b, 0);
	uint64_t addr = here(b);
	uint8_t facs[FACS_LEN] = {'F', 'A', 'C', 'S', FACS_LEN};
	facs[32] = 2;         /* version */
	put(b, facs, sizeof(facs));
	return addr;
}

/* FADT flags (ACPI 6.x table 5-10). */
#define FADT_WBINVD        (1u << 0)
#define FADT_PROC_C1       (1u << 2)
#define FADT_SLP_BUTTON    (1u << 5)   /* set: no fixed-feature sleep button */
#define FADT_RESET_REG_SUP (1u << 10)
/* IAPC_BOOT_ARCH: legacy ISA devices and an 8042 exist, no VGA. */
#define BOOT_ARCH_LEGACY_DEVICES 0x0001
#define BOOT_ARCH_8042           0x0002
#define BOOT_ARCH_VGA_NOT_PRESENT 0x0004

static uint64_t put_fadt(struct buf *b, uint64_t dsdt, uint64_t facs)
{
	align16(b);
	uint64_t addr = here(b);
	size_t start = b->len;
	sdt_header(b, "FACP", 6);
	uint8_t fixed[FADT_LEN - SDT_HEADER_LEN] = {0};
	/* Offsets below are from the start of the FADT. */
#define FADT_AT(off) (fixed + ((off) - SDT_HEADER_LEN))   /* no out-of-bounds intermediate pointer */
#define FADT_PUT(off, v) do { __typeof__(v) v_ = (v); memcpy(FADT_AT(off), &v_, sizeof(v_)); } while (0)
	/* FIRMWARE_CTRL (36) stays 0: X_FIRMWARE_CTRL points at the FACS. */
	FADT_PUT(40, (uint32_t)dsdt);
	FADT_PUT(46, (uint16_t)ACPI_SCI_IRQ);
	/* SMI_CMD (48) stays 0: no SMM, the machine is always in ACPI mode. */
	FADT_PUT(56, (uint32_t)ACPI_PM1_EVT_PORT);
	FADT_PUT(64, (uint32_t)ACPI_PM1_CNT_PORT);
	FADT_AT(88)[0] = ACPI_PM1_EVT_LEN;
	FADT_AT(89)[0] = ACPI_PM1_CNT_LEN;
	/* No PM timer (91) and no GPE blocks: kvmclock and the TSC serve. */
	FADT_PUT(96, (uint16_t)101);    /* P_LVL2_LAT > 100: no C2 */
	FADT_PUT(98, (uint16_t)1001);   /* P_LVL3_LAT > 1000: no C3 */
	FADT_PUT(109, (uint16_t)(BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042 | BOOT_ARCH_VGA_NOT_PRESENT));
	FADT_PUT(112, (uint32_t)(FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP));
	struct buf reset = {.p = FADT_AT(116), .cap = 12};
	put_gas_io(&reset, ACPI_RESET_PORT, 8);
	FADT_AT(128)[0] = ACPI_RESET_VALUE;
	FADT_AT(131)[0] = 1;            /* FADT minor version: 6.1 */
	FADT_PUT(132, facs);            /* X_FIRMWARE_CTRL */
	FADT_PUT(140, dsdt);            /* X_DSDT */
	struct buf pm1_evt = {.p = FADT_AT(148), .cap = 12};
	put_gas_io(&pm1_evt, ACPI_PM1_EVT_PORT, ACPI_PM1_EVT_LEN * 8);
	struct buf pm1_cnt = {.p = FADT_AT(172), .cap = 12};
	put_gas_io(&pm1_cnt, ACPI_PM1_CNT_PORT, ACPI_PM1_CNT_LEN * 8);
	memcpy(FADT_AT(268), "KVZVMM  ", 8);   /* hypervisor vendor identity */
#undef FADT_PUT
#undef FADT_AT
	put(b, fixed, sizeof(fixed));
	sdt_finish(b, start);
	return addr;
}

/* MPS INTI flags of an interrupt source override. */
#define ISO_LEVEL_ACTIVE_HIGH  0x000D

static void put_iso(struct buf *b, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	put8(b, 2);
	put8(b, 10);
	put8(b, 0);           /* ISA */
	put8(b, irq);
	put32(b, gsi);
	put16(b, flags);
}

static uint64_t put_madt(struct buf *b, int ncpus)
{
	align16(b);
	uint64_t addr = here(b);
	size_t start = b->len;
	sdt_header(b, "APIC", 5);
	put32(b, ACPI_LAPIC_ADDR);
	put32(b, 1);          /* PCAT_COMPAT: the in-kernel 8259 pair exists */
	for (int i = 0; i < ncpus; i++) {
		uint8_t lapic[8] = {0, 8, (uint8_t)i, (uint8_t)i, 1, 0, 0, 0};   /* enabled */
		put(b, lapic, sizeof(lapic));
	}
	/* IOAPIC id after the vCPUs', as in the MP table. */
	uint8_t ioapic[4] = {1, 12, (uint8_t)ncpus, 0};
	put(b, ioapic, sizeof(ioapic));
	put32(b, ACPI_IOAPIC_ADDR);
	put32(b, 0);          /* GSI base */
	/* ISA IRQ n -> GSI n is what the VMM's GSI routing does (the PIT
	 * included) and Linux's default without overrides. The SCI is a level
	 * interrupt, and active high: KVM's IOAPIC ignores the polarity bit. */
	put_iso(b, ACPI_SCI_IRQ, ACPI_SCI_IRQ, ISO_LEVEL_ACTIVE_HIGH);
	sdt_finish(b, start);
	return addr;
}

static uint64_t put_xsdt(struct buf *b, const uint64_t *tables, int n)
{
	align16(b);
	uint64_t addr = here(b);
	size_t start = b->len;
	sdt_header(b, "XSDT", 1);
	for (int i = 0; i < n; i++)
		put64(b, tables[i]);
	sdt_finish(b, start);
	return addr;
}

/* RSDP, ACPI 2.0+: 20-byte part with its checksum, then the extended one. */
static void put_rsdp(struct buf *b, uint64_t xsdt)
{
	size_t start = b->len;
	put(b, "RSD PTR ", 8);
	put8(b, 0);
	put(b, "KVZ   ", 6);
	put8(b, 2);
	put32(b, 0);          /* no RSDT */
	put32(b, 36);
	put64(b, xsdt);
	put8(b, 0);
	put8(b, 0);
	put16(b, 0);
	if (b->overflow)
		return;
	b->p[start + 8] = boot_table_checksum(b->p + start, 20);
	b->p[start + 32] = boot_table_checksum(b->p + start, 36);
}

int acpi_build_tables(uint8_t *area, size_t cap, uint64_t base, int ncpus, struct pci_bus *pci,
		      struct acpi_layout *lay, char *err, size_t errlen)
{
	if (cap < ACPI_TABLES_START) {
		snprintf(err, errlen, "no room for the ACPI tables");
		return -1;
	}
	memset(area, 0, cap);
	/* The RSDP goes first, at a 16-byte boundary the scan checks; its XSDT
	 * pointer is filled in once the XSDT is placed. */
	struct buf b = {.p = area, .cap = cap, .len = ACPI_TABLES_START, .base = base};
	uint64_t dsdt = put_dsdt(&b, pci);
	uint64_t facs = put_facs(&b);
	uint64_t tables[2];
	tables[0] = put_fadt(&b, dsdt, facs);
	tables[1] = put_madt(&b, ncpus);
	uint64_t xsdt = put_xsdt(&b, tables, 2);
	if (b.overflow) {
		snprintf(err, errlen, "ACPI tables too large for %d vCPUs", ncpus);
		return -1;
	}
	struct buf rsdp = {.p = area, .cap = ACPI_TABLES_START};
	put_rsdp(&rsdp, xsdt);
	*lay = (struct acpi_layout){
		.len = (uint32_t)b.len, .dsdt = (uint32_t)(dsdt - base), .facs = (uint32_t)(facs - base),
		.fadt = (uint32_t)(tables[0] - base), .madt = (uint32_t)(tables[1] - base),
		.xsdt = (uint32_t)(xsdt - base), .nxsdt = 2,
	};
	return 0;
}

int acpi_write_tables(struct guest_mem *m, int ncpus, struct pci_bus *pci, char *err, size_t errlen)
{
	uint8_t *area = guest_mem_ptr(m, ACPI_TABLES_ADDR, ACPI_TABLES_MAX);
	if (!area) {
		snprintf(err, errlen, "no room for the ACPI tables");
		return -1;
	}
	struct acpi_layout lay;
	return acpi_build_tables(area, ACPI_TABLES_MAX, ACPI_TABLES_ADDR, ncpus, pci, &lay, err, errlen);
}
