/* fw_cfg and what firmware boot puts in it, read the way SeaBIOS reads it:
 * the file directory through the data port, the e820 map, the boot order
 * of the virtio disks, and the ACPI table loader executed by a small
 * loader here (allocate, add pointers, checksums) to check that the
 * tables it produces link up (RSDP -> XSDT -> FADT -> DSDT/FACS) with
 * valid checksums. Also the host bridge's PAM bytes. No KVM needed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "acpi_loader.h"
#include "firmware.h"
#include "fw_cfg.h"
#include "guest_mem.h"
#include "pci.h"

#define RAM (64u << 20)

static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

static void select_key(struct fw_cfg *c, uint16_t key)
{
	fw_cfg_pio(c, FW_CFG_PORT_SEL, &key, 2, true);
}

static void read_data(struct fw_cfg *c, void *out, size_t len)
{
	uint8_t *p = out;
	for (size_t i = 0; i < len; i++)
		fw_cfg_pio(c, FW_CFG_PORT_DATA, p + i, 1, false);
}

/* The file's bytes (malloc'd) and size, found through the directory. */
static uint8_t *read_file(struct fw_cfg *c, const char *name, uint32_t *size)
{
	uint8_t n[4];
	select_key(c, FW_CFG_FILE_DIR);
	read_data(c, n, 4);
	for (uint32_t i = 0; i < be32(n); i++) {
		uint8_t e[64];
		read_data(c, e, sizeof(e));
		if (strcmp((char *)e + 8, name))
			continue;
		*size = be32(e);
		uint8_t *data = malloc(*size + 1);
		select_key(c, (uint16_t)(e[4] << 8 | e[5]));
		read_data(c, data, *size);
		data[*size] = 0;
		return data;
	}
	return NULL;
}

static uint8_t sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;
	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + p[i]);
	return s;
}

struct loaded {
	char name[FW_CFG_NAME_LEN];
	uint8_t *data;        /* placed at "guest address" (uintptr_t)data */
	uint32_t size;
};

static struct loaded *find_loaded(struct loaded *f, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(f[i].name, name))
			return &f[i];
	fail_msg("loader names unknown file %s", name);
	return NULL;
}

/* Executes etc/table-loader as SeaBIOS's romfile_loader does, with host
 * addresses for guest addresses; returns the files placed. */
static int run_loader(struct fw_cfg *c, struct loaded *files)
{
	uint32_t len;
	uint8_t *cmds = read_file(c, "etc/table-loader", &len);
	assert_non_null(cmds);
	assert_int_equal(len % ACPI_LOADER_ENTRY_LEN, 0);
	int n = 0;
	for (uint32_t at = 0; at < len; at += ACPI_LOADER_ENTRY_LEN) {
		const uint8_t *e = cmds + at;
		uint32_t cmd, off, start, clen, align;
		memcpy(&cmd, e, 4);
		if (cmd == ACPI_LOADER_ALLOCATE) {
			struct loaded *f = &files[n++];
			strcpy(f->name, (const char *)e + 4);
			memcpy(&align, e + 60, 4);
			uint32_t sz;
			uint8_t *d = read_file(c, f->name, &sz);
			assert_non_null(d);
			f->data = aligned_alloc(align < 16 ? 16 : align, (sz + 63) & ~63u);
			memcpy(f->data, d, sz);
			f->size = sz;
			free(d);
			assert_true(e[64] == ACPI_LOADER_ZONE_FSEG || e[64] == ACPI_LOADER_ZONE_HIGH);
		} else if (cmd == ACPI_LOADER_ADD_POINTER) {
			struct loaded *dst = find_loaded(files, n, (const char *)e + 4);
			struct loaded *src = find_loaded(files, n, (const char *)e + 60);
			memcpy(&off, e + 116, 4);
			uint8_t size = e[120];
			assert_true(off + size <= dst->size);
			uint64_t v = 0;
			memcpy(&v, dst->data + off, size);
			v += (uintptr_t)src->data;
			memcpy(dst->data + off, &v, size);
		} else {
			assert_int_equal(cmd, ACPI_LOADER_ADD_CHECKSUM);
			struct loaded *f = find_loaded(files, n, (const char *)e + 4);
			memcpy(&off, e + 60, 4);
			memcpy(&start, e + 64, 4);
			memcpy(&clen, e + 68, 4);
			assert_true(start + clen <= f->size && off < f->size);
			f->data[off] = (uint8_t)(f->data[off] - sum(f->data + start, clen));
		}
	}
	free(cmds);
	return n;
}

static const uint8_t *ptr_at(const uint8_t *p, int size)
{
	uint64_t v = 0;
	memcpy(&v, p, (size_t)size);
	return (const uint8_t *)(uintptr_t)v;
}

static void check_sdt(const uint8_t *t, const char *sig)
{
	assert_memory_equal(t, sig, 4);
	uint32_t len;
	memcpy(&len, t + 4, 4);
	assert_int_equal(sum(t, len), 0);
}

struct fixture {
	struct guest_mem mem;
	struct pci_bus *bus;
	struct fw_cfg *c;
	struct pci_device disks[2];
};

static void add_disk(struct fixture *f, int i)
{
	struct pci_device *d = &f->disks[i];
	memset(d, 0, sizeof(*d));
	d->config[0] = 0xF4;   /* 1af4:1042, virtio-blk */
	d->config[1] = 0x1A;
	d->config[2] = 0x42;
	d->config[3] = 0x10;
	d->bars[0] = (struct pci_bar){.size = 0x4000};
	assert_int_equal(pci_register(f->bus, d), 0);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_int_equal(guest_mem_init(&f->mem, RAM, false), 0);
	f->bus = pci_bus_create();
	f->c = fw_cfg_create(&f->mem);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	fw_cfg_destroy(f->c);
	pci_bus_destroy(f->bus);
	guest_mem_destroy(&f->mem);
	free(f);
	return 0;
}

static void test_items_and_acpi_loader(void **state)
{
	struct fixture *f = *state;
	char err[256];
	struct boot_order order = {.kind = BOOT_ORDER_DEFAULT};
	assert_int_equal(firmware_fw_cfg_items(f->c, &f->mem, 3, f->bus, &order, err, sizeof(err)), 0);

	uint8_t sig[4], cpus[2];
	select_key(f->c, FW_CFG_SIGNATURE);
	read_data(f->c, sig, 4);
	assert_memory_equal(sig, "QEMU", 4);
	select_key(f->c, FW_CFG_NB_CPUS);
	read_data(f->c, cpus, 2);
	assert_int_equal(cpus[0], 3);

	uint32_t len;
	uint8_t *e820 = read_file(f->c, "etc/e820", &len);
	assert_non_null(e820);
	assert_int_equal(len, 20);   /* one RAM range: no RAM above 4 GiB */
	uint64_t base, size;
	memcpy(&base, e820, 8);
	memcpy(&size, e820 + 8, 8);
	assert_int_equal(base, 0);
	assert_int_equal(size, RAM);
	assert_int_equal(e820[16], 1);
	free(e820);
	uint8_t *port = read_file(f->c, "etc/sercon-port", &len);
	assert_int_equal(len, 2);
	assert_int_equal(port[0] | port[1] << 8, 0x3F8);
	free(port);
	assert_null(read_file(f->c, "bootorder", &len));   /* the firmware's own order */

	struct loaded files[4];
	int n = run_loader(f->c, files);
	assert_int_equal(n, 2);
	const uint8_t *rsdp = find_loaded(files, n, "etc/acpi/rsdp")->data;
	assert_memory_equal(rsdp, "RSD PTR ", 8);
	assert_int_equal(sum(rsdp, 20), 0);
	assert_int_equal(sum(rsdp, 36), 0);
	const uint8_t *xsdt = ptr_at(rsdp + 24, 8);
	check_sdt(xsdt, "XSDT");
	const uint8_t *fadt = ptr_at(xsdt + 36, 8);
	check_sdt(fadt, "FACP");
	check_sdt(ptr_at(xsdt + 44, 8), "APIC");
	check_sdt(ptr_at(fadt + 140, 8), "DSDT");
	/* The 32-bit DSDT field holds the low half (host addresses here). */
	assert_int_equal((uint32_t)(uintptr_t)ptr_at(fadt + 40, 4),
			 (uint32_t)(uintptr_t)ptr_at(fadt + 140, 8));
	const uint8_t *facs = ptr_at(fadt + 132, 8);
	assert_memory_equal(facs, "FACS", 4);
	assert_int_equal((uintptr_t)facs % 64, 0);
	for (int i = 0; i < n; i++)
		free(files[i].data);
}

static void test_bootorder_of_disks(void **state)
{
	struct fixture *f = *state;
	add_disk(f, 0);
	add_disk(f, 1);
	char out[256], err[256];
	struct boot_order order = {.kind = BOOT_ORDER_INDEX, .index = 1};
	int n = firmware_bootorder(f->bus, &order, out, sizeof(out), err, sizeof(err));
	assert_true(n > 0);
	char want[128];
	snprintf(want, sizeof(want), "/pci@i0cf8/scsi@%x/disk@0,0\n/pci@i0cf8/scsi@%x/disk@0,0\n",
		 f->disks[1].devfn >> 3, f->disks[0].devfn >> 3);
	assert_string_equal(out, want);
	order.index = 2;
	assert_int_equal(firmware_bootorder(f->bus, &order, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "there are 2 disks"));
	order.kind = BOOT_ORDER_CDROM;
	assert_int_equal(firmware_bootorder(f->bus, &order, out, sizeof(out), err, sizeof(err)), -1);
}

static void test_host_bridge_pam(void **state)
{
	struct fixture *f = *state;
	uint32_t addr = 0x80000000u | 0x2C, v;
	pci_pio(f->bus, 0xCF8, &addr, 4, true);
	pci_pio(f->bus, 0xCFC, &v, 4, false);
	assert_int_equal(v, 0x11001af4u);   /* QEMU's subsystem: SeaBIOS's "on QEMU" */
	addr = 0x80000000u | 0x58;
	v = 0x33333300u;                     /* PAM0 at 0x59 .. */
	pci_pio(f->bus, 0xCF8, &addr, 4, true);
	pci_pio(f->bus, 0xCFC, &v, 4, true);
	uint32_t back;
	pci_pio(f->bus, 0xCFC, &back, 4, false);
	assert_int_equal(back, 0x33333300u);
	pci_bus_reset_bridge(f->bus);
	pci_pio(f->bus, 0xCFC, &back, 4, false);
	assert_int_equal(back, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_items_and_acpi_loader, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bootorder_of_disks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_bridge_pam, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
