#include "image_dirs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct image_dir {
	char given[PATH_MAX];  /* as the operator wrote it (absolute) */
	char real[PATH_MAX];   /* its realpath: a client may name either */
	int fd;                /* O_PATH; lookups start here */
};

struct image_dirs {
	struct image_dir dir[IMAGE_DIRS_MAX];
	size_t n;
};

static void strip_trailing_slashes(char *p)
{
	size_t n = strlen(p);
	while (n > 1 && p[n - 1] == '/')
		p[--n] = 0;
}

/* Adds path; returns 1 when it does not exist and may be skipped. */
static int add_dir(struct image_dirs *dirs, const char *path, bool optional,
		   char *err, size_t errlen)
{
	if (dirs->n == IMAGE_DIRS_MAX) {
		snprintf(err, errlen, "--images-dir: at most %d directories", IMAGE_DIRS_MAX);
		return -1;
	}
	struct image_dir *d = &dirs->dir[dirs->n];
	if (!realpath(path, d->real)) {
		if (optional && errno == ENOENT)
			return 1;
		snprintf(err, errlen, "--images-dir %s: %s", path, strerror(errno));
		return -1;
	}
	for (size_t i = 0; i < dirs->n; i++)
		if (!strcmp(dirs->dir[i].real, d->real))
			return 0;
	d->fd = open(d->real, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (d->fd < 0) {
		snprintf(err, errlen, "--images-dir %s: %s", path, strerror(errno));
		return -1;
	}
	snprintf(d->given, sizeof(d->given), "%s", path[0] == '/' ? path : d->real);
	strip_trailing_slashes(d->given);
	dirs->n++;
	return 0;
}

static int open_beneath(int dirfd, const char *rel);

/* Without openat2 (Linux before 5.6) every path would be refused as if it
 * were outside: say so once at start instead. */
static int check_openat2(const struct image_dirs *dirs, char *err, size_t errlen)
{
	if (!dirs->n)
		return 0;
	int fd = open_beneath(dirs->dir[0].fd, ".");
	if (fd >= 0) {
		close(fd);
		return 0;
	}
	snprintf(err, errlen, "openat2 on %s: %s (kvzd needs Linux 5.6 or later)",
		 dirs->dir[0].real, strerror(errno));
	return -1;
}

struct image_dirs *image_dirs_open(const char *const *paths, size_t n, const char *state_dir,
				   char *err, size_t errlen)
{
	struct image_dirs *dirs = calloc(1, sizeof(*dirs));
	if (!dirs) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	char own[PATH_MAX];
	snprintf(own, sizeof(own), "%s/images", state_dir);
	const char *defaults[] = {own, "/var/lib/kvz/images", "/boot"};
	const char *const *list = n ? paths : defaults;
	size_t count = n ? n : sizeof(defaults) / sizeof(defaults[0]);
	for (size_t i = 0; i < count; i++)
		if (add_dir(dirs, list[i], n == 0, err, errlen) < 0)
			goto fail;
	if (check_openat2(dirs, err, errlen))
		goto fail;
	return dirs;
fail:
	image_dirs_free(dirs);
	return NULL;
}

void image_dirs_free(struct image_dirs *dirs)
{
	if (!dirs)
		return;
	for (size_t i = 0; i < dirs->n; i++)
		close(dirs->dir[i].fd);
	free(dirs);
}

/* The part of path below dir, or NULL when path is not below it. Only
 * strings are compared: nothing outside the directories is touched. */
static const char *below(const char *dir, const char *path)
{
	size_t n = strlen(dir);
	if (!strcmp(dir, "/"))
		n = 0;
	else if (strncmp(path, dir, n))
		return NULL;
	if (path[n] != '/')
		return NULL;
	while (path[n] == '/')
		n++;
	return path[n] ? path + n : NULL;
}

/* O_PATH opens nothing (a FIFO does not block, a device is not opened),
 * and RESOLVE_BENEATH refuses "..", absolute symlinks and relative ones
 * that lead out of the directory, at every step of the walk. */
static int open_beneath(int dirfd, const char *rel)
{
	struct open_how how = {
		.flags = O_PATH | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof(how));
}

static int checked_path(int fd, char *out, size_t outlen)
{
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		return -1;
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t len = readlink(link, out, outlen);
	if (len <= 0 || (size_t)len >= outlen)
		return -1;
	out[len] = 0;
	return access(out, R_OK);
}

/* An O_PATH fd of path's readable regular file beneath a directory, with
 * its path in out; -1 for every refusal alike. */
static int find_beneath(const struct image_dirs *dirs, const char *path, char *out,
			size_t outlen)
{
	if (!path || path[0] != '/')
		return -1;
	for (size_t i = 0; i < dirs->n; i++) {
		const struct image_dir *d = &dirs->dir[i];
		const char *rel = below(d->given, path);
		if (!rel)
			rel = below(d->real, path);
		if (!rel)
			continue;
		int fd = open_beneath(d->fd, rel);
		if (fd < 0)
			continue;
		if (checked_path(fd, out, outlen) == 0)
			return fd;
		close(fd);
	}
	return -1;
}

int image_dirs_resolve(const struct image_dirs *dirs, const char *path, char *out,
		       size_t outlen)
{
	int fd = find_beneath(dirs, path, out, outlen);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

int image_dirs_open_file(const struct image_dirs *dirs, const char *path, char *out,
			 size_t outlen)
{
	int opath = find_beneath(dirs, path, out, outlen);
	if (opath < 0)
		return -1;
	/* Reopening the O_PATH fd opens the very file found beneath, whatever
	 * its name leads to by now. */
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", opath);
	int fd = open(link, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	close(opath);
	return fd;
}

void image_dirs_list(const struct image_dirs *dirs, char *out, size_t outlen)
{
	size_t len = 0;
	out[0] = 0;
	for (size_t i = 0; i < dirs->n && len < outlen; i++)
		len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? ", " : "",
					dirs->dir[i].given);
	if (!dirs->n)
		snprintf(out, outlen, "none");
}
