/* Little-endian encoding of machine state: a growable output buffer for
 * save, and a bounds-checked cursor for load. Every load reads hostile
 * bytes (a snapshot file or, later, a migration stream): a read past the
 * end sets `bad` and yields zeros, so decoders check once at the end. */
#ifndef KVZ_VMM_STATE_BUF_H
#define KVZ_VMM_STATE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct state_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
	bool oom;          /* an allocation failed: the content is incomplete */
};

void state_buf_init(struct state_buf *b);
void state_buf_free(struct state_buf *b);
void state_put_u8(struct state_buf *b, uint8_t v);
void state_put_u16(struct state_buf *b, uint16_t v);
void state_put_u32(struct state_buf *b, uint32_t v);
void state_put_u64(struct state_buf *b, uint64_t v);
void state_put_bytes(struct state_buf *b, const void *p, size_t n);

struct state_cursor {
	const uint8_t *p;
	size_t len;
	size_t off;
	bool bad;          /* a read ran past the end */
};

void state_cursor_init(struct state_cursor *c, const void *p, size_t len);
uint8_t state_get_u8(struct state_cursor *c);
uint16_t state_get_u16(struct state_cursor *c);
uint32_t state_get_u32(struct state_cursor *c);
uint64_t state_get_u64(struct state_cursor *c);
bool state_get_bool(struct state_cursor *c);   /* 0 or 1, anything else is bad */
void state_get_bytes(struct state_cursor *c, void *p, size_t n);
/* True when every byte was read and nothing ran past the end. */
bool state_cursor_done(const struct state_cursor *c);

/* Little-endian helpers for fixed headers. */
void state_le16(uint8_t *p, uint16_t v);
void state_le32(uint8_t *p, uint32_t v);
void state_le64(uint8_t *p, uint64_t v);
uint32_t state_rd32(const uint8_t *p);
uint64_t state_rd64(const uint8_t *p);

#endif
