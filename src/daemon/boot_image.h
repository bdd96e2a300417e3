/* Direct boot of a VM from the kernel inside its own disk image, as Xen's
 * pygrub did: kvzd finds the first Linux partition (part_table.h), lists
 * its /boot with debugfs (e2fsprogs) and dumps the newest
 * vmlinuz-VERSION with its initrd.img-VERSION into a private directory of
 * kvzd's. The image is the guest's and hostile: debugfs reads only the
 * image, never a host path the image names; file names are checked
 * character by character before they reach a debugfs command; sizes are
 * capped, and debugfs runs with limits on memory, CPU, output size and
 * time (docs/security.md). */
#ifndef KVZD_BOOT_IMAGE_H
#define KVZD_BOOT_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BOOT_KERNEL_MAX (64ull << 20)
#define BOOT_INITRD_MAX (512ull << 20)
#define BOOT_VERSION_MAX 64

struct boot_entry {
	char version[BOOT_VERSION_MAX + 1];
	uint64_t kernel_size, initrd_size;
};

/* From the output of `debugfs -R 'ls -p DIR'` (lines
 * "/INODE/MODE/UID/GID/NAME/SIZE/"), the newest version (strverscmp) that
 * has both a regular vmlinuz-V and initrd.img-V within the caps. False when
 * there is none. Input is the guest's: fuzz/fuzz_boot_ls.c. */
bool boot_ls_pick(const char *ls, size_t len, struct boot_entry *out);

struct boot_files {
	char kernel[512], initrd[512];
	char root[32]; /* the kernel's root= for this partition: /dev/vda1 */
};

/* Finds the kernel in image and writes it and its initrd into dir (which
 * kvzd made, 0700): dir/vmlinuz and dir/initrd.img. On failure err says
 * why in one line and dir holds no partial file. */
int boot_image_extract(const char *image, const char *dir, struct boot_files *out, char *err,
		       size_t errlen);

#endif
