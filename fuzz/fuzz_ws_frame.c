/* libFuzzer target: the WebSocket frames a browser (or anyone who got past
 * login) sends to kvzd's console relay (src/daemon/ws_frame.c). The input
 * is a byte stream parsed frame after frame as the relay does; every frame
 * accepted must lie inside the input and respect the protocol's limits.
 * The handshake key check and the server's header encoder run on the same
 * bytes. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	size_t off = 0;
	for (;;) {
		struct ws_frame f;
		int rc = ws_parse_client(buf + off, size - off, &f);
		if (rc <= 0)
			break;
		assert(f.header_len >= 6 && f.header_len <= WS_MAX_HEADER);
		assert(f.payload_len <= WS_MAX_PAYLOAD);
		assert(f.header_len + f.payload_len <= size - off);
		assert(f.opcode <= WS_BINARY || (f.opcode >= WS_CLOSE && f.opcode <= WS_PONG));
		assert(f.opcode < WS_CLOSE || (f.fin && f.payload_len <= 125));
		off += f.header_len + f.payload_len;
	}
	uint8_t head[WS_MAX_HEADER];
	size_t len = 0;
	for (size_t i = 0; i < size && i < 3; i++)
		len = len << 8 | data[i];
	size_t hl = ws_server_header(WS_BINARY, len, head);
	assert(hl == 2 || hl == 4 || hl == 10);
	char key[25], accept[29];
	size_t kl = size < 24 ? size : 24;
	memcpy(key, data, kl);
	key[kl] = 0;
	if (ws_accept_key(key, accept) == 0)
		assert(strlen(accept) == 28);
	free(buf);
	return 0;
}
