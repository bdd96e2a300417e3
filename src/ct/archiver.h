/* Template caches and backups through the kvz-ct-archive helper (next to
 * kvz-ct): libarchive and what it pulls in (libxml2, ICU, libstdc++) stay
 * out of kvz-ct, whose every running container is a supervisor process
 * that never needs them: about 270 KiB of private memory each. Same
 * contracts as ct_archive.h, which the helper implements. */
#ifndef KVZ_CT_ARCHIVER_H
#define KVZ_CT_ARCHIVER_H

#include <stddef.h>

int archiver_pack_dir(const char *dir, const char *out, const char *meta_json,
		      char *err, size_t len);
char *archiver_read_meta(const char *in, char *err, size_t len);
int archiver_unpack(const char *in, const char *dir, char *err, size_t len);

#endif
