#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

int storage_create_image(const char *path, uint64_t size, bool fixed,
			 char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create disk image %s: %s", path, strerror(errno));
		return -1;
	}
	int rc = fixed ? posix_fallocate(fd, 0, (off_t)size)
		       : (ftruncate(fd, (off_t)size) < 0 ? errno : 0);
	if (!rc && fsync(fd) < 0)
		rc = errno;
	close(fd);
	if (rc) {
		snprintf(err, errlen, "cannot %s disk image %s to %llu bytes: %s",
			 fixed ? "allocate" : "size", path, (unsigned long long)size,
			 strerror(rc));
		unlink(path);
		return -1;
	}
	return 0;
}

void storage_usage(const char *path, uint64_t *used, uint64_t *size)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		*used = *size = 0;
		return;
	}
	*used = (uint64_t)st.st_blocks * 512;
	*size = (uint64_t)st.st_size;
}

uint64_t storage_free_bytes(const char *dir)
{
	struct statvfs vfs;
	if (statvfs(dir, &vfs) < 0)
		return 0;
	return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}
