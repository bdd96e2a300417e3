/* The last bytes of an output stream, kept while nobody reads it and
 * replayed, oldest first, to the next reader: a console's output while no
 * client is attached (kvz-vmm's serial console socket, kvz-ct's pty). */
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

#endif
