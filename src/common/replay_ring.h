/* The last bytes of an output stream, replayed oldest first to the next
 * reader: kept while nobody reads it and drained (kvz-ct's pty), or kept
 * as a history every new reader gets (kvz-vmm's console socket). */
#ifndef KVZ_COMMON_REPLAY_RING_H
#define KVZ_COMMON_REPLAY_RING_H

#include <stddef.h>
#include <stdint.h>

struct replay_ring {
	uint8_t *buf;         /* cap bytes the caller owns */
	size_t cap, head, len;
};

void replay_ring_init(struct replay_ring *r, void *storage, size_t cap);
/* Keeps data; once full, the oldest bytes make room. */
void replay_ring_append(struct replay_ring *r, const void *data, size_t len);
/* Hands the kept bytes to fn in order (at most two spans) and empties the
 * ring. */
void replay_ring_drain(struct replay_ring *r, void (*fn)(void *opaque, const uint8_t *p, size_t n),
		       void *opaque);
/* The same without emptying it: the ring as a history. */
void replay_ring_peek(const struct replay_ring *r,
		      void (*fn)(void *opaque, const uint8_t *p, size_t n), void *opaque);

#endif
