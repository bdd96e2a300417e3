/* WebSocket frames (RFC 6455) as kvzd's console relay needs them: parsing
 * what a browser sends (always masked) and building the server's unmasked
 * frames. No extensions; frames larger than WS_MAX_PAYLOAD are refused. */
#ifndef KVZD_WS_FRAME_H
#define KVZD_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_MAX_PAYLOAD 65536
#define WS_MAX_HEADER 14

enum ws_opcode { WS_CONT = 0, WS_TEXT = 1, WS_BINARY = 2, WS_CLOSE = 8, WS_PING = 9, WS_PONG = 10 };

struct ws_frame {
	bool fin;
	unsigned opcode;
	size_t header_len, payload_len;
};

/* A client frame at the start of buf: 1 when complete (f filled, the
 * payload at buf + f->header_len unmasked in place), 0 when more bytes are
 * needed, -1 when it breaks the protocol (unmasked, reserved bits or
 * opcodes, a control frame over 125 bytes or fragmented, a payload over
 * WS_MAX_PAYLOAD). */
int ws_parse_client(uint8_t *buf, size_t len, struct ws_frame *f);

/* The header of a final server frame carrying len bytes into out
 * (WS_MAX_HEADER bytes); returns its length. */
size_t ws_server_header(unsigned opcode, size_t len, uint8_t *out);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key (29 bytes with the NUL);
 * -1 when the key is not 16 bytes in base64. */
int ws_accept_key(const char *key, char out[29]);

#endif
