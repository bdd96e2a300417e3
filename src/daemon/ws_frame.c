/* WebSocket framing (ws_frame.h). */
#include "ws_frame.h"

#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

int ws_parse_client(uint8_t *buf, size_t len, struct ws_frame *f)
{
	if (len < 2)
		return 0;
	uint8_t b0 = buf[0], b1 = buf[1];
	f->fin = b0 & 0x80;
	f->opcode = b0 & 0x0f;
	if (b0 & 0x70 || !(b1 & 0x80))
		return -1; /* reserved bits without an extension; clients must mask */
	if (f->opcode > WS_BINARY && f->opcode < WS_CLOSE)
		return -1;
	if (f->opcode > WS_PONG)
		return -1;
	uint64_t plen = b1 & 0x7f;
	size_t hl = 2;
	if (plen == 126) {
		if (len < 4)
			return 0;
		plen = (uint64_t)buf[2] << 8 | buf[3];
		hl = 4;
	} else if (plen == 127) {
		if (len < 10)
			return 0;
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | buf[2 + i];
		hl = 10;
	}
	if (f->opcode >= WS_CLOSE && (plen > 125 || !f->fin))
		return -1;
	if (plen > WS_MAX_PAYLOAD)
		return -1;
	if (len < hl + 4)
		return 0;
	const uint8_t *mask = buf + hl;
	hl += 4;
	if (len - hl < plen)
		return 0;
	for (size_t i = 0; i < plen; i++)
		buf[hl + i] ^= mask[i & 3];
	f->header_len = hl;
	f->payload_len = (size_t)plen;
	return 1;
}

size_t ws_server_header(unsigned opcode, size_t len, uint8_t *out)
{
	out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

static bool b64char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int ws_accept_key(const char *key, char out[29])
{
	/* 16 bytes are 22 base64 characters and "==". */
	if (strlen(key) != 24 || key[22] != '=' || key[23] != '=')
		return -1;
	for (int i = 0; i < 22; i++)
		if (!b64char(key[i]))
			return -1;
	char cat[24 + 36 + 1];
	memcpy(cat, key, 24);
	memcpy(cat + 24, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 37);
	unsigned char sha[20];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA1, cat, 60, sha) < 0)
		return -1;
	gnutls_datum_t in = {sha, sizeof(sha)}, enc = {0};
	if (gnutls_base64_encode2(&in, &enc) < 0)
		return -1;
	int ok = enc.size == 28;
	if (ok) {
		memcpy(out, enc.data, 28);
		out[28] = 0;
	}
	gnutls_free(enc.data);
	return ok ? 0 : -1;
}
