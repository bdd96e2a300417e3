/* The web UI on kvzd's TCP listener: who may send a request (bearer token,
 * session cookie + CSRF token, or nobody for the login page), the /ui/
 * routes (login, logout, session) and the UI's assets. The assets are read
 * once at start from the web directory (built by `make` from web/ with
 * esbuild) into memory and served from a fixed list, so no request path
 * ever reaches the file system. */
#ifndef KVZD_WEB_ROUTES_H
#define KVZD_WEB_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "api.h"
#include "web_session.h"

struct web_options {
	bool tls;                /* serve HTTPS on the TCP listener */
	const char *tls_cert, *tls_key; /* NULL: STATE/tls/, self-signed */
	const char *web_dir;     /* NULL: beside kvzd (build tree or install) */
	unsigned session_idle_s; /* a session ends after this long unused */
};

struct web;

struct web *web_new(const struct web_options *o, const char *token, char *err, size_t errlen);
void web_free(struct web *w);

/* On the first call for a request, when its header is complete, and only
 * for one without an Authorization header: 0 when it may go on (session,
 * the id of its session, is "" for a public page), else -1 with resp set
 * (401, a 403 for a missing CSRF token, or a redirect of a page to the
 * login). */
int web_authenticate(struct web *w, struct MHD_Connection *conn, const char *method,
		     const char *url, char session[WEB_ID_HEX + 1], struct api_resp *resp);
/* Adds the headers every TCP response carries, and the cookie/redirect of
 * resp. */
void web_add_headers(struct web *w, struct MHD_Response *mr, const struct api_resp *resp);

/* /ui/... and / (false when the path is not one of them). */
bool web_route(struct api_req *r, struct api_resp *resp);
/* Whether session still names a live session. */
bool web_session_alive(struct web *w, const char *session);

#endif
