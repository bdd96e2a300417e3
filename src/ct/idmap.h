/* Per-container id ranges: every container gets its own 65536 host uids and
 * gids (container root = the range's base), never shared with another
 * container, a host user or group, or an /etc/subuid or /etc/subgid entry.
 *
 * Ranges come from the pool 0x80000..0x6FFFFFFF in 64K steps (systemd-nspawn's
 * --private-users=pick convention). Allocations are recorded in a host-wide
 * registry directory ($KVZ_CT_IDMAP_DIR, default /var/lib/kvz/idmap), one
 * file per range named after its base, written under a flock on its .lock:
 * - "ct PATH": a container's range, recorded in its idmap file PATH
 *   (CTROOT/NAME/idmap, JSON); held for as long as that file names it.
 * - "run NAME": a range for one `run --rootfs`; held for as long as the
 *   supervisor keeps the entry flock()ed (the kernel drops it when it dies).
 * An entry whose owner is gone is reclaimed by the next allocation. */
#ifndef KVZ_CT_IDMAP_H
#define KVZ_CT_IDMAP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define IDMAP_COUNT 65536u
#define IDMAP_POOL_START 0x80000u
#define IDMAP_POOL_END 0x70000000u /* exclusive */
#define IDMAP_DEFAULT_REGISTRY "/var/lib/kvz/idmap"

struct idmap {
	uint32_t uid;   /* host uid of container uid 0 */
	uint32_t gid;   /* host gid of container gid 0 */
	uint32_t count;
};

/* Allocates a range for the container whose idmap file is path (absolute)
 * and writes that file. */
int idmap_alloc_persistent(const char *path, struct idmap *m, char *err, size_t len);
/* The range recorded in the idmap file at path for a run: kept when the
 * registry gives it to path (or to nobody), replaced by a new one (file
 * rewritten) when the file is missing or another owner holds its range, as
 * for a copied private area. Files on disk are unshifted, so a new range
 * costs nothing. */
int idmap_claim(const char *path, struct idmap *m, char *err, size_t len);
/* Allocates a range for one run of name; returns the fd whose lock holds
 * it (keep it open, give it to idmap_release_run). */
int idmap_alloc_run(const char *name, struct idmap *m, char *err, size_t len);
void idmap_release_run(int fd, const struct idmap *m);
/* Frees the range recorded in the idmap file at path (absolute), if the
 * registry still gives it to that file. */
void idmap_release(const char *path);

/* Reads an idmap file; -1 with err when absent or malformed. */
int idmap_load(const char *path, struct idmap *m, char *err, size_t len);
json_t *idmap_to_json(const struct idmap *m);

#endif
