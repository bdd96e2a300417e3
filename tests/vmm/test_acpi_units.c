/* Unit tests of the ACPI tables (acpi.c) and the PM1/reset registers
 * (acpi_pm.c): what a Linux guest reads and writes, checked byte by byte.
 * No KVM needed. */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "acpi.h"
#include "acpi_pm.h"
#include "guest_mem.h"
#include "pci.h"
#include "vm.h"

static uint16_t rd16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

/* Checks signature, length (at least min_len), placement and checksum of
 * the table at addr; returns it. */
static uint8_t *acpi_table(struct guest_mem *m, uint64_t addr, const char *sig, uint32_t min_len)
{
	uint8_t *t = guest_mem_ptr(m, addr, 36);
	assert_non_null(t);
	assert_memory_equal(t, sig, 4);
	uint32_t len = rd32(t + 4);
	assert_true(len >= min_len);
	assert_true(addr >= ACPI_TABLES_ADDR && addr + len <= ACPI_TABLES_ADDR + ACPI_TABLES_MAX);
	assert_int_equal(sum(t, len), 0);
	return t;
}

static bool contains(const uint8_t *table, const uint8_t *needle, size_t n)
{
	uint32_t len = rd32(table + 4);
	for (uint32_t i = 36; i + n <= len; i++)
		if (memcmp(table + i, needle, n) == 0)
			return true;
	return false;
}

/* A MADT entry count by type; also checks that the entries tile the table. */
static int madt_count(const uint8_t *madt, uint8_t type)
{
	int n = 0;
	uint32_t off = 44;
	for (; off < rd32(madt + 4); off += madt[off + 1]) {
		assert_true(madt[off + 1] >= 2);
		n += madt[off] == type;
	}
	assert_int_equal(off, rd32(madt + 4));
	return n;
}

struct tables {
	struct guest_mem mem;
	uint8_t *fadt, *madt, *dsdt, *facs;
};

static void load_tables(struct tables *t, int ncpus, struct pci_bus *pci)
{
	assert_int_equal(guest_mem_init(&t->mem, 16 << 20, false), 0);
	char err[256] = "";
	assert_int_equal(acpi_write_tables(&t->mem, ncpus, pci, err, sizeof(err)), 0);
	uint8_t *rsdp = guest_mem_ptr(&t->mem, ACPI_TABLES_ADDR, 36);
	assert_memory_equal(rsdp, "RSD PTR ", 8);
	assert_int_equal(ACPI_TABLES_ADDR % 16, 0);        /* where Linux scans */
	assert_int_equal(sum(rsdp, 20), 0);
	assert_int_equal(rsdp[15], 2);                     /* ACPI 2.0+ RSDP */
	assert_int_equal(rd32(rsdp + 20), 36);
	assert_int_equal(sum(rsdp, 36), 0);
	uint8_t *xsdt = acpi_table(&t->mem, rd64(rsdp + 24), "XSDT", 36);
	assert_int_equal(rd32(xsdt + 4), 36 + 2 * 8);
	t->fadt = acpi_table(&t->mem, rd64(xsdt + 36), "FACP", 276);
	t->madt = acpi_table(&t->mem, rd64(xsdt + 44), "APIC", 44);
	t->dsdt = acpi_table(&t->mem, rd64(t->fadt + 140), "DSDT", 36);
	uint64_t facs = rd64(t->fadt + 132);
	assert_int_equal(facs % 64, 0);
	t->facs = guest_mem_ptr(&t->mem, facs, 64);
	assert_non_null(t->facs);
}

/* A generic address structure in I/O space. */
static void assert_gas_io(const uint8_t *gas, uint16_t port, uint8_t bits)
{
	assert_int_equal(gas[0], 1);
	assert_int_equal(gas[1], bits);
	assert_int_equal(rd64(gas + 4), port);
}

static void check_tables(int ncpus)
{
	struct tables t;
	load_tables(&t, ncpus, NULL);
	const uint8_t *f = t.fadt;
	assert_int_equal(f[8], 6);
	assert_int_equal(rd32(f + 4), 276);
	assert_int_equal(rd32(f + 112) & (1u << 20), 0);          /* not hardware-reduced */
	assert_int_not_equal(rd32(f + 112) & (1u << 10), 0);     /* RESET_REG_SUP */
	assert_int_equal(rd16(f + 46), ACPI_SCI_IRQ);
	assert_int_equal(rd32(f + 48), 0);                        /* no SMI_CMD: always ACPI mode */
	assert_int_equal(rd32(f + 56), ACPI_PM1_EVT_PORT);
	assert_int_equal(rd32(f + 64), ACPI_PM1_CNT_PORT);
	assert_int_equal(f[88], 4);
	assert_int_equal(f[89], 2);
	assert_gas_io(f + 116, ACPI_RESET_PORT, 8);
	assert_int_equal(f[128], ACPI_RESET_VALUE);
	assert_gas_io(f + 148, ACPI_PM1_EVT_PORT, 32);
	assert_gas_io(f + 172, ACPI_PM1_CNT_PORT, 16);
	assert_int_equal(rd32(f + 36), 0);                        /* X_FIRMWARE_CTRL only */
	assert_memory_equal(t.facs, "FACS", 4);
	assert_int_equal(rd32(t.facs + 4), 64);

	/* Name(_S5_, Package(2){0, 0}) */
	const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x04, 0x02, 0x00, 0x00};
	assert_int_equal(ACPI_SLP_TYP_S5, 0);
	assert_true(contains(t.dsdt, s5, sizeof(s5)));
	const uint8_t pci0[] = {'P', 'C', 'I', '0', 0x08, '_', 'H', 'I', 'D', 0x0D, 'P', 'N', 'P', '0', 'A', '0', '3', 0};
	assert_true(contains(t.dsdt, pci0, sizeof(pci0)));

	assert_int_equal(madt_count(t.madt, 0), ncpus);   /* one LAPIC per vCPU */
	assert_int_equal(madt_count(t.madt, 1), 1);       /* the IOAPIC */
	assert_int_equal(madt_count(t.madt, 2), 1);       /* the SCI override */
	const uint8_t sci_iso[] = {2, 10, 0, ACPI_SCI_IRQ, ACPI_SCI_IRQ, 0, 0, 0, 0x0D, 0};
	assert_true(contains(t.madt, sci_iso, sizeof(sci_iso)));
	guest_mem_destroy(&t.mem);
}

static void test_acpi_tables(void **state)
{
	(void)state;
	check_tables(1);
	check_tables(3);
	check_tables(VM_MAX_VCPUS);
}

static void fake_read(struct pci_device *d, int bar, uint64_t off, void *data, unsigned len)
{
	(void)d, (void)bar, (void)off;
	memset(data, 0, len);
}

static void fake_write(struct pci_device *d, int bar, uint64_t off, const void *data, unsigned len)
{
	(void)d, (void)bar, (void)off, (void)data, (void)len;
}

static const struct pci_device_ops fake_ops = {.bar_read = fake_read, .bar_write = fake_write};

/* A PCI device's INTA appears in the host bridge's _PRT with the GSI the
 * bus gave it (the MP table's routing), so INTx works under ACPI too. */
static void test_acpi_pci_prt(void **state)
{
	(void)state;
	struct pci_bus *bus = pci_bus_create();
	struct pci_device dev = {.ops = &fake_ops};
	dev.bars[0] = (struct pci_bar){.size = 0x1000};
	assert_int_equal(pci_register(bus, &dev), 0);
	struct tables t;
	load_tables(&t, 2, bus);
	/* Package(){0x0001FFFF, 0, 0, irq_line} for slot 1 */
	const uint8_t entry[] = {0x12, 0x0B, 0x04, 0x0C, 0xFF, 0xFF, (uint8_t)(dev.devfn >> 3), 0x00,
				 0x00, 0x00, 0x0A, dev.irq_line};
	assert_true(contains(t.dsdt, entry, sizeof(entry)));
	pci_bus_destroy(bus);
	guest_mem_destroy(&t.mem);
}

static void test_pm1_cnt_decode(void **state)
{
	(void)state;
	assert_int_equal(acpi_pm1_cnt_decode(ACPI_PM1_CNT_SLP_EN), ACPI_PM1_CNT_POWEROFF);
	assert_int_equal(acpi_pm1_cnt_decode(ACPI_PM1_CNT_SLP_EN | ACPI_PM1_CNT_SCI_EN), ACPI_PM1_CNT_POWEROFF);
	assert_int_equal(acpi_pm1_cnt_decode(0), ACPI_PM1_CNT_NONE);   /* SLP_TYP alone: prepare only */
	assert_int_equal(acpi_pm1_cnt_decode(ACPI_PM1_CNT_SLP_EN | 3 << ACPI_PM1_CNT_SLP_TYP_SHIFT),
			 ACPI_PM1_CNT_NONE);                            /* a type no _Sx_ names */
}

static uint16_t in16(struct acpi_pm *pm, uint16_t port)
{
	uint16_t v = 0xDEAD;
	assert_true(acpi_pm_pio(pm, port, &v, 2, false));
	return v;
}

static void out16(struct acpi_pm *pm, uint16_t port, uint16_t v)
{
	assert_true(acpi_pm_pio(pm, port, &v, 2, true));
}

/* The register semantics ACPICA relies on; without a machine, writes that
 * would stop it only change registers. */
static void test_pm1_registers(void **state)
{
	(void)state;
	struct acpi_pm *pm = acpi_pm_create(NULL);
	assert_non_null(pm);
	const uint16_t sts = ACPI_PM1_EVT_PORT, en = ACPI_PM1_EVT_PORT + 2;
	assert_int_equal(in16(pm, ACPI_PM1_CNT_PORT) & ACPI_PM1_CNT_SCI_EN, ACPI_PM1_CNT_SCI_EN);
	out16(pm, ACPI_PM1_CNT_PORT, 0);
	assert_int_equal(in16(pm, ACPI_PM1_CNT_PORT), ACPI_PM1_CNT_SCI_EN);   /* SCI_EN hard-wired */
	out16(pm, ACPI_PM1_CNT_PORT, ACPI_PM1_CNT_SLP_EN | 5 << ACPI_PM1_CNT_SLP_TYP_SHIFT);
	assert_int_equal(in16(pm, ACPI_PM1_CNT_PORT) & ACPI_PM1_CNT_SLP_EN, 0);   /* write-only */

	/* Enables read back (ACPICA checks), the power button sets its status. */
	assert_int_equal(acpi_pm_press_power_button(pm), -1);   /* not enabled yet */
	assert_int_equal(in16(pm, sts), ACPI_PM1_PWRBTN);
	out16(pm, sts, ACPI_PM1_PWRBTN);                        /* write 1 to clear */
	assert_int_equal(in16(pm, sts), 0);
	out16(pm, en, ACPI_PM1_PWRBTN | 0x20 /* GBL_EN */);
	assert_int_equal(in16(pm, en), ACPI_PM1_PWRBTN | 0x20);
	assert_int_equal(acpi_pm_press_power_button(pm), 0);
	assert_int_equal(in16(pm, sts), ACPI_PM1_PWRBTN);
	out16(pm, sts, 0);                                      /* zeros leave bits alone */
	assert_int_equal(in16(pm, sts), ACPI_PM1_PWRBTN);

	/* A 32-bit read of the event block: status low, enable high. */
	uint32_t both = 0;
	assert_true(acpi_pm_pio(pm, sts, &both, 4, false));
	assert_int_equal(both, ACPI_PM1_PWRBTN | (uint32_t)(ACPI_PM1_PWRBTN | 0x20) << 16);

	struct acpi_pm_state st;
	acpi_pm_get_state(pm, &st);
	acpi_pm_reset(pm);
	assert_int_equal(in16(pm, sts), 0);
	acpi_pm_set_state(pm, &st);
	assert_int_equal(in16(pm, sts), ACPI_PM1_PWRBTN);

	/* 0xCF9 is claimed for byte access only: a dword there is PCI's. */
	uint8_t b = 0x02;
	assert_true(acpi_pm_pio(pm, ACPI_RESET_PORT, &b, 1, true));
	b = 0;
	assert_true(acpi_pm_pio(pm, ACPI_RESET_PORT, &b, 1, false));
	assert_int_equal(b, 0x02);
	assert_false(acpi_pm_pio(pm, 0xCF8, &both, 4, true));
	assert_false(acpi_pm_pio(pm, 0x606, &b, 1, false));
	acpi_pm_destroy(pm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_acpi_tables),
		cmocka_unit_test(test_acpi_pci_prt),
		cmocka_unit_test(test_pm1_cnt_decode),
		cmocka_unit_test(test_pm1_registers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
