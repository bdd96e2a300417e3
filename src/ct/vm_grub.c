/* GRUB for BIOS in a template VM's disk (vm_image.h): SeaBIOS -> boot.img
 * in the MBR -> core.img in the gap before the partition -> grub.cfg ->
 * Debian's /vmlinuz and /initrd.img. Made from Debian's grub-pc-bin with
 * grub-mkimage; nothing is mounted and GRUB's own installer is not used
 * (grub-install wants the disk as a block device). */
#include "vm_image.h"

#include "part_table.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BOOT_CODE 440 /* boot.img's code: the disk id and partition table stay ours */
#define VERSION_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+~-"
#define CORE_MAX ((VM_IMAGE_PART_OFFSET / PART_SECTOR - 1) * PART_SECTOR)

/* In core.img, before its configuration is read: GRUB speaks on the
 * serial console from its first line (the only console kvz-vmm has). */
static const char early_cfg[] = "serial --unit=0 --speed=115200\n"
				"terminal_input serial\n"
				"terminal_output serial\n";

/* normal reads $prefix/grub.cfg; "(,msdos1)" is the boot disk's first
 * partition, whatever number the firmware gives the disk. */
#define GRUB_PREFIX "(,msdos1)/boot/grub"

const char vm_grub_cfg[] =
	"# Written by kvz-ct vm-image. GRUB boots Debian's /vmlinuz and /initrd.img\n"
	"# links, which the kernel's package moves on an upgrade: no update-grub.\n"
	"set timeout=0\n"
	"menuentry 'Debian GNU/Linux' {\n"
	"\tlinux /vmlinuz " VM_IMAGE_CMDLINE "\n"
	"\tinitrd /initrd.img\n"
	"}\n";

const char *vm_grub_dir(void)
{
	const char *d = getenv("KVZ_GRUB_PC_DIR");
	return d && d[0] ? d : "/usr/lib/grub/i386-pc";
}

static int read_boot_img(const char *dir, uint8_t code[BOOT_CODE], char *err, size_t len)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/boot.img", dir);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	uint8_t sec[PART_SECTOR];
	ssize_t n = fd < 0 ? -1 : read(fd, sec, sizeof(sec));
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(sec) || sec[510] != 0x55 || sec[511] != 0xaa) {
		snprintf(err, len, "GRUB for BIOS is missing or broken (%s: install Debian's "
			 "grub-pc-bin and grub-common): template disks boot by firmware through it", p);
		return -1;
	}
	memcpy(code, sec, BOOT_CODE);
	return 0;
}

/* grub-mkimage's core.img: diskboot.img, whose block list it fills in
 * (the sectors from 2 on, where the rest follows sector 1), the kernel
 * and the modules, read into *core. */
static int make_core(const char *dir, const char *work, uint8_t **core, size_t *n, char *err,
		     size_t len)
{
	char cfg[PATH_MAX], out[PATH_MAX];
	snprintf(cfg, sizeof(cfg), "%s/early.cfg", work);
	snprintf(out, sizeof(out), "%s/core.img", work);
	if (write_text(cfg, early_cfg, err, len) < 0)
		return -1;
	const char *argv[] = {"grub-mkimage", "-O", "i386-pc", "-d", dir, "-o", out, "-c", cfg,
			      "-p", GRUB_PREFIX, "biosdisk", "part_msdos", "ext2", "linux",
			      "serial", "terminal", "echo", "boot", "normal", "configfile", NULL};
	if (run_quiet(argv, err, len) < 0)
		return -1;
	int fd = open(out, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < PART_SECTOR || st.st_size > CORE_MAX) {
		snprintf(err, len, "grub-mkimage made no core.img of 512 to %u bytes", CORE_MAX);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*n = (size_t)st.st_size;
	*core = malloc(*n);
	ssize_t got = *core ? read(fd, *core, *n) : -1;
	close(fd);
	if (got != (ssize_t)*n) {
		snprintf(err, len, "cannot read %s", out);
		free(*core);
		*core = NULL;
		return -1;
	}
	return 0;
}

int vm_grub_install(const char *img, const char *work, char *err, size_t len)
{
	const char *dir = vm_grub_dir();
	uint8_t code[BOOT_CODE], mbr[PART_SECTOR];
	uint8_t *core = NULL;
	size_t n = 0;
	if (read_boot_img(dir, code, err, len) < 0 || make_core(dir, work, &core, &n, err, len) < 0)
		return -1;
	int fd = open(img, O_RDWR | O_CLOEXEC);
	int rc = fd >= 0 && pread(fd, mbr, sizeof(mbr), 0) == (ssize_t)sizeof(mbr) ? 0 : -1;
	if (rc == 0 && (mbr[510] != 0x55 || mbr[511] != 0xaa)) {
		snprintf(err, len, "%s has no partition table to keep", img);
		rc = -2;
	}
	if (rc == 0) {
		memcpy(mbr, code, BOOT_CODE);
		/* core.img first: a disk whose MBR points at it always has it. */
		if (pwrite(fd, core, n, PART_SECTOR) != (ssize_t)n ||
		    pwrite(fd, mbr, sizeof(mbr), 0) != (ssize_t)sizeof(mbr))
			rc = -1;
	}
	if (rc == -1)
		snprintf(err, len, "cannot write GRUB into %s: %s", img, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(core);
	return rc < 0 ? -1 : 0;
}

/* ---- Debian's links ---- */

static int debugfs_out(const char *img, const char *req, char **out, char *err, size_t len)
{
	char fs[PATH_MAX + 32], r[256];
	snprintf(fs, sizeof(fs), "%s?offset=%u", img, VM_IMAGE_PART_OFFSET);
	snprintf(r, sizeof(r), "%s", req);
	const char *argv[] = {"debugfs", "-R", r, fs, NULL};
	return run_capture(argv, out, err, len);
}

/* A link as Debian makes them, or a file put there by hand: GRUB boots
 * either. */
static int link_exists(const char *img, const char *path, bool *yes, char *err, size_t len)
{
	char req[64], *out = NULL;
	snprintf(req, sizeof(req), "stat /%s", path);
	if (debugfs_out(img, req, &out, err, len) < 0)
		return -1;
	*yes = out && (strstr(out, "Type: symlink") || strstr(out, "Type: regular"));
	free(out);
	return 0;
}

/* The newest "vmlinuz-VER" in /boot that has its initrd.img-VER. */
static int newest_kernel(const char *img, char *ver, size_t vlen, char *err, size_t len)
{
	char *out = NULL;
	if (debugfs_out(img, "ls -p /boot", &out, err, len) < 0)
		return -1;
	ver[0] = 0;
	char initrd[NAME_MAX + 32];
	char *all = out ? strdup(out) : NULL; /* the lines below are cut in out */
	for (char *save, *l = out ? strtok_r(out, "\n", &save) : NULL; l;
	     l = strtok_r(NULL, "\n", &save)) {
		/* "/INODE/MODE/UID/GID/NAME/SIZE/" */
		char *name = l;
		for (int i = 0; i < 4 && name; i++) /* l starts at the first */
			name = strchr(name + 1, '/');
		char *end = name ? strchr(name + 1, '/') : NULL;
		if (!end || strncmp(name + 1, "vmlinuz-", 8))
			continue;
		*end = 0;
		const char *v = name + 9;
		if (strspn(v, VERSION_CHARS) != strlen(v) || v[0] == '.')
			continue; /* never into the debugfs script */
		snprintf(initrd, sizeof(initrd), "/initrd.img-%s/", v);
		if (strlen(v) < vlen && all && strstr(all, initrd) &&
		    (!ver[0] || strverscmp(v, ver) > 0))
			snprintf(ver, vlen, "%s", v);
	}
	free(all);
	free(out);
	if (!ver[0]) {
		snprintf(err, len, "the template has no /boot/vmlinuz-VERSION with its initrd.img");
		return -1;
	}
	return 0;
}

int vm_grub_links(const char *img, FILE *script, char *err, size_t len)
{
	static const char *const links[] = {"vmlinuz", "initrd.img"};
	char ver[128] = "";
	for (size_t i = 0; i < 2; i++) {
		bool yes;
		if (link_exists(img, links[i], &yes, err, len) < 0)
			return -1;
		if (yes)
			continue;
		if (!ver[0] && newest_kernel(img, ver, sizeof(ver), err, len) < 0)
			return -1;
		/* Relative, as Debian's linux-update-symlinks makes them. */
		fprintf(script, "symlink /%s boot/%s-%s\n", links[i], links[i], ver);
	}
	return 0;
}

int vm_grub_links_present(const char *img, bool *kernel, bool *initrd, char *err, size_t len)
{
	if (link_exists(img, "vmlinuz", kernel, err, len) < 0)
		return -1;
	return link_exists(img, "initrd.img", initrd, err, len);
}
