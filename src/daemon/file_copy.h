/* Whole files and directories for snapshots: a disk cloned by reflink where
 * the filesystem can (FICLONE: btrfs, XFS), else copied (only its data
 * ranges, so a sparse image stays sparse), with progress and cancel. */
#ifndef KVZD_FILE_COPY_H
#define KVZD_FILE_COPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called after each piece of a full copy (and once at the end of a
 * reflink); false cancels the copy. */
typedef bool (*copy_progress_fn)(void *arg, uint64_t done, uint64_t total);

/* Makes dst (which must not exist, mode 0600) a copy of src. *reflinked
 * says whether FICLONE did it. On failure or cancel dst is gone and err
 * says why ("cancelled" for a cancel). */
int file_clone(const char *src, const char *dst, copy_progress_fn progress, void *arg,
	       bool *reflinked, char *err, size_t errlen);

/* rm -rf without following symlinks or crossing mounts; 0 when path is
 * absent. */
int remove_tree(const char *path);

/* Bytes allocated by the files beneath path. */
uint64_t tree_allocated(const char *path);

#endif
