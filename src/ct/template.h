/* Root filesystem templates, built once and cached as tar.zst under the
 * cache directory (/var/lib/kvz/cache): "busybox" from Debian's
 * busybox-static, "debian" with debootstrap from the configured archive. */
#ifndef KVZ_CT_TEMPLATE_H
#define KVZ_CT_TEMPLATE_H

#include <stddef.h>

#define KVZ_CT_CACHE_DIR "/var/lib/kvz/cache"

/* Writes the cached tarball's path into out, building it when missing. */
int template_ensure(const char *name, const char *cache_dir, char *out, size_t outlen,
		    char *err, size_t len);

#endif
