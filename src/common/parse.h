/* Parsers for the values users type: sizes, soft:hard pairs, CPU shares. */
#ifndef KVZ_PARSE_H
#define KVZ_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* "512M", "1G", "4096", "2T", "64K", "1.5G". Binary units; a bare number is
 * bytes. Returns false on junk, overflow or a negative value. */
bool kvz_parse_size(const char *s, uint64_t *out);

/* "512M:1G" -> soft, hard; "1G" -> soft = hard = 1G. Soft must not exceed
 * hard. */
bool kvz_parse_size_pair(const char *s, uint64_t *soft, uint64_t *hard);

/* "0.5", "2" -> CPU count as a fraction, > 0 and <= 1024. */
bool kvz_parse_cpus(const char *s, double *out);

/* Unsigned decimal integer in [min, max]. */
bool kvz_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Writes "512M", "1.5G"... into buf. */
const char *kvz_format_size(uint64_t bytes, char *buf, unsigned len);

/* Names of guests: [A-Za-z0-9][A-Za-z0-9_.-]{0,62}. */
bool kvz_valid_name(const char *name);

#endif
