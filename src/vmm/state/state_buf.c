#include "state_buf.h"

#include <stdlib.h>
#include <string.h>

void state_buf_init(struct state_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void state_buf_free(struct state_buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

static uint8_t *grow(struct state_buf *b, size_t n)
{
	if (b->oom)
		return NULL;
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap - b->len < n)
			cap *= 2;
		uint8_t *d = realloc(b->data, cap);
		if (!d) {
			b->oom = true;
			return NULL;
		}
		b->data = d;
		b->cap = cap;
	}
	uint8_t *p = b->data + b->len;
	b->len += n;
	return p;
}

void state_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void state_le32(uint8_t *p, uint32_t v)
{
	state_le16(p, (uint16_t)v);
	state_le16(p + 2, (uint16_t)(v >> 16));
}

void state_le64(uint8_t *p, uint64_t v)
{
	state_le32(p, (uint32_t)v);
	state_le32(p + 4, (uint32_t)(v >> 32));
}

uint32_t state_rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t state_rd64(const uint8_t *p)
{
	return (uint64_t)state_rd32(p) | (uint64_t)state_rd32(p + 4) << 32;
}

void state_put_u8(struct state_buf *b, uint8_t v)
{
	uint8_t *p = grow(b, 1);
	if (p)
		*p = v;
}

void state_put_u16(struct state_buf *b, uint16_t v)
{
	uint8_t *p = grow(b, 2);
	if (p)
		state_le16(p, v);
}

void state_put_u32(struct state_buf *b, uint32_t v)
{
	uint8_t *p = grow(b, 4);
	if (p)
		state_le32(p, v);
}

void state_put_u64(struct state_buf *b, uint64_t v)
{
	uint8_t *p = grow(b, 8);
	if (p)
		state_le64(p, v);
}

void state_put_bytes(struct state_buf *b, const void *src, size_t n)
{
	if (n == 0)
		return;   /* src may be NULL (a device without config bytes) */
	uint8_t *p = grow(b, n);
	if (p)
		memcpy(p, src, n);
}

void state_cursor_init(struct state_cursor *c, const void *p, size_t len)
{
	c->p = p;
	c->len = len;
	c->off = 0;
	c->bad = false;
}

static const uint8_t *take(struct state_cursor *c, size_t n)
{
	if (c->bad || c->len - c->off < n) {
		c->bad = true;
		return NULL;
	}
	const uint8_t *p = c->p + c->off;
	c->off += n;
	return p;
}

uint8_t state_get_u8(struct state_cursor *c)
{
	const uint8_t *p = take(c, 1);
	return p ? *p : 0;
}

uint16_t state_get_u16(struct state_cursor *c)
{
	const uint8_t *p = take(c, 2);
	return p ? (uint16_t)(p[0] | p[1] << 8) : 0;
}

uint32_t state_get_u32(struct state_cursor *c)
{
	const uint8_t *p = take(c, 4);
	return p ? state_rd32(p) : 0;
}

uint64_t state_get_u64(struct state_cursor *c)
{
	const uint8_t *p = take(c, 8);
	return p ? state_rd64(p) : 0;
}

bool state_get_bool(struct state_cursor *c)
{
	uint8_t v = state_get_u8(c);
	if (v > 1)
		c->bad = true;
	return v == 1;
}

void state_get_bytes(struct state_cursor *c, void *dst, size_t n)
{
	if (n == 0)
		return;   /* dst may be NULL */
	const uint8_t *p = take(c, n);
	if (p)
		memcpy(dst, p, n);
	else
		memset(dst, 0, n);
}

bool state_cursor_done(const struct state_cursor *c)
{
	return !c->bad && c->off == c->len;
}
