/* libFuzzer target: what a hostile browser or client controls in kvzd's web
 * UI sessions (web_session.c): the session cookie's value, the
 * X-CSRF-Token header and its own address. Input: byte 0 picks the address
 * family, bytes 1..16 the address, the rest "COOKIE\nCSRF". Checks that no
 * guess is a session, that the secret comparison is string equality, and
 * that five failed logins from the address hold it back. */
#include <assert.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "web_session.h"

static void address(const uint8_t *data, size_t size, struct sockaddr_storage *ss)
{
	uint8_t raw[17] = {0};
	memcpy(raw, data, size < sizeof(raw) ? size : sizeof(raw));
	memset(ss, 0, sizeof(*ss));
	if (raw[0] & 1) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
		a->sin6_family = AF_INET6;
		memcpy(&a->sin6_addr, raw + 1, 16);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;
		a->sin_family = AF_INET;
		memcpy(&a->sin_addr, raw + 1, 4);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	address(data, size, &ss);
	size_t off = size < 17 ? size : 17;
	char *text = malloc(size - off + 1);
	if (!text)
		return 0;
	memcpy(text, data + off, size - off);
	text[size - off] = 0;
	char *csrf_in = strchr(text, '\n');
	if (csrf_in)
		*csrf_in++ = 0;
	else
		csrf_in = text;

	struct web_sessions *s = web_sessions_new(1800);
	char id[WEB_ID_HEX + 1], csrf[WEB_ID_HEX + 1], got[WEB_ID_HEX + 1];
	for (int i = 0; i < 3; i++)
		assert(web_session_create(s, id, csrf) == 0);
	/* The last session is found by its id, and by nothing else. */
	assert(web_session_check(s, id, got) && !strcmp(got, csrf));
	assert(web_session_check(s, text, NULL) == !strcmp(text, id));
	web_session_destroy(s, text);
	assert(web_session_check(s, id, NULL) == !!strcmp(text, id));
	assert(web_secret_equal(text, csrf_in) == !strcmp(text, csrf_in));

	const struct sockaddr *sa = (const struct sockaddr *)&ss;
	unsigned retry = 0;
	assert(web_login_allowed(s, sa, &retry));
	for (int i = 0; i < 5; i++)
		web_login_result(s, sa, false);
	assert(!web_login_allowed(s, sa, &retry) && retry >= 1 && retry <= 60);
	web_sessions_free(s);
	free(text);
	return 0;
}
