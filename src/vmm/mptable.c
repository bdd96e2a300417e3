/* Intel MultiProcessor Specification 1.4 tables: how a kernel without ACPI
 * finds the vCPUs, the IOAPIC and the interrupt routing. */
#include <stdio.h>
#include <string.h>

#include "boot.h"
#include "pci.h"

#define MP_LAPIC_ADDR 0xFEE00000u
#define MP_IOAPIC_ADDR 0xFEC00000u
#define MP_BUS_PCI 0
#define MP_BUS_ISA 1
#define MP_TABLE_MAX 0x10000

enum { MP_PROCESSOR = 0, MP_BUS = 1, MP_IOAPIC = 2, MP_INTSRC = 3, MP_LINTSRC = 4 };
enum { MP_INT = 0, MP_NMI = 1, MP_EXTINT = 3 };

struct mp_writer {
	uint8_t *base;      /* config table header */
	size_t len;
	uint16_t count;
	bool overflow;
};

static void put(struct mp_writer *w, const void *entry, size_t len)
{
	if (w->len + len > MP_TABLE_MAX - 16) {
		w->overflow = true;
		return;
	}
	memcpy(w->base + w->len, entry, len);
	w->len += len;
	w->count++;
}

static void put_intsrc(struct mp_writer *w, uint8_t type, uint8_t bus, uint8_t src_irq,
		       uint8_t apic, uint8_t pin)
{
	uint8_t e[8] = {MP_INTSRC, type, 0, 0, bus, src_irq, apic, pin};
	put(w, e, sizeof(e));
}

struct pci_irq_ctx {
	struct mp_writer *w;
	uint8_t ioapic_id;
};

static void put_pci_irq(void *opaque, const struct pci_device *dev)
{
	struct pci_irq_ctx *c = opaque;
	/* Source IRQ for PCI: device number in bits 2-6, INTA# = 0. */
	uint8_t src = (uint8_t)((dev->devfn >> 3) << 2);
	put_intsrc(c->w, MP_INT, MP_BUS_PCI, src, c->ioapic_id, dev->irq_line);
}

int mptable_write(struct guest_mem *m, int ncpus, struct pci_bus *pci, char *err, size_t errlen)
{
	uint8_t *fp = guest_mem_ptr(m, BOOT_MPTABLE_ADDR, MP_TABLE_MAX);
	if (!fp) {
		snprintf(err, errlen, "no room for the MP table");
		return -1;
	}
	struct mp_writer w = {.base = fp + 16, .len = 44};
	uint8_t ioapic_id = (uint8_t)ncpus;

	for (int i = 0; i < ncpus; i++) {
		uint8_t e[20] = {MP_PROCESSOR, (uint8_t)i, 0x14, (uint8_t)(0x1 | (i == 0 ? 0x2 : 0))};
		uint32_t signature = 0x600, features = 0x201;   /* family 6; FPU, APIC */
		memcpy(e + 4, &signature, 4);
		memcpy(e + 8, &features, 4);
		put(&w, e, sizeof(e));
	}
	uint8_t bus_pci[8] = {MP_BUS, MP_BUS_PCI, 'P', 'C', 'I', ' ', ' ', ' '};
	uint8_t bus_isa[8] = {MP_BUS, MP_BUS_ISA, 'I', 'S', 'A', ' ', ' ', ' '};
	put(&w, bus_pci, 8);
	put(&w, bus_isa, 8);
	uint8_t ioapic[8] = {MP_IOAPIC, ioapic_id, 0x11, 0x1};
	uint32_t ioapic_addr = MP_IOAPIC_ADDR;
	memcpy(ioapic + 4, &ioapic_addr, 4);
	put(&w, ioapic, 8);
	/* ISA IRQ n on IOAPIC pin n: KVM's default GSI routing. */
	for (uint8_t irq = 0; irq < 16; irq++)
		if (irq != 2)
			put_intsrc(&w, MP_INT, MP_BUS_ISA, irq, ioapic_id, irq);
	if (pci) {
		struct pci_irq_ctx c = {&w, ioapic_id};
		pci_bus_foreach(pci, put_pci_irq, &c);
	}
	uint8_t lint0[8] = {MP_LINTSRC, MP_EXTINT, 0, 0, MP_BUS_ISA, 0, 0xFF, 0};
	uint8_t lint1[8] = {MP_LINTSRC, MP_NMI, 0, 0, MP_BUS_ISA, 0, 0xFF, 1};
	put(&w, lint0, 8);
	put(&w, lint1, 8);
	if (w.overflow) {
		snprintf(err, errlen, "MP table too large for %d vCPUs", ncpus);
		return -1;
	}
	uint8_t *h = w.base;
	memset(h, 0, 44);
	memcpy(h, "PCMP", 4);
	uint16_t len16 = (uint16_t)w.len;
	memcpy(h + 4, &len16, 2);
	h[6] = 4;   /* spec revision 1.4 */
	memcpy(h + 8, "KVZ     ", 8);
	memcpy(h + 16, "KVZ-VMM     ", 12);
	memcpy(h + 34, &w.count, 2);
	uint32_t lapic = MP_LAPIC_ADDR;
	memcpy(h + 36, &lapic, 4);
	h[7] = boot_table_checksum(h, w.len);

	/* Floating pointer structure, in the BIOS area that Linux scans. */
	memset(fp, 0, 16);
	memcpy(fp, "_MP_", 4);
	uint32_t table = BOOT_MPTABLE_ADDR + 16;
	memcpy(fp + 4, &table, 4);
	fp[8] = 1;   /* length in 16-byte units */
	fp[9] = 4;
	fp[10] = boot_table_checksum(fp, 16);
	return 0;
}
