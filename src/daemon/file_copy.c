#include "file_copy.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

/* A full copy moves this much between progress reports. */
#define COPY_CHUNK (8u << 20)

/* Copies the data ranges of in to out (holes stay holes). */
static int copy_data(int in, int out, uint64_t size, copy_progress_fn progress, void *arg,
		     char *err, size_t errlen)
{
	off_t pos = 0;
	uint64_t done = 0;
	while ((uint64_t)pos < size) {
		off_t data = lseek(in, pos, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;   /* only a hole is left */
		off_t hole = data < 0 ? -1 : lseek(in, data, SEEK_HOLE);
		if (data < 0 || hole < 0) {
			snprintf(err, errlen, "seeking data: %s", strerror(errno));
			return -1;
		}
		while (data < hole) {
			size_t n = (size_t)(hole - data) < COPY_CHUNK ? (size_t)(hole - data) : COPY_CHUNK;
			off_t opos = data;
			ssize_t w = copy_file_range(in, &data, out, &opos, n, 0);
			if (w <= 0) {
				snprintf(err, errlen, "copying: %s", w < 0 ? strerror(errno) : "short copy");
				return -1;
			}
			done = (uint64_t)data;
			if (progress && !progress(arg, done, size)) {
				snprintf(err, errlen, "cancelled");
				return -1;
			}
		}
		pos = hole;
	}
	if (ftruncate(out, (off_t)size) < 0) {
		snprintf(err, errlen, "setting size: %s", strerror(errno));
		return -1;
	}
	/* The holes count as done: the whole size is the total. */
	if (progress && !progress(arg, size, size)) {
		snprintf(err, errlen, "cancelled");
		return -1;
	}
	return 0;
}

int file_clone(const char *src, const char *dst, copy_progress_fn progress, void *arg,
	       bool *reflinked, char *err, size_t errlen)
{
	*reflinked = false;
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "cannot open %s: %s", src, strerror(errno));
		return -1;
	}
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (out < 0) {
		snprintf(err, errlen, "cannot create %s: %s", dst, strerror(errno));
		close(in);
		return -1;
	}
	struct stat st;
	int rc = -1;
	char why[300] = "";
	if (fstat(in, &st) < 0) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
	} else if (ioctl(out, FICLONE, in) == 0) {
		*reflinked = true;
		rc = progress && !progress(arg, (uint64_t)st.st_size, (uint64_t)st.st_size) ? -1 : 0;
		if (rc)
			snprintf(why, sizeof(why), "cancelled");
	} else {
		rc = copy_data(in, out, (uint64_t)st.st_size, progress, arg, why, sizeof(why));
	}
	if (rc == 0 && fsync(out) < 0) {
		snprintf(why, sizeof(why), "fsync: %s", strerror(errno));
		rc = -1;
	}
	close(in);
	if (close(out) < 0 && rc == 0) {
		snprintf(why, sizeof(why), "%s", strerror(errno));
		rc = -1;
	}
	if (rc) {
		unlink(dst);
		if (!strcmp(why, "cancelled"))
			snprintf(err, errlen, "cancelled");
		else
			snprintf(err, errlen, "copying %s to %s: %s", src, dst, why);
	}
	return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = flag == FTW_DP ? rmdir(path) : unlink(path);
	return r < 0 && errno != ENOENT ? -1 : 0;
}

int remove_tree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* nftw has no argument for its callback: the sum lives here, for one walk
 * at a time (tree_allocated holds the lock). */
static uint64_t walk_sum;
static pthread_mutex_t walk_lock = PTHREAD_MUTEX_INITIALIZER;

static int add_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F)
		walk_sum += (uint64_t)st->st_blocks * 512;
	return 0;
}

uint64_t tree_allocated(const char *path)
{
	pthread_mutex_lock(&walk_lock);
	walk_sum = 0;
	nftw(path, add_entry, 16, FTW_PHYS | FTW_MOUNT);
	uint64_t sum = walk_sum;
	pthread_mutex_unlock(&walk_lock);
	return sum;
}
