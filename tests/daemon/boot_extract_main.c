/* boot-extract IMAGE DIR: kvzd's direct-boot finder (boot_image.h) on its
 * own, for tests/daemon/test_boot_image.py. Prints "root=R" and exits 0,
 * or prints kvzd's error line and exits 1. */
#include <stdio.h>

#include "boot_image.h"

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: boot-extract IMAGE DIR\n");
		return 2;
	}
	struct boot_files b;
	char err[512];
	if (boot_image_extract(argv[1], argv[2], &b, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	printf("root=%s\n", b.root);
	return 0;
}
