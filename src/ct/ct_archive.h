/* Tar archives compressed with zstd (libarchive): template caches and
 * container backups. */
#ifndef KVZ_CT_ARCHIVE_H
#define KVZ_CT_ARCHIVE_H

#include <stddef.h>

/* Packs the tree under dir into out (tar + zstd). When meta_json is not
 * NULL it is stored first as the entry "kvz-backup.json". */
int archive_pack_dir(const char *dir, const char *out, const char *meta_json,
		     char *err, size_t len);
/* Reads the "kvz-backup.json" entry at the start of an archive into a new
 * string (caller frees); NULL with err when absent. */
char *archive_read_meta(const char *in, char *err, size_t len);
/* Unpacks in under dir, keeping owners, modes, times and links, skipping
 * the metadata entry; refuses paths escaping dir. */
int archive_unpack(const char *in, const char *dir, char *err, size_t len);

#endif
