/* What every boot path shares: reading the kernel file, the identity page
 * tables and GDT for 64-bit entry, the e820 map, the command line. */
#include "boot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define E820_RAM 1
#define E820_RESERVED 2
#define ZP_E820_ENTRIES 0x1E8
#define ZP_E820_TABLE 0x2D0
#define ZP_E820_MAX 128

/* The whole file through pread from offset 0, so that a kept descriptor
 * can be read again; no fstat: the seccomp filter allows pread only. */
static void *read_all(int fd, const char *path, size_t *size, char *err, size_t errlen)
{
	size_t cap = 1u << 20, len = 0;
	uint8_t *buf = malloc(cap);
	for (;;) {
		if (!buf) {
			snprintf(err, errlen, "%s: out of memory", path);
			return NULL;
		}
		ssize_t n = pread(fd, buf + len, cap - len, (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
			free(buf);
			return NULL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == cap) {
			uint8_t *bigger = realloc(buf, cap * 2);
			if (!bigger)
				free(buf);
			buf = bigger;
			cap *= 2;
		}
	}
	*size = len;
	return buf;
}

static int open_regular(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	return fd;
}

/* Once boot_keep_files() was called, the descriptors of the files read
 * stay open, as PC firmware keeps reading its ROM: QMP's system_reset
 * reloads the kernel and initrd while the seccomp filter forbids opening
 * files. Descriptors rather than copies: a copy of a distribution's initrd
 * would cost tens of MiB for the VMM's lifetime. A reset therefore sees an
 * in-place rewrite of the file, not a replacement by rename or a deletion
 * (the old inode stays open). Process-wide because the loaders read their
 * files by path; the lock because a reset runs on the QMP thread. */
struct kept_file {
	struct kept_file *next;
	char *path;
	int fd;
};
static struct {
	pthread_mutex_t lock;
	bool on;
	struct kept_file *files;
} kept = {.lock = PTHREAD_MUTEX_INITIALIZER};

void boot_keep_files(void)
{
	pthread_mutex_lock(&kept.lock);
	kept.on = true;
	pthread_mutex_unlock(&kept.lock);
}

void boot_forget_files(void)
{
	pthread_mutex_lock(&kept.lock);
	while (kept.files) {
		struct kept_file *f = kept.files;
		kept.files = f->next;
		close(f->fd);
		free(f->path);
		free(f);
	}
	kept.on = false;
	pthread_mutex_unlock(&kept.lock);
}

/* Caller holds kept.lock. The kept descriptor of path, or -1. */
static int kept_fd_locked(const char *path)
{
	for (struct kept_file *f = kept.files; f; f = f->next)
		if (!strcmp(f->path, path))
			return f->fd;
	return -1;
}

/* Caller holds kept.lock. Takes fd; false when it could not be kept
 * (out of memory: only a later reset fails). */
static bool keep_locked(const char *path, int fd)
{
	struct kept_file *f = calloc(1, sizeof(*f));
	char *p = strdup(path);
	if (!f || !p) {
		free(f);
		free(p);
		return false;
	}
	*f = (struct kept_file){.next = kept.files, .path = p, .fd = fd};
	kept.files = f;
	return true;
}

void *boot_read_file(const char *path, size_t *size, char *err, size_t errlen)
{
	pthread_mutex_lock(&kept.lock);
	int fd = kept.on ? kept_fd_locked(path) : -1;
	bool was_kept = fd >= 0;
	if (!was_kept)
		fd = open_regular(path, err, errlen);
	void *buf = fd >= 0 ? read_all(fd, path, size, err, errlen) : NULL;
	if (fd >= 0 && !was_kept && !(buf && kept.on && keep_locked(path, fd)))
		close(fd);
	pthread_mutex_unlock(&kept.lock);
	return buf;
}

/* Up to len bytes from the start of path, through its kept descriptor
 * (kept from now on after boot_keep_files()). The count, or -1 with err. */
static ssize_t read_head(const char *path, void *buf, size_t len, char *err, size_t errlen)
{
	pthread_mutex_lock(&kept.lock);
	int fd = kept.on ? kept_fd_locked(path) : -1;
	bool was_kept = fd >= 0;
	if (!was_kept)
		fd = open_regular(path, err, errlen);
	ssize_t n = fd >= 0 ? pread(fd, buf, len, 0) : -1;
	if (fd >= 0 && n < 0)
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
	if (fd >= 0 && !was_kept && !(n >= 0 && kept.on && keep_locked(path, fd)))
		close(fd);
	pthread_mutex_unlock(&kept.lock);
	return n;
}

int boot_entry_only(const struct boot_config *cfg, struct boot_entry *entry, char *err,
		    size_t errlen)
{
	uint8_t head[4096];
	ssize_t n = read_head(cfg->kernel, head, sizeof(head), err, errlen);
	/* The initrd: opened (and kept) only, read when a reset needs it. */
	if (n < 0 || (cfg->initrd && read_head(cfg->initrd, head, 0, err, errlen) < 0))
		return -1;
	bool elf = n >= 4 && !memcmp(head, "\x7f" "ELF", 4);
	if (!elf && n >= 0x206 && !memcmp(head + 0x202, "HdrS", 4))
		return boot_bzimage_entry(head, (size_t)n, cfg, entry, err, errlen);
	if (!elf) {
		snprintf(err, errlen, "%s is neither a bzImage nor an ELF kernel", cfg->kernel);
		return -1;
	}
	/* The whole ELF for its notes: our test guests are small; a PVH
	 * vmlinux is read once, still without touching guest RAM. */
	size_t size;
	uint8_t *img = boot_read_file(cfg->kernel, &size, err, errlen);
	if (!img)
		return -1;
	int rc = boot_elf_entry(img, size, cfg, entry, err, errlen);
	free(img);
	return rc;
}

uint8_t boot_table_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return (uint8_t)(0x100 - sum);
}

void boot_setup_page_tables_and_gdt(struct guest_mem *m)
{
	uint64_t *pml4 = guest_mem_ptr(m, BOOT_PML4_ADDR, 4096);
	uint64_t *pdpt = guest_mem_ptr(m, BOOT_PDPT_ADDR, 4096);
	uint64_t *pd = guest_mem_ptr(m, BOOT_PD_ADDR, 4 * 4096);
	memset(pml4, 0, 4096);
	memset(pdpt, 0, 4096);
	/* 4 GiB identity map in 2 MiB pages: covers the kernel, zero page,
	 * command line and initrd wherever they are placed below 4 GiB. */
	pml4[0] = BOOT_PDPT_ADDR | 0x3;
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD_ADDR + i * 4096) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83;   /* present, writable, 2 MiB page */

	uint64_t *gdt = guest_mem_ptr(m, BOOT_GDT_ADDR, 5 * 8);
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00AF9B000000FFFFull;   /* BOOT_CS: 64-bit code */
	gdt[3] = 0x00CF93000000FFFFull;   /* BOOT_DS: flat data */
	gdt[4] = 0x00008B0000000067ull;   /* BOOT_TSS: busy 64-bit TSS at 0 */
}

static void e820_add(uint8_t *zp, uint64_t addr, uint64_t size, uint32_t type)
{
	uint8_t n = zp[ZP_E820_ENTRIES];
	if (n >= ZP_E820_MAX || !size)
		return;
	uint8_t *e = zp + ZP_E820_TABLE + 20 * n;
	memcpy(e, &addr, 8);
	memcpy(e + 8, &size, 8);
	memcpy(e + 16, &type, 4);
	zp[ZP_E820_ENTRIES] = (uint8_t)(n + 1);
}

void boot_fill_e820(const struct guest_mem *m, uint8_t *zp)
{
	zp[ZP_E820_ENTRIES] = 0;
	/* Low RAM up to the EBDA, then the BIOS area (MP table) reserved. */
	e820_add(zp, 0, BOOT_EBDA_START, E820_RAM);
	e820_add(zp, BOOT_EBDA_START, BOOT_KERNEL_ADDR - BOOT_EBDA_START, E820_RESERVED);
	e820_add(zp, BOOT_KERNEL_ADDR, m->lo_size - BOOT_KERNEL_ADDR, E820_RAM);
	if (m->hi_size)
		e820_add(zp, GUEST_MEM_HI_START, m->hi_size, E820_RAM);
}

int boot_write_cmdline(struct guest_mem *m, const char *cmdline, uint32_t max_len,
		       char *err, size_t errlen)
{
	const char *s = cmdline ? cmdline : "";
	size_t len = strlen(s);
	if (max_len > BOOT_CMDLINE_MAX - 1)
		max_len = BOOT_CMDLINE_MAX - 1;
	if (len > max_len) {
		snprintf(err, errlen, "--cmdline is %zu bytes, the kernel accepts at most %u", len,
			 max_len);
		return -1;
	}
	char *dst = guest_mem_ptr(m, BOOT_CMDLINE_ADDR, BOOT_CMDLINE_MAX);
	memcpy(dst, s, len + 1);
	return 0;
}

int boot_probe(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "cannot open kernel %s: %s", path, strerror(errno));
		return -1;
	}
	uint8_t head[0x210] = {0};
	ssize_t n = pread(fd, head, sizeof(head), 0);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read kernel %s: %s", path, strerror(errno));
		return -1;
	}
	bool elf = n >= 4 && !memcmp(head, "\x7f" "ELF", 4);
	bool bz = n >= 0x206 && !memcmp(head + 0x202, "HdrS", 4);
	if (!elf && !bz) {
		snprintf(err, errlen, "%s is neither a bzImage nor an ELF kernel", path);
		return -1;
	}
	return 0;
}

int boot_load(struct guest_mem *m, const struct boot_config *cfg, struct boot_entry *entry,
	      char *err, size_t errlen)
{
	if (m->lo_size < 2 * BOOT_KERNEL_ADDR) {
		snprintf(err, errlen, "--memory must be at least 2 MiB");
		return -1;
	}
	size_t size;
	uint8_t *img = boot_read_file(cfg->kernel, &size, err, errlen);
	if (!img)
		return -1;
	boot_setup_page_tables_and_gdt(m);
	int rc;
	if (size >= 4 && !memcmp(img, "\x7f" "ELF", 4))
		rc = boot_load_elf(m, img, size, cfg, entry, err, errlen);
	else if (size >= 0x206 && !memcmp(img + 0x202, "HdrS", 4))
		rc = boot_load_bzimage(m, img, size, cfg, entry, err, errlen);
	else {
		snprintf(err, errlen, "%s is neither a bzImage nor an ELF kernel", cfg->kernel);
		rc = -1;
	}
	free(img);
	return rc;
}
