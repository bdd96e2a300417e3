/* libFuzzer target: a cluster peer's "Authorization: KvzPeer ..." value
 * as kvzd parses it (src/daemon/cluster_peer_cred.c), and the method and
 * path check. The first byte splits the input: below 128 it is all the
 * credential, otherwise the rest is "METHOD PATH" for peer_cred_may.
 * Properties: a parsed credential's fields are what the format allows,
 * and its MAC computes without overflow. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_peer_cred.h"
#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_cred(const char *s)
{
	struct peer_cred pc;
	if (peer_cred_parse(s, &pc))
		return;
	if (!kvz_valid_name(pc.node) || pc.ts_ms <= 0 || !peer_is_hex64(pc.body_sha) ||
	    !peer_is_hex64(pc.mac))
		abort();
	char mac[PEER_HEX + 1];
	if (peer_cred_mac("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			  pc.node, pc.ts_ms, "GET", "/v1/guests/x", pc.body_sha, mac) ||
	    !peer_is_hex64(mac))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!size || size > 4096)
		return 0;
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	if (data[0] < 128) {
		check_cred(s);
	} else {
		char *sp = strchr(s, ' ');
		if (sp) {
			*sp = 0;
			bool may = peer_cred_may(s, sp + 1);
			/* Only guests' and policy actions' paths, ever. */
			if (may && strncmp(sp + 1, "/v1/guests/", 11) && strncmp(sp + 1, "/v1/policies/", 13))
				abort();
		}
	}
	free(s);
	return 0;
}
