/* libFuzzer target: what kvzd reads of a VM's disk image to boot it
 * directly (boot_image.h). The first byte chooses the parser: even, the
 * partition table (part_table_find) of a disk whose size follows in the
 * next 8 bytes; odd, a debugfs /boot listing (boot_ls_pick). Whatever it
 * finds must lie inside the disk, within the caps, with a checked name. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "boot_image.h"
#include "part_table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parts(const uint8_t *data, size_t size)
{
	if (size < 9)
		return;
	uint64_t disk = 0;
	memcpy(&disk, data + 1, 8);
	struct part p[PART_MAX];
	char err[256];
	int n = part_table_find(data + 9, size - 9, disk, p, PART_MAX, err, sizeof(err));
	if (n < -1 || n > PART_MAX)
		abort();
	for (int i = 0; i < n; i++)
		if (p[i].offset >= disk || p[i].size > disk - p[i].offset || !p[i].size ||
		    p[i].number < 0 || p[i].number > 128)
			abort();
}

static void check_ls(const uint8_t *data, size_t size)
{
	struct boot_entry b;
	if (!boot_ls_pick((const char *)data + 1, size - 1, &b))
		return;
	size_t n = strlen(b.version);
	if (!n || n > BOOT_VERSION_MAX || strspn(b.version, "abcdefghijklmnopqrstuvwxyz"
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+~-") != n ||
	    !b.kernel_size || b.kernel_size > BOOT_KERNEL_MAX || !b.initrd_size ||
	    b.initrd_size > BOOT_INITRD_MAX)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size)
		return 0;
	if (data[0] & 1)
		check_ls(data, size);
	else
		check_parts(data, size);
	return 0;
}
