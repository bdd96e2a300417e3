/* Unit tests of the kvz-vmm pieces that need no KVM: guest memory, the PCI
 * bus, the MP table, the bzImage loader, the UART registers, CPUID models.
 * They run on every host, also where /dev/kvm is missing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <elf.h>

#include "boot.h"
#include "cpuid.h"
#include "guest_mem.h"
#include "i8042.h"
#include "pci.h"
#include "serial.h"
#include "vm_internal.h"

static uint32_t rd32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* ---- guest_mem ---- */

static void guest_mem_bounds(bool shared)
{
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 16 << 20, shared), 0);
	/* 2 MiB aligned, or KVM gives the guest no 2 MiB nested pages. */
	assert_int_equal((uintptr_t)m.host % GUEST_MEM_ALIGN, 0);
	assert_int_equal(m.memfd >= 0, shared);
	assert_int_equal(m.lo_size, 16 << 20);
	assert_int_equal(m.hi_size, 0);
	assert_non_null(guest_mem_ptr(&m, 0, 16 << 20));
	assert_null(guest_mem_ptr(&m, (16 << 20) - 4, 8));       /* runs off the end */
	assert_null(guest_mem_ptr(&m, UINT64_MAX - 2, 8));        /* wraps */
	assert_null(guest_mem_ptr(&m, GUEST_MEM_HI_START, 1));
	uint8_t *p = guest_mem_ptr(&m, 8192, 4096);
	memset(p, 0xAB, 4096);
	assert_int_equal(guest_mem_discard(&m, 8192, 4096), 0);
	for (int i = 0; i < 4096; i++)
		assert_int_equal(p[i], 0);
	assert_int_not_equal(guest_mem_discard(&m, 8193, 4096), 0);   /* unaligned */
	guest_mem_destroy(&m);
}

static void test_guest_mem_bounds(void **state)
{
	(void)state;
	guest_mem_bounds(false);   /* anonymous (default) */
	guest_mem_bounds(true);    /* memfd */
}

/* Sizes that are not whole huge pages too: a kernel places only those
 * that are on a 2 MiB boundary by itself (Linux 6.7 and later). */
static void test_guest_mem_aligned(void **state)
{
	(void)state;
	for (int shared = 0; shared < 2; shared++)
		for (uint64_t extra = 4096; extra < (64 << 10); extra += 20480) {
			struct guest_mem m;
			assert_int_equal(guest_mem_init(&m, (8 << 20) + extra, shared), 0);
			assert_int_equal((uintptr_t)m.host % GUEST_MEM_ALIGN, 0);
			m.host[m.size - 1] = 1;   /* all of it mapped, writable */
			guest_mem_destroy(&m);
		}
}

/* Restore: the file's bytes appear at the same address, writes stay
 * private (the file is unchanged) and a discard reads zeros. */
static void test_guest_mem_map_file(void **state)
{
	(void)state;
	for (int shared = 0; shared < 2; shared++) {
		struct guest_mem m;
		assert_int_equal(guest_mem_init(&m, 1 << 20, shared), 0);
		uint8_t *host = m.host;
		char path[] = "/tmp/kvz-test-memfile-XXXXXX";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		unlink(path);
		assert_int_equal(ftruncate(fd, 4096 + (1 << 20)), 0);
		assert_int_equal(pwrite(fd, "snapshot", 8, 4096 + 8192), 8);
		assert_int_equal(guest_mem_map_file(&m, fd, 4096), 0);
		close(fd);
		assert_ptr_equal(m.host, host);
		uint8_t *p = guest_mem_ptr(&m, 8192, 4096);
		assert_memory_equal(p, "snapshot", 8);
		p[0] = 'S';
		assert_int_equal(guest_mem_discard(&m, 8192, 4096), 0);
		assert_int_equal(p[0], 0);
		assert_int_equal(p[1], 0);
		guest_mem_destroy(&m);
	}
}

static void test_guest_mem_hole(void **state)
{
	(void)state;
	struct guest_mem m;
	uint64_t size = GUEST_MEM_HOLE_START + (64ull << 20);   /* sparse: never touched */
	assert_int_equal(guest_mem_init(&m, size, false), 0);
	assert_int_equal(m.lo_size, GUEST_MEM_HOLE_START);
	assert_int_equal(m.hi_size, 64ull << 20);
	assert_null(guest_mem_ptr(&m, GUEST_MEM_HOLE_START, 1));   /* the PCI hole */
	assert_ptr_equal(guest_mem_ptr(&m, GUEST_MEM_HI_START, 1), m.host + m.lo_size);
	assert_null(guest_mem_ptr(&m, GUEST_MEM_HOLE_START - 4, 8)); /* crosses into the hole */
	guest_mem_destroy(&m);
}

/* ---- PCI ---- */

struct fake_dev {
	struct pci_device pci;
	int last_bar;
	uint64_t last_off;
	uint32_t last_val;
	int writes;
};

static void fake_read(struct pci_device *d, int bar, uint64_t off, void *data, unsigned len)
{
	(void)d;
	uint32_t v = 0xC0DE0000u | (uint32_t)(bar << 12) | (uint32_t)off;
	memcpy(data, &v, len);
}

static void fake_write(struct pci_device *d, int bar, uint64_t off, const void *data, unsigned len)
{
	struct fake_dev *f = d->opaque;
	f->last_bar = bar;
	f->last_off = off;
	f->last_val = 0;
	memcpy(&f->last_val, data, len);
	f->writes++;
}

static const struct pci_device_ops fake_ops = {.bar_read = fake_read, .bar_write = fake_write};

static uint32_t cfg_read(struct pci_bus *bus, unsigned slot, unsigned off)
{
	uint32_t addr = 0x80000000u | (slot << 11) | (off & 0xFC), v;
	pci_pio(bus, 0xCF8, &addr, 4, true);
	pci_pio(bus, 0xCFC, &v, 4, false);
	return v;
}

static void cfg_write(struct pci_bus *bus, unsigned slot, unsigned off, uint32_t v)
{
	uint32_t addr = 0x80000000u | (slot << 11) | (off & 0xFC);
	pci_pio(bus, 0xCF8, &addr, 4, true);
	pci_pio(bus, 0xCFC, &v, 4, true);
}

static void test_pci_config_and_bars(void **state)
{
	(void)state;
	struct pci_bus *bus = pci_bus_create();
	struct fake_dev f = {0};
	f.pci.config[0] = 0xF4;   /* 1af4:1042 */
	f.pci.config[1] = 0x1A;
	f.pci.config[2] = 0x42;
	f.pci.config[3] = 0x10;
	f.pci.bars[0] = (struct pci_bar){.size = 0x4000, .is_64bit = true};
	f.pci.bars[2] = (struct pci_bar){.size = 0x1000};
	f.pci.ops = &fake_ops;
	f.pci.opaque = &f;
	assert_int_equal(pci_register(bus, &f.pci), 0);
	unsigned slot = f.pci.devfn >> 3;
	assert_int_equal(slot, 1);
	assert_true(f.pci.irq_line >= 16 && f.pci.irq_line < 24);
	assert_int_equal(f.pci.bars[0].addr % 0x4000, 0);
	assert_true(f.pci.bars[0].addr >= PCI_MMIO_WINDOW_START);
	assert_true(f.pci.bars[2].addr >= f.pci.bars[0].addr + 0x4000);

	/* Host bridge and the device through mechanism #1. */
	assert_int_equal(cfg_read(bus, 0, 0), 0x12378086);
	assert_int_equal(cfg_read(bus, 1, 0), 0x10421AF4);
	assert_int_equal(cfg_read(bus, 2, 0), 0xFFFFFFFF);   /* empty slot */
	assert_int_equal(cfg_read(bus, 1, 0x10), (uint32_t)f.pci.bars[0].addr | 0x4);
	assert_int_equal(cfg_read(bus, 1, 0x3C) & 0xFFFF, 0x100u | f.pci.irq_line);

	/* BAR sizing as Linux does it, then moving the BAR. */
	cfg_write(bus, 1, 0x10, 0xFFFFFFFF);
	cfg_write(bus, 1, 0x14, 0xFFFFFFFF);
	assert_int_equal(cfg_read(bus, 1, 0x10), 0xFFFFC004u);
	assert_int_equal(cfg_read(bus, 1, 0x14), 0xFFFFFFFFu);
	cfg_write(bus, 1, 0x10, 0xE0000000);
	cfg_write(bus, 1, 0x14, 0);
	assert_int_equal(f.pci.bars[0].addr, 0xE0000000ull);

	/* MMIO is routed only while memory decoding is on. */
	uint32_t v = 0x55;
	assert_false(pci_mmio(bus, 0xE0000010, &v, 4, true));
	cfg_write(bus, 1, 0x04, 0x2);
	assert_true(pci_mmio(bus, 0xE0000010, &v, 4, true));
	assert_int_equal(f.last_bar, 0);
	assert_int_equal(f.last_off, 0x10);
	assert_int_equal(f.last_val, 0x55);
	assert_true(pci_mmio(bus, f.pci.bars[2].addr + 8, &v, 4, false));
	assert_int_equal(v, 0xC0DE2008u);
	assert_false(pci_mmio(bus, 0xE0004000, &v, 4, false));   /* just past BAR 0 */
	pci_bus_destroy(bus);
}

/* ---- MP table ---- */

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;
	for (size_t i = 0; i < n; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

static void test_mptable(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 16 << 20, false), 0);
	char err[256];
	assert_int_equal(mptable_write(&m, 3, NULL, err, sizeof(err)), 0);
	uint8_t *fp = guest_mem_ptr(&m, BOOT_MPTABLE_ADDR, 16);
	assert_memory_equal(fp, "_MP_", 4);
	assert_int_equal(sum(fp, 16), 0);
	uint32_t table = rd32(fp + 4);
	uint8_t *h = guest_mem_ptr(&m, table, 44);
	assert_memory_equal(h, "PCMP", 4);
	uint16_t len = rd16(h + 4);
	assert_int_equal(sum(h, len), 0);
	/* 3 processors, 2 buses, 1 IOAPIC, 15 ISA interrupts, 2 local. */
	assert_int_equal(rd16(h + 34), 3 + 2 + 1 + 15 + 2);
	uint8_t *e = h + 44;
	for (int i = 0; i < 3; i++, e += 20) {
		assert_int_equal(e[0], 0);      /* processor */
		assert_int_equal(e[1], i);      /* APIC id */
		assert_int_equal(e[3] & 1, 1);  /* enabled */
		assert_int_equal(!!(e[3] & 2), i == 0);   /* BSP */
	}
	guest_mem_destroy(&m);
}

/* ---- bzImage loader ---- */

static uint8_t *fake_bzimage(size_t *size, uint16_t version, uint8_t xloadflags)
{
	*size = 5 * 512 + 8192;
	uint8_t *img = calloc(1, *size);
	img[0x1F1] = 4;                   /* setup sectors */
	img[0x1FE] = 0x55;
	img[0x1FF] = 0xAA;
	img[0x201] = 0x66;                /* header ends at 0x268 */
	memcpy(img + 0x202, "HdrS", 4);
	memcpy(img + 0x206, &version, 2);
	uint32_t initrd_max = 0x37FFFFFF, cmdline_size = 255, init_size = 0x100000;
	memcpy(img + 0x22C, &initrd_max, 4);
	memcpy(img + 0x238, &cmdline_size, 4);
	memcpy(img + 0x260, &init_size, 4);
	img[0x236] = xloadflags;
	memcpy(img + 5 * 512, "KERNEL", 6);
	return img;
}

static void test_bzimage_load(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 32 << 20, false), 0);
	char path[] = "/tmp/kvz-unit-initrd-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "INITRD-DATA", 11), 11);
	close(fd);
	size_t size;
	uint8_t *img = fake_bzimage(&size, 0x020F, 0x1);
	struct boot_config cfg = {.kernel = "fake", .initrd = path, .cmdline = "console=ttyS0"};
	struct boot_entry entry;
	char err[256] = "";
	assert_int_equal(boot_load_bzimage(&m, img, size, &cfg, &entry, err, sizeof(err)), 0);
	assert_int_equal(entry.rip, BOOT_KERNEL_ADDR + 0x200);
	assert_int_equal(entry.rsi, BOOT_ZERO_PAGE_ADDR);
	assert_memory_equal(guest_mem_ptr(&m, BOOT_KERNEL_ADDR, 6), "KERNEL", 6);
	uint8_t *zp = guest_mem_ptr(&m, BOOT_ZERO_PAGE_ADDR, 4096);
	assert_int_equal(zp[0x210], 0xFF);                         /* type_of_loader */
	assert_int_equal(zp[0x211] & 0x81, 0x81);                  /* LOADED_HIGH | CAN_USE_HEAP */
	assert_int_equal(rd32(zp + 0x228), BOOT_CMDLINE_ADDR);
	assert_string_equal((char *)guest_mem_ptr(&m, BOOT_CMDLINE_ADDR, 1), "console=ttyS0");
	uint32_t initrd = rd32(zp + 0x218);
	assert_int_equal(rd32(zp + 0x21C), 11);
	assert_int_equal(initrd % 4096, 0);
	assert_true(initrd >= BOOT_KERNEL_ADDR + 0x100000 && initrd + 11 <= (32u << 20));
	assert_memory_equal(guest_mem_ptr(&m, initrd, 11), "INITRD-DATA", 11);
	/* e820: low RAM, the reserved BIOS area, RAM from 1 MiB. */
	assert_int_equal(zp[0x1E8], 3);
	uint64_t a, l;
	memcpy(&a, zp + 0x2D0 + 40, 8);
	memcpy(&l, zp + 0x2D0 + 48, 8);
	assert_int_equal(a, BOOT_KERNEL_ADDR);
	assert_int_equal(a + l, 32u << 20);
	assert_int_equal(rd32(zp + 0x2D0 + 20 + 16), 2);           /* reserved */
	unlink(path);

	/* Too long a command line, too old a protocol, no 64-bit entry. */
	cfg.initrd = NULL;
	char longcmd[400];
	memset(longcmd, 'x', sizeof(longcmd) - 1);
	longcmd[sizeof(longcmd) - 1] = 0;
	cfg.cmdline = longcmd;
	assert_int_equal(boot_load_bzimage(&m, img, size, &cfg, &entry, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "at most 255"));
	cfg.cmdline = NULL;
	free(img);
	img = fake_bzimage(&size, 0x020A, 0x1);
	assert_int_equal(boot_load_bzimage(&m, img, size, &cfg, &entry, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too old"));
	free(img);
	img = fake_bzimage(&size, 0x020F, 0x0);
	assert_int_equal(boot_load_bzimage(&m, img, size, &cfg, &entry, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "64-bit"));
	free(img);
	guest_mem_destroy(&m);
}

/* ---- ELF and PVH loaders ---- */

/* An ELF with one PT_LOAD at 2 MiB and, with pvh, a Xen PVH entry note. */
static uint8_t *fake_elf(size_t *size, bool pvh)
{
	*size = 4096;
	uint8_t *img = calloc(1, *size);
	Elf64_Ehdr eh = {.e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT,
			 .e_entry = 0x200010, .e_phoff = sizeof(Elf64_Ehdr),
			 .e_ehsize = sizeof(Elf64_Ehdr), .e_phentsize = sizeof(Elf64_Phdr),
			 .e_phnum = 2};
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	memcpy(img, &eh, sizeof(eh));
	Elf64_Phdr load = {.p_type = PT_LOAD, .p_offset = 1024, .p_paddr = 0x200000,
			   .p_filesz = 16, .p_memsz = 8192};
	Elf64_Phdr note = {.p_type = pvh ? PT_NOTE : PT_NULL, .p_offset = 2048, .p_filesz = 24};
	memcpy(img + eh.e_phoff, &load, sizeof(load));
	memcpy(img + eh.e_phoff + sizeof(load), &note, sizeof(note));
	memcpy(img + 1024, "ELF-PAYLOAD-0123", 16);
	Elf64_Nhdr nh = {.n_namesz = 4, .n_descsz = 8, .n_type = 18};
	uint64_t entry32 = 0x200040;
	memcpy(img + 2048, &nh, sizeof(nh));
	memcpy(img + 2048 + sizeof(nh), "Xen", 4);
	memcpy(img + 2048 + sizeof(nh) + 4, &entry32, 8);
	return img;
}

static void test_elf_and_pvh_load(void **state)
{
	(void)state;
	struct guest_mem m;
	assert_int_equal(guest_mem_init(&m, 32 << 20, false), 0);
	char err[256] = "";
	struct boot_entry e;
	struct boot_config cfg = {.kernel = "fake.elf", .cmdline = "x=1"};
	size_t size;
	uint8_t *img = fake_elf(&size, false);
	memset(guest_mem_ptr(&m, 0x200000 + 16, 16), 0xEE, 16);   /* bss must be cleared */
	assert_int_equal(boot_load_elf(&m, img, size, &cfg, &e, err, sizeof(err)), 0);
	assert_int_equal(e.kind, BOOT_ELF);
	assert_int_equal(e.rip, 0x200010);
	assert_int_equal(e.rsi, BOOT_ZERO_PAGE_ADDR);
	assert_memory_equal(guest_mem_ptr(&m, 0x200000, 16), "ELF-PAYLOAD-0123", 16);
	assert_int_equal(*(uint8_t *)guest_mem_ptr(&m, 0x200000 + 20, 1), 0);
	free(img);

	img = fake_elf(&size, true);
	assert_int_equal(boot_load_elf(&m, img, size, &cfg, &e, err, sizeof(err)), 0);
	assert_int_equal(e.kind, BOOT_PVH);
	assert_int_equal(e.rip, 0x200040);
	assert_int_equal(e.rbx, BOOT_PVH_START_INFO_ADDR);
	uint8_t *si = guest_mem_ptr(&m, BOOT_PVH_START_INFO_ADDR, 64);
	assert_int_equal(rd32(si), 0x336ec578);                  /* magic */
	assert_int_equal(rd32(si + 4), 1);                       /* version */
	uint64_t cmdline, memmap;
	memcpy(&cmdline, si + 24, 8);
	memcpy(&memmap, si + 40, 8);
	assert_int_equal(cmdline, BOOT_CMDLINE_ADDR);
	assert_string_equal((char *)guest_mem_ptr(&m, cmdline, 1), "x=1");
	assert_int_equal(rd32(si + 48), 3);                      /* memmap entries */
	uint64_t a, l;
	memcpy(&a, guest_mem_ptr(&m, memmap + 48, 8), 8);
	memcpy(&l, guest_mem_ptr(&m, memmap + 56, 8), 8);
	assert_int_equal(a, BOOT_KERNEL_ADDR);
	assert_int_equal(a + l, 32u << 20);

	/* Corrupt program header table. */
	Elf64_Ehdr *eh = (Elf64_Ehdr *)img;
	eh->e_phnum = 200;
	assert_int_equal(boot_load_elf(&m, img, size, &cfg, &e, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "corrupt"));
	free(img);
	guest_mem_destroy(&m);
}

/* ---- UART ---- */

static uint8_t uart_in(struct serial *s, unsigned reg)
{
	uint8_t v = 0;
	serial_pio(s, (uint16_t)(0x3F8 + reg), &v, 1, false);
	return v;
}

static void uart_out(struct serial *s, unsigned reg, uint8_t v)
{
	serial_pio(s, (uint16_t)(0x3F8 + reg), &v, 1, true);
}

static void test_uart_registers(void **state)
{
	(void)state;
	/* A VM with no KVM fd: interrupt line changes fail quietly enough. */
	struct vm *vm = calloc(1, sizeof(*vm));
	vm->vm_fd = -1;
	struct serial *s = serial_create(vm, 4);
	assert_false(serial_pio(s, 0x2F8, &(uint8_t){0}, 1, false));
	assert_int_equal(uart_in(s, 5) & 0x61, 0x60);            /* THRE|TEMT, no data */
	uart_out(s, 7, 0x5A);
	assert_int_equal(uart_in(s, 7), 0x5A);                   /* scratch */
	uart_out(s, 3, 0x83);                                    /* DLAB */
	uart_out(s, 0, 0x01);
	assert_int_equal(uart_in(s, 0), 0x01);
	uart_out(s, 3, 0x03);
	/* Loopback: what is sent comes back; modem lines follow MCR. */
	uart_out(s, 4, 0x1A);
	assert_int_equal(uart_in(s, 6) & 0xF0, 0x90);
	uart_out(s, 0, 'k');
	assert_int_equal(uart_in(s, 5) & 1, 1);
	assert_int_equal(uart_in(s, 0), 'k');
	assert_int_equal(uart_in(s, 5) & 1, 0);
	uart_out(s, 4, 0x00);
	/* Interrupt identification: THRE on enable, RX data first. */
	assert_int_equal(uart_in(s, 2) & 0x0F, 0x01);
	uart_out(s, 1, 0x02);
	assert_int_equal(uart_in(s, 2) & 0x0F, 0x02);
	assert_int_equal(uart_in(s, 2) & 0x0F, 0x01);            /* reading IIR acknowledged it */
	uart_out(s, 1, 0x03);
	serial_receive(s, (const uint8_t *)"ab", 2);
	assert_int_equal(uart_in(s, 2) & 0x0F, 0x04);
	assert_int_equal(uart_in(s, 0), 'a');
	assert_int_equal(uart_in(s, 0), 'b');
	uart_out(s, 2, 0x01);                                    /* FIFO on */
	assert_int_equal(uart_in(s, 2) & 0xC0, 0xC0);
	serial_destroy(s);
	free(vm);
}

/* ---- CPUID models ---- */

static struct kvm_cpuid2 *fake_cpuid(void)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	struct kvm_cpuid_entry2 e[] = {
		{.function = 1, .ecx = 0xFFFFFFFF, .edx = 0xFFFFFFFF, .ebx = 0x00000800},
		{.function = 7, .ebx = 0xFFFFFFFF, .ecx = 0xFFFFFFFF, .edx = 0xFFFFFFFF},
		{.function = 0xB, .index = 0}, {.function = 0xB, .index = 1},
		{.function = 0xD, .index = 0, .eax = 7}, {.function = 0xD, .index = 1, .eax = 1},
		{.function = 0x80000001, .ecx = 0xFFFFFFFF, .edx = 0xFFFFFFFF},
	};
	memcpy(c->entries, e, sizeof(e));
	c->nent = sizeof(e) / sizeof(e[0]);
	return c;
}

static const struct kvm_cpuid_entry2 *leaf(const struct kvm_cpuid2 *c, uint32_t f, uint32_t i)
{
	for (uint32_t k = 0; k < c->nent; k++)
		if (c->entries[k].function == f && c->entries[k].index == i)
			return &c->entries[k];
	return NULL;
}

static uint8_t kbc_in(struct i8042 *k, uint16_t port)
{
	uint8_t v = 0;
	assert_true(i8042_pio(k, port, &v, 1, false));
	return v;
}

static void kbc_out(struct i8042 *k, uint16_t port, uint8_t v)
{
	assert_true(i8042_pio(k, port, &v, 1, true));
}

/* What the keyboard says next: the status shows a byte, reading it takes it. */
static void expect_kbd(struct i8042 *k, uint8_t want)
{
	assert_int_equal(kbc_in(k, 0x64) & 0x21, 0x01);   /* full, not from AUX */
	assert_int_equal(kbc_in(k, 0x60), want);
}

static void test_i8042_keyboard(void **state)
{
	(void)state;
	struct vm *vm = calloc(1, sizeof(*vm));
	vm->vm_fd = -1;   /* IRQ pulses fail quietly */
	struct i8042 *k = i8042_create(vm);
	kbc_out(k, 0x64, 0xAA);                 /* controller self test */
	expect_kbd(k, 0x55);
	kbc_out(k, 0x60, 0xFF);                 /* keyboard reset: ACK, then BAT OK */
	expect_kbd(k, 0xFA);
	expect_kbd(k, 0xAA);
	assert_int_equal(kbc_in(k, 0x64) & 1, 0);
	kbc_out(k, 0x60, 0xF2);                 /* ID of an MF2 keyboard, translated */
	expect_kbd(k, 0xFA);
	expect_kbd(k, 0xAB);
	expect_kbd(k, 0x41);
	kbc_out(k, 0x60, 0xED);                 /* LEDs take a parameter */
	expect_kbd(k, 0xFA);
	kbc_out(k, 0x60, 0x07);
	expect_kbd(k, 0xFA);
	kbc_out(k, 0x60, 0xF0);                 /* scan-code set: set 3, then ask */
	expect_kbd(k, 0xFA);
	kbc_out(k, 0x60, 3);
	expect_kbd(k, 0xFA);
	kbc_out(k, 0x60, 0xF0);
	expect_kbd(k, 0xFA);
	kbc_out(k, 0x60, 0);
	expect_kbd(k, 0xFA);
	expect_kbd(k, 0x3F);                    /* 3 as the translation shows it */
	kbc_out(k, 0x60, 0xF0);
	expect_kbd(k, 0xFA);
	kbc_out(k, 0x60, 9);                    /* no set 9 */
	expect_kbd(k, 0xFE);
	kbc_out(k, 0x60, 0x12);                 /* not a command */
	expect_kbd(k, 0xFE);
	/* While the interface is disabled the answer waits in the keyboard. */
	kbc_out(k, 0x60, 0xEE);
	kbc_out(k, 0x64, 0xAD);
	expect_kbd(k, 0xEE);                    /* already in the output buffer */
	kbc_out(k, 0x64, 0x20);                 /* controller commands still answer */
	assert_int_equal(kbc_in(k, 0x60) & 0x10, 0x10);
	kbc_out(k, 0x60, 0xF4);                 /* writing to it enables it again */
	expect_kbd(k, 0xFA);
	/* The keyboard's state survives save and load, queue included. */
	kbc_out(k, 0x60, 0xFF);
	struct i8042_state st;
	i8042_get_state(k, &st);
	struct i8042 *k2 = i8042_create(vm);
	i8042_set_state(k2, &st);
	expect_kbd(k2, 0xFA);
	expect_kbd(k2, 0xAA);
	i8042_destroy(k2);
	i8042_destroy(k);
	free(vm);
}

static void test_cpuid_models(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = fake_cpuid();
	cpuid_apply_model(c, "kvz64", 2);
	cpuid_set_apic_id(c, 1);
	const struct kvm_cpuid_entry2 *l1 = leaf(c, 1, 0);
	assert_int_equal(l1->ecx & (1u << 13), 0);   /* cmpxchg16b */
	assert_int_equal(l1->ecx & (1u << 26), 0);   /* xsave */
	assert_int_equal(l1->ecx & (1u << 27), 0);   /* osxsave */
	assert_int_equal(l1->ecx & (1u << 28), 0);   /* avx */
	assert_int_not_equal(l1->ecx & (1u << 20), 0);   /* sse4.2 stays */
	assert_int_equal(l1->ecx & (1u << 25), 0);       /* aes: not in x86-64-v2 */
	assert_int_not_equal(l1->ecx & (1u << 31), 0);   /* hypervisor */
	assert_int_equal(l1->ebx >> 24, 1);              /* APIC id */
	assert_int_equal((l1->ebx >> 16) & 0xFF, 2);     /* logical CPUs */
	assert_int_equal(leaf(c, 7, 0)->ebx & (1u << 5), 0);   /* avx2 */
	assert_null(leaf(c, 0xD, 0));                          /* xsave leaf gone */
	assert_int_equal(leaf(c, 0xB, 1)->ebx, 2);
	assert_int_equal(leaf(c, 0xB, 0)->edx, 1);
	const struct kvm_cpuid_entry2 *kvm = leaf(c, 0x40000000, 0);
	assert_non_null(kvm);
	assert_memory_equal(&kvm->ebx, "KVMK", 4);
	assert_int_not_equal(leaf(c, 0x40000001, 0)->eax & (1u << 3), 0);   /* kvmclock */
	free(c);

	c = fake_cpuid();
	cpuid_apply_model(c, "host", 1);
	assert_int_not_equal(leaf(c, 1, 0)->ecx & (1u << 26), 0);   /* host keeps xsave */
	assert_non_null(leaf(c, 0xD, 0));
	free(c);
	assert_true(cpuid_model_valid("kvz64"));
	assert_false(cpuid_model_valid("pentium"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guest_mem_bounds),
		cmocka_unit_test(test_guest_mem_aligned),
		cmocka_unit_test(test_guest_mem_map_file),
		cmocka_unit_test(test_guest_mem_hole),
		cmocka_unit_test(test_pci_config_and_bars),
		cmocka_unit_test(test_mptable),
		cmocka_unit_test(test_bzimage_load),
		cmocka_unit_test(test_elf_and_pvh_load),
		cmocka_unit_test(test_uart_registers),
		cmocka_unit_test(test_i8042_keyboard),
		cmocka_unit_test(test_cpuid_models),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
