/* Loading a guest kernel: Linux bzImage (64-bit boot protocol) or a
 * freestanding 64-bit ELF, plus the memory layout both share. */
#ifndef KVZ_VMM_BOOT_H
#define KVZ_VMM_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"

/* Low-memory layout, below 1 MiB. */
#define BOOT_GDT_ADDR       0x0500
#define BOOT_ZERO_PAGE_ADDR 0x7000
#define BOOT_PML4_ADDR      0x9000
#define BOOT_PDPT_ADDR      0xA000
#define BOOT_PD_ADDR        0xB000   /* 4 pages: identity map of 4 GiB */
#define BOOT_CMDLINE_ADDR   0x20000
#define BOOT_CMDLINE_MAX    0x10000
#define BOOT_EBDA_START     0x9FC00  /* reserved from here to 1 MiB */
#define BOOT_MPTABLE_ADDR   0xF0000
#define BOOT_KERNEL_ADDR    0x100000

/* Selectors of the boot GDT; Linux's 64-bit entry wants these exact ones. */
#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define BOOT_TSS 0x20

struct boot_config {
	const char *kernel;
	const char *initrd;    /* may be NULL */
	const char *cmdline;   /* may be NULL */
};

/* BOOT_PVH: an ELF kernel (e.g. Linux's vmlinux) with a Xen PVH entry
 * note, entered in 32-bit protected mode, paging off, RBX = start info. */
enum boot_kind { BOOT_LINUX_BZIMAGE, BOOT_ELF, BOOT_PVH };

/* Where the BSP starts: 64-bit mode, paging on, RSI = zero page; or for
 * PVH 32-bit mode at rip with RBX = the hvm_start_info. */
struct boot_entry {
	enum boot_kind kind;
	uint64_t rip;
	uint64_t rsi;
	uint64_t rbx;
};

#define BOOT_PVH_START_INFO_ADDR 0x6000   /* start info, module list, memory map */

/* Loads kernel, initrd, command line, zero page with e820, page tables and
 * GDT into m. Returns 0, or -1 with one line in err. */
int boot_load(struct guest_mem *m, const struct boot_config *cfg, struct boot_entry *entry,
	      char *err, size_t errlen);

/* The entry boot_load() would return, from the kernel's headers, without
 * writing guest RAM (a restore replaces RAM; it needs the vCPUs' reset
 * state, not the images). The kernel and initrd are opened and, after
 * boot_keep_files(), kept for a later system_reset. Returns 0, or -1 with
 * one line in err. */
int boot_entry_only(const struct boot_config *cfg, struct boot_entry *entry, char *err,
		    size_t errlen);

/* Checks that path is a readable bzImage or ELF kernel without loading it,
 * so that a bad --kernel is reported before any KVM work. */
int boot_probe(const char *path, char *err, size_t errlen);

/* From now on boot_read_file() keeps the descriptor of each file it reads
 * open and serves later reads of the same path through it, so that
 * system_reset reloads the images of the first boot without opening files
 * (the seccomp filter forbids it). boot_forget_files() closes them and
 * stops keeping. */
void boot_keep_files(void);
void boot_forget_files(void);

/* Pieces shared by the loaders (boot_common.c). The result is malloc'd:
 * the caller frees it. */
void *boot_read_file(const char *path, size_t *size, char *err, size_t errlen);
void boot_setup_page_tables_and_gdt(struct guest_mem *m);
/* The byte that makes p[0..len) sum to 0 mod 256: the checksum of the MP
 * and ACPI tables. */
uint8_t boot_table_checksum(const uint8_t *p, size_t len);
/* Fills the e820 table of the zero page at zp. */
void boot_fill_e820(const struct guest_mem *m, uint8_t *zp);
int boot_write_cmdline(struct guest_mem *m, const char *cmdline, uint32_t max_len,
		       char *err, size_t errlen);

/* The entries of boot_entry_only(): head is the start of the bzImage (at
 * least its setup header), img the whole ELF file. */
int boot_bzimage_entry(const uint8_t *head, size_t size, const struct boot_config *cfg,
		       struct boot_entry *entry, char *err, size_t errlen);
int boot_elf_entry(const uint8_t *img, size_t size, const struct boot_config *cfg,
		   struct boot_entry *entry, char *err, size_t errlen);
int boot_load_bzimage(struct guest_mem *m, const uint8_t *img, size_t size,
		      const struct boot_config *cfg, struct boot_entry *entry,
		      char *err, size_t errlen);
int boot_load_elf(struct guest_mem *m, const uint8_t *img, size_t size,
		  const struct boot_config *cfg, struct boot_entry *entry,
		  char *err, size_t errlen);

/* MP table at BOOT_MPTABLE_ADDR: ncpus processors, ISA and PCI buses, the
 * IOAPIC and its interrupt routing (mptable.c). pci may be NULL. */
struct pci_bus;
int mptable_write(struct guest_mem *m, int ncpus, struct pci_bus *pci, char *err, size_t errlen);

#endif
