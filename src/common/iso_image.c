/* ISO 9660 image check (iso_image.h). */
#include "iso_image.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int iso_image_check(int fd, uint64_t *size, char *why, size_t whylen)
{
	struct stat st;
	char sig[5];
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "not a regular file");
		return -1;
	}
	if (st.st_size < ISO_MIN_BYTES) {
		snprintf(why, whylen, "too small for an ISO image");
		return -1;
	}
	if ((uint64_t)st.st_size > ISO_MAX_BYTES) {
		snprintf(why, whylen, "larger than an install medium (at most %lluG)", ISO_MAX_BYTES >> 30);
		return -1;
	}
	if (pread(fd, sig, sizeof(sig), ISO_SIGNATURE_AT) != (ssize_t)sizeof(sig) ||
	    memcmp(sig, "CD001", sizeof(sig))) {
		snprintf(why, whylen, "not an ISO 9660 image (no CD001 at byte %d)", ISO_SIGNATURE_AT);
		return -1;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}
