/* Browser sessions of the web UI (docs/api.md, "Web UI"). A browser proves
 * once that it knows the API token (POST /ui/login) and then holds a
 * random session id in an HttpOnly cookie; every state-changing request
 * made with that cookie must also carry the session's CSRF token in the
 * X-CSRF-Token header, which a page of another origin cannot read.
 * Sessions end on logout, after idle_s without a request, or 12 hours after
 * login. Failed logins are throttled per client address. */
#ifndef KVZD_WEB_SESSION_H
#define KVZD_WEB_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define WEB_ID_HEX 64 /* 32 random bytes, hex */

struct web_sessions;

struct web_sessions *web_sessions_new(unsigned idle_s);
void web_sessions_free(struct web_sessions *s);

/* A new session: its id and CSRF token (WEB_ID_HEX + 1 bytes each). 0, or
 * -1 when no randomness was to be had. The oldest session makes room when
 * the table is full. */
int web_session_create(struct web_sessions *s, char *id, char *csrf);
/* Whether id names a live session (and then refreshes its idle deadline);
 * csrf, when not NULL, receives its CSRF token. */
bool web_session_check(struct web_sessions *s, const char *id, char *csrf);
void web_session_destroy(struct web_sessions *s, const char *id);

/* Login throttling: whether addr may try now (else *retry_s says when);
 * then the outcome of its try. */
bool web_login_allowed(struct web_sessions *s, const struct sockaddr *addr, unsigned *retry_s);
void web_login_result(struct web_sessions *s, const struct sockaddr *addr, bool ok);

/* Compares every byte whatever the first difference, so the time taken does
 * not tell how much of a secret was right. */
bool web_secret_equal(const char *a, const char *b);

#endif
