/* The pure part of id range allocation (no files, no locks), so that unit
 * tests can drive it: which host ids are taken by host users, groups and
 * subordinate id entries, and the first free range of the pool. */
#ifndef KVZ_CT_IDMAP_POOL_H
#define KVZ_CT_IDMAP_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Host ids [start, start + count) that no container range may overlap. */
struct id_span {
	uint64_t start, count;
};

struct id_spans {
	struct id_span *v;
	size_t n, cap;
};

/* Adds the ids of /etc/passwd or /etc/group text (third field). */
int id_spans_add_db(struct id_spans *s, const char *text);
/* Adds the ranges of /etc/subuid or /etc/subgid text (NAME:START:COUNT). */
int id_spans_add_subid(struct id_spans *s, const char *text);
void id_spans_free(struct id_spans *s);

bool id_spans_overlap(const struct id_spans *s, uint64_t start, uint64_t count);
/* The lowest base of the pool [pool_start, pool_end) in steps of count that
 * is neither in used[] nor overlaps s; 0 when the pool is exhausted. */
uint32_t idmap_pool_pick(uint32_t pool_start, uint32_t pool_end, uint32_t count,
			 const uint32_t *used, size_t nused, const struct id_spans *s);

#endif
