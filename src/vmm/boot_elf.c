/* Freestanding 64-bit ELF kernels (our test guests): PT_LOAD segments at
 * their physical addresses, entered in 64-bit mode like a bzImage, with a
 * zero page (e820, command line) in RSI. */
#include "boot.h"

#include <elf.h>
#include <stdio.h>
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

int boot_load_elf(struct guest_mem *m, const uint8_t *img, size_t size,
		  const struct boot_config *cfg, struct boot_entry *entry,
		  char *err, size_t errlen)
{
	Elf64_Ehdr eh;
	if (size < sizeof(eh)) {
		snprintf(err, errlen, "%s: truncated ELF", cfg->kernel);
		return -1;
	}
	memcpy(&eh, img, sizeof(eh));
	if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 ||
	    eh.e_phentsize != sizeof(Elf64_Phdr)) {
		snprintf(err, errlen, "%s: not a 64-bit x86-64 ELF kernel", cfg->kernel);
		return -1;
	}
	if (eh.e_phoff > size || (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > size - eh.e_phoff) {
		snprintf(err, errlen, "%s: corrupt ELF header", cfg->kernel);
		return -1;
	}
	int loaded = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, img + eh.e_phoff + i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD || !ph.p_memsz)
			continue;
		if (load_segment(m, img, size, &ph, cfg->kernel, err, errlen) < 0)
			return -1;
		loaded++;
	}
	if (!loaded) {
		snprintf(err, errlen, "%s: ELF has no loadable segment", cfg->kernel);
		return -1;
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
	entry->kind = BOOT_ELF;
	entry->rip = eh.e_entry;
	entry->rsi = BOOT_ZERO_PAGE_ADDR;
	return 0;
}
