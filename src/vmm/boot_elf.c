/* ELF kernels. Freestanding 64-bit ones (our test guests): PT_LOAD
 * segments at their physical addresses, entered in 64-bit mode like a
 * bzImage, with a zero page (e820, command line) in RSI. Those with a PVH
 * entry note (XEN_ELFNOTE_PHYS32_ENTRY, e.g. Linux's vmlinux) are entered
 * there in 32-bit mode with an hvm_start_info (PVH boot ABI). */
#include "boot.h"

#include <elf.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int load_segment(struct guest_mem *m, const uint8_t *img, size_t size, const Elf64_Phdr *ph,
			const char *path, char *err, size_t errlen)
{
	if (ph->p_filesz > ph->p_memsz || ph->p_offset > size || ph->p_filesz > size - ph->p_offset) {
		snprintf(err, errlen, "%s: corrupt ELF program header", path);
		return -1;
	}
	uint8_t *dst = guest_mem_ptr(m, ph->p_paddr, ph->p_memsz);
	if (!dst || ph->p_paddr < BOOT_KERNEL_ADDR) {
		snprintf(err, errlen, "%s: segment at 0x%llx+0x%llx is outside guest RAM above 1 MiB",
			 path, (unsigned long long)ph->p_paddr, (unsigned long long)ph->p_memsz);
		return -1;
	}
	memcpy(dst, img + ph->p_offset, ph->p_filesz);
	memset(dst + ph->p_filesz, 0, ph->p_memsz - ph->p_filesz);
	return 0;
}

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578
#define E820_RAM 1
#define E820_RESERVED 2

/* Returns the 32-bit PVH entry from the notes, or 0 when there is none. */
static uint32_t find_pvh_entry(const uint8_t *img, size_t size, const Elf64_Phdr *ph)
{
	if (ph->p_offset > size || ph->p_filesz > size - ph->p_offset)
		return 0;
	const uint8_t *p = img + ph->p_offset, *end = p + ph->p_filesz;
	while (end - p >= (ptrdiff_t)sizeof(Elf64_Nhdr)) {
		Elf64_Nhdr nh;
		memcpy(&nh, p, sizeof(nh));
		size_t name_len = (nh.n_namesz + 3u) & ~3u, desc_len = (nh.n_descsz + 3u) & ~3u;
		const uint8_t *name = p + sizeof(nh), *desc = name + name_len;
		if (name_len > (size_t)(end - name) || desc_len > (size_t)(end - desc))
			return 0;
		if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
		    !memcmp(name, "Xen", 4) && nh.n_descsz >= 4) {
			uint32_t entry;
			memcpy(&entry, desc, 4);
			return entry;
		}
		p = desc + desc_len;
	}
	return 0;
}

struct pvh_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

struct pvh_module {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

struct pvh_memmap {
	uint64_t addr, size;
	uint32_t type, reserved;
};

static int pvh_setup(struct guest_mem *m, const struct boot_config *cfg, uint64_t kernel_end,
		     char *err, size_t errlen)
{
	struct pvh_start_info si = {.magic = HVM_START_MAGIC, .version = 1,
				    .cmdline_paddr = BOOT_CMDLINE_ADDR};
	uint64_t base = BOOT_PVH_START_INFO_ADDR;
	uint64_t mod_addr = base + 0x100, map_addr = base + 0x200;
	if (cfg->initrd) {
		size_t size;
		uint8_t *data = boot_read_file(cfg->initrd, &size, err, errlen);
		if (!data)
			return -1;
		uint64_t addr = m->lo_size >= size ? (m->lo_size - size) & ~0xFFFull : 0;
		if (addr < kernel_end) {
			snprintf(err, errlen, "initrd %s does not fit in guest RAM: raise --memory",
				 cfg->initrd);
			free(data);
			return -1;
		}
		memcpy(guest_mem_ptr(m, addr, size), data, size);
		free(data);
		struct pvh_module mod = {.paddr = addr, .size = size};
		memcpy(guest_mem_ptr(m, mod_addr, sizeof(mod)), &mod, sizeof(mod));
		si.nr_modules = 1;
		si.modlist_paddr = mod_addr;
	}
	struct pvh_memmap map[4] = {
		{0, BOOT_EBDA_START, E820_RAM, 0},
		{BOOT_EBDA_START, BOOT_KERNEL_ADDR - BOOT_EBDA_START, E820_RESERVED, 0},
		{BOOT_KERNEL_ADDR, m->lo_size - BOOT_KERNEL_ADDR, E820_RAM, 0},
		{GUEST_MEM_HI_START, m->hi_size, E820_RAM, 0},
	};
	si.memmap_entries = m->hi_size ? 4 : 3;
	si.memmap_paddr = map_addr;
	memcpy(guest_mem_ptr(m, map_addr, sizeof(map)), map, sizeof(map));
	memcpy(guest_mem_ptr(m, base, sizeof(si)), &si, sizeof(si));
	return 0;
}

static int elf_header(const uint8_t *img, size_t size, const char *path, Elf64_Ehdr *eh,
		      char *err, size_t errlen)
{
	if (size < sizeof(*eh)) {
		snprintf(err, errlen, "%s: truncated ELF", path);
		return -1;
	}
	memcpy(eh, img, sizeof(*eh));
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr)) {
		snprintf(err, errlen, "%s: not a 64-bit x86-64 ELF kernel", path);
		return -1;
	}
	if (eh->e_phoff > size || (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr) > size - eh->e_phoff) {
		snprintf(err, errlen, "%s: corrupt ELF header", path);
		return -1;
	}
	return 0;
}

/* The PVH entry of the first note that has one, or 0. */
static uint32_t pvh_entry_of(const uint8_t *img, size_t size, const Elf64_Ehdr *eh)
{
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh->e_phoff + i * sizeof(ph), sizeof(ph));
		uint32_t e = ph.p_type == PT_NOTE ? find_pvh_entry(img, size, &ph) : 0;
		if (e)
			return e;
	}
	return 0;
}

int boot_elf_entry(const uint8_t *img, size_t size, const struct boot_config *cfg,
		   struct boot_entry *entry, char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	if (elf_header(img, size, cfg->kernel, &eh, err, errlen) < 0)
		return -1;
	uint32_t pvh = pvh_entry_of(img, size, &eh);
	if (pvh)
		*entry = (struct boot_entry){.kind = BOOT_PVH, .rip = pvh,
					     .rbx = BOOT_PVH_START_INFO_ADDR};
	else
		*entry = (struct boot_entry){.kind = BOOT_ELF, .rip = eh.e_entry,
					     .rsi = BOOT_ZERO_PAGE_ADDR};
	return 0;
}

int boot_load_elf(struct guest_mem *m, const uint8_t *img, size_t size,
		  const struct boot_config *cfg, struct boot_entry *entry,
		  char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	if (elf_header(img, size, cfg->kernel, &eh, err, errlen) < 0)
		return -1;
	int loaded = 0;
	uint32_t pvh_entry = pvh_entry_of(img, size, &eh);
	uint64_t kernel_end = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || !ph.p_memsz)
			continue;
		if (load_segment(m, img, size, &ph, cfg->kernel, err, errlen) < 0)
			return -1;
		if (ph.p_paddr + ph.p_memsz > kernel_end)
			kernel_end = ph.p_paddr + ph.p_memsz;
		loaded++;
	}
	if (!loaded) {
		snprintf(err, errlen, "%s: ELF has no loadable segment", cfg->kernel);
		return -1;
	}
	if (pvh_entry) {
		if (boot_write_cmdline(m, cfg->cmdline, BOOT_CMDLINE_MAX - 1, err, errlen) < 0 ||
		    pvh_setup(m, cfg, kernel_end, err, errlen) < 0)
			return -1;
		return boot_elf_entry(img, size, cfg, entry, err, errlen);
	}
	uint8_t *zp = guest_mem_ptr(m, BOOT_ZERO_PAGE_ADDR, 4096);
	memset(zp, 0, 4096);
	uint32_t ptr = BOOT_CMDLINE_ADDR;
	memcpy(zp + 0x228, &ptr, 4);
	if (boot_write_cmdline(m, cfg->cmdline, BOOT_CMDLINE_MAX - 1, err, errlen) < 0)
		return -1;
	boot_fill_e820(m, zp);
	if (cfg->initrd) {
		snprintf(err, errlen, "--initrd is only supported with a bzImage kernel");
		return -1;
	}
	return boot_elf_entry(img, size, cfg, entry, err, errlen);
}
