#include "ct_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define META_NAME "kvz-backup.json"

static int fail(struct archive *a, const char *what, char *err, size_t len)
{
	snprintf(err, len, "%s: %s", what, archive_error_string(a) ? archive_error_string(a) : "unknown error");
	return -1;
}

static int write_meta(struct archive *w, const char *meta, char *err, size_t len)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, META_NAME);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, (la_int64_t)strlen(meta));
	archive_entry_set_mtime(e, time(NULL), 0);
	int rc = archive_write_header(w, e) != ARCHIVE_OK ||
			 archive_write_data(w, meta, strlen(meta)) != (la_ssize_t)strlen(meta)
		 ? fail(w, "cannot write backup metadata", err, len)
		 : 0;
	archive_entry_free(e);
	return rc;
}

static int copy_file_data(struct archive *disk, struct archive *w, char *err, size_t len)
{
	const void *buf;
	size_t size;
	la_int64_t off;
	int r;
	while ((r = archive_read_data_block(disk, &buf, &size, &off)) == ARCHIVE_OK)
		if (archive_write_data(w, buf, size) < 0)
			return fail(w, "cannot write archive data", err, len);
	return r == ARCHIVE_EOF ? 0 : fail(disk, "cannot read file", err, len);
}

/* Walks dir with archive_read_disk and stores paths relative to it. */
static int pack_tree(struct archive *w, const char *dir, char *err, size_t len)
{
	/* No user or group names: the numbers are the container's own ids (its
	 * /etc/passwd, not the host's, gives them names). */
	struct archive *disk = archive_read_disk_new();
	archive_read_disk_set_behavior(disk, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
	int rc = -1;
	if (archive_read_disk_open(disk, dir) != ARCHIVE_OK) {
		fail(disk, "cannot read the tree", err, len);
		goto out;
	}
	for (;;) {
		struct archive_entry *e = archive_entry_new();
		int r = archive_read_next_header2(disk, e);
		if (r == ARCHIVE_EOF) {
			archive_entry_free(e);
			break;
		}
		if (r != ARCHIVE_OK) {
			archive_entry_free(e);
			fail(disk, "cannot walk the tree", err, len);
			goto out;
		}
		archive_read_disk_descend(disk);
		const char *p = archive_entry_pathname(e);
		if (!strcmp(p, ".")) {
			archive_entry_free(e);
			continue;
		}
		if (archive_write_header(w, e) != ARCHIVE_OK ||
		    (archive_entry_size(e) > 0 && copy_file_data(disk, w, err, len) < 0)) {
			if (!err[0])
				fail(w, "cannot write archive entry", err, len);
			archive_entry_free(e);
			goto out;
		}
		archive_entry_free(e);
	}
	rc = 0;
out:
	archive_read_free(disk);
	return rc;
}

int archive_pack_dir(const char *dir, const char *out, const char *meta_json,
		     char *err, size_t len)
{
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)) || chdir(dir) < 0) {
		snprintf(err, len, "cannot enter %s: %s", dir, strerror(errno));
		return -1;
	}
	err[0] = 0;
	struct archive *w = archive_write_new();
	archive_write_add_filter_zstd(w);
	archive_write_set_format_pax_restricted(w);
	int rc = -1;
	/* 0600: a backup holds every file of the container, /etc/shadow too. */
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || fchmod(fd, 0600) < 0) {
		snprintf(err, len, "cannot create %s: %s", out, strerror(errno));
		goto out;
	}
	if (archive_write_open_fd(w, fd) != ARCHIVE_OK) {
		fail(w, "cannot create archive", err, len);
		goto out;
	}
	if (meta_json && write_meta(w, meta_json, err, len) < 0)
		goto out;
	if (pack_tree(w, ".", err, len) < 0)
		goto out;
	if (archive_write_close(w) != ARCHIVE_OK) {
		fail(w, "cannot finish archive", err, len);
		goto out;
	}
	rc = 0;
out:
	archive_write_free(w);
	if (fd >= 0 && close(fd) < 0 && rc == 0) {
		snprintf(err, len, "cannot write %s: %s", out, strerror(errno));
		rc = -1;
	}
	if (chdir(cwd) < 0 && rc == 0) {
		snprintf(err, len, "cannot return to %s: %s", cwd, strerror(errno));
		rc = -1;
	}
	if (rc < 0)
		remove(out);
	return rc;
}

static struct archive *open_reader(const char *in, char *err, size_t len)
{
	struct archive *r = archive_read_new();
	archive_read_support_filter_all(r);
	archive_read_support_format_all(r);
	if (archive_read_open_filename(r, in, 1 << 16) != ARCHIVE_OK) {
		fail(r, in, err, len);
		archive_read_free(r);
		return NULL;
	}
	return r;
}

char *archive_read_meta(const char *in, char *err, size_t len)
{
	struct archive *r = open_reader(in, err, len);
	if (!r)
		return NULL;
	struct archive_entry *e;
	char *meta = NULL;
	if (archive_read_next_header(r, &e) == ARCHIVE_OK &&
	    !strcmp(archive_entry_pathname(e), META_NAME) && archive_entry_size(e) < 65536) {
		size_t n = (size_t)archive_entry_size(e);
		meta = calloc(1, n + 1);
		if (meta && archive_read_data(r, meta, n) != (la_ssize_t)n) {
			free(meta);
			meta = NULL;
		}
	}
	if (!meta)
		snprintf(err, len, "%s is not a kvz-ct backup (no %s at its start)", in, META_NAME);
	archive_read_free(r);
	return meta;
}

/* Rewrites an entry's path (and hard-link target) to live under dir. */
static void prefix_entry(struct archive_entry *e, const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, archive_entry_pathname(e));
	archive_entry_copy_pathname(e, path);
	const char *hl = archive_entry_hardlink(e);
	if (hl) {
		snprintf(path, sizeof(path), "%s/%s", dir, hl);
		archive_entry_copy_hardlink(e, path);
	}
}

static int copy_entry_data(struct archive *r, struct archive *w, char *err, size_t len)
{
	const void *buf;
	size_t size;
	la_int64_t off;
	int rc;
	while ((rc = archive_read_data_block(r, &buf, &size, &off)) == ARCHIVE_OK)
		if (archive_write_data_block(w, buf, size, off) != ARCHIVE_OK)
			return fail(w, "cannot write file", err, len);
	return rc == ARCHIVE_EOF ? 0 : fail(r, "cannot read archive", err, len);
}

int archive_unpack(const char *in, const char *dir, char *err, size_t len)
{
	struct archive *r = open_reader(in, err, len);
	if (!r)
		return -1;
	struct archive *w = archive_write_disk_new();
	archive_write_disk_set_options(w, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER |
					      ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_XATTR |
					      ARCHIVE_EXTRACT_SECURE_NODOTDOT |
					      ARCHIVE_EXTRACT_SECURE_SYMLINKS);
	/* Owners by number, never looked up by name on the host: on disk a
	 * container's files keep its own ids (0..65535; idmapped mounts shift
	 * them at run time). */
	int rc = -1;
	struct archive_entry *e;
	int h;
	while ((h = archive_read_next_header(r, &e)) == ARCHIVE_OK) {
		if (!strcmp(archive_entry_pathname(e), META_NAME))
			continue;
		prefix_entry(e, dir);
		if (archive_write_header(w, e) != ARCHIVE_OK) {
			fail(w, archive_entry_pathname(e), err, len);
			goto out;
		}
		if (archive_entry_size(e) > 0 && copy_entry_data(r, w, err, len) < 0)
			goto out;
		if (archive_write_finish_entry(w) != ARCHIVE_OK) {
			fail(w, archive_entry_pathname(e), err, len);
			goto out;
		}
	}
	if (h != ARCHIVE_EOF) {
		fail(r, "cannot read archive", err, len);
		goto out;
	}
	rc = 0;
out:
	archive_write_close(w);
	archive_write_free(w);
	archive_read_free(r);
	return rc;
}
