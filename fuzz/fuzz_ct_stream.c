/* libFuzzer target: a container's migration stream as a target kvzd reads
 * it from its migration port after the proof (ct_stream.h). The input is
 * the stream, read from a memfd; the page server sessions of 'C' are a
 * stand-in that reads nothing (and fails for an odd count, to reach both
 * outcomes). Whatever the input: nothing is written outside the images
 * directory, nothing there but plain files of allowed names, the private
 * image no larger than its limit, and a refusal says why in one line. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "ct_stream.h"

#define MAX_DISK (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int pages(void *arg, int sock, int pre, char *err, size_t len)
{
	(void)arg;
	(void)sock;
	if (pre % 2) {
		snprintf(err, len, "receiving the memory: stand-in refuses %d", pre);
		return -1;
	}
	return 0;
}

/* Checks the images directory and empties it; the count of entries in
 * top (the directory around it: images and disk only). */
static void check_and_clear(const char *top, const char *images)
{
	DIR *d = opendir(images);
	if (!d)
		abort();
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", images, e->d_name);
		if (!ct_image_name_ok(e->d_name, strlen(e->d_name)) || lstat(path, &st) < 0 ||
		    !S_ISREG(st.st_mode) || (uint64_t)st.st_size > CT_IMAGE_MAX_BYTES)
			abort();
		unlink(path);
	}
	closedir(d);
	d = opendir(top);
	if (!d)
		abort();
	int n = 0;
	while ((e = readdir(d)))
		n++;
	closedir(d);
	if (n != 4) /* ".", "..", images, disk */
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char top[64], images[96], disk[96];
	if (!top[0]) {
		snprintf(top, sizeof(top), "/tmp/fuzz_ct_stream.XXXXXX");
		if (!mkdtemp(top))
			abort();
		snprintf(images, sizeof(images), "%s/images", top);
		snprintf(disk, sizeof(disk), "%s/disk", top);
		if (mkdir(images, 0700) < 0)
			abort();
	}
	int fd = memfd_create("stream", MFD_CLOEXEC);
	int dfd = open(images, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int disk_fd = open(disk, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || dfd < 0 || disk_fd < 0 || write(fd, data, size) != (ssize_t)size ||
	    lseek(fd, 0, SEEK_SET) != 0)
		abort();
	struct ct_sink s = {.images_fd = dfd, .disk_fd = disk_fd, .max_disk = MAX_DISK,
			    .pages = pages};
	char err[600] = "";
	int rc = ct_stream_receive(fd, &s, err, sizeof(err));
	struct stat st;
	if (fstat(disk_fd, &st) < 0 || (uint64_t)st.st_size > MAX_DISK)
		abort();
	if (rc != 0 && (!err[0] || strchr(err, '\n')))
		abort();
	close(fd);
	close(dfd);
	close(disk_fd);
	check_and_clear(top, images);
	return 0;
}
