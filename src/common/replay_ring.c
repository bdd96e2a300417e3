#include "replay_ring.h"

#include <string.h>

void replay_ring_init(struct replay_ring *r, void *storage, size_t cap)
{
	*r = (struct replay_ring){.buf = storage, .cap = cap};
}

void replay_ring_append(struct replay_ring *r, const void *data, size_t len)
{
	const uint8_t *p = data;
	if (r->cap == 0)
		return;
	if (len >= r->cap) {  /* only the newest cap bytes can stay */
		p += len - r->cap;
		len = r->cap;
	}
	size_t drop = r->len + len > r->cap ? r->len + len - r->cap : 0;
	r->head = (r->head + drop) % r->cap;
	r->len -= drop;
	size_t tail = (r->head + r->len) % r->cap;
	size_t first = len < r->cap - tail ? len : r->cap - tail;
	memcpy(r->buf + tail, p, first);
	memcpy(r->buf, p + first, len - first);
	r->len += len;
}

void replay_ring_peek(const struct replay_ring *r,
		      void (*fn)(void *opaque, const uint8_t *p, size_t n), void *opaque)
{
	size_t first = r->len < r->cap - r->head ? r->len : r->cap - r->head;
	if (first)
		fn(opaque, r->buf + r->head, first);
	if (r->len > first)
		fn(opaque, r->buf, r->len - first);
}

void replay_ring_drain(struct replay_ring *r, void (*fn)(void *opaque, const uint8_t *p, size_t n),
		       void *opaque)
{
	replay_ring_peek(r, fn, opaque);
	r->head = r->len = 0;
}
