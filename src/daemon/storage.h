/* VM disk images under STATE/images: raw files, sparse ("dynamic") or with
 * every block allocated up front ("fixed"). */
#ifndef KVZD_STORAGE_H
#define KVZD_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Creates path of size bytes; refuses to replace an existing file. On
 * failure nothing is left behind. */
int storage_create_image(const char *path, uint64_t size, bool fixed,
			 char *err, size_t errlen);
/* Bytes allocated on the host filesystem and apparent size; 0 when absent. */
void storage_usage(const char *path, uint64_t *used, uint64_t *size);
/* Free bytes on the filesystem holding dir. */
uint64_t storage_free_bytes(const char *dir);

#endif
