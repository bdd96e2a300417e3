/* The web UI's access rules, routes and assets (web_routes.h). */
#include "web_routes.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define COOKIE "kvz_session"
#define MAX_ASSET (8 * 1024 * 1024)
#define MAX_TOKEN 512

/* What the UI is made of: URL, file in the web directory, type, and
 * whether it is served before login (the login page and what it needs;
 * nothing in them says anything about the host). */
static const struct asset_def {
	const char *url, *file, *type;
	bool public;
} asset_defs[] = {
	{"/", "index.html", "text/html; charset=utf-8", false},
	{"/ui/login", "login.html", "text/html; charset=utf-8", true},
	{"/ui/assets/app.js", "app.js", "text/javascript; charset=utf-8", false},
	{"/ui/assets/app.css", "app.css", "text/css; charset=utf-8", true},
	{"/ui/assets/login.js", "login.js", "text/javascript; charset=utf-8", true},
};
#define NASSETS (sizeof(asset_defs) / sizeof(asset_defs[0]))

struct web {
	struct web_sessions *sessions;
	const char *token;
	bool tls;
	char dir[PATH_MAX];       /* "" when no web directory was found */
	char *data[NASSETS];      /* file contents, NULL when missing */
	size_t len[NASSETS];
};

/* Only scripts and requests of kvzd's own origin; no framing. Inline
 * styles are allowed because xterm.js writes its theme into a <style>
 * element; scripts stay 'self' only. */
static const char CSP[] = "default-src 'self'; style-src 'self' 'unsafe-inline'; "
			  "img-src 'self' data:; object-src 'none'; "
			  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

static char *read_asset(const char *dir, const char *file, size_t *len)
{
	char path[PATH_MAX + 64];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_ASSET) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	ssize_t n = 1;
	while (buf && got < (size_t)st.st_size && (n = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
		got += (size_t)n;
	close(fd);
	if (!buf || got != (size_t)st.st_size) {
		free(buf);
		return NULL;
	}
	*len = got;
	return buf;
}

/* The option, else web/ of the build tree (kvzd is build/src/daemon/kvzd,
 * the assets build/web), else share/kvz/web of an install. */
static void find_dir(struct web *w, const char *opt)
{
	w->dir[0] = 0;
	if (opt) {
		if (!realpath(opt, w->dir))
			w->dir[0] = 0;
		return;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return;
	self[n] = 0;
	const char *exe_dir = dirname(self);
	const char *cands[] = {"../../web", "../share/kvz/web"};
	for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
		char p[PATH_MAX + 32];
		snprintf(p, sizeof(p), "%s/%s/index.html", exe_dir, cands[i]);
		if (access(p, R_OK) == 0) {
			*strrchr(p, '/') = 0;
			if (realpath(p, w->dir))
				return;
			w->dir[0] = 0;
		}
	}
}

struct web *web_new(const struct web_options *o, const char *token, char *err, size_t errlen)
{
	struct web *w = calloc(1, sizeof(*w));
	if (!w || !(w->sessions = web_sessions_new(o->session_idle_s))) {
		free(w);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->token = token;
	w->tls = o->tls;
	find_dir(w, o->web_dir);
	if (o->web_dir && !w->dir[0]) {
		snprintf(err, errlen, "--web-dir %s: %s", o->web_dir, strerror(errno));
		web_free(w);
		return NULL;
	}
	for (size_t i = 0; w->dir[0] && i < NASSETS; i++)
		w->data[i] = read_asset(w->dir, asset_defs[i].file, &w->len[i]);
	if (!w->dir[0] || !w->data[0])
		kvz_warn("web UI assets not found (build them with make, or give --web-dir); "
			 "the UI's pages answer 503, the API works");
	return w;
}

void web_free(struct web *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < NASSETS; i++)
		free(w->data[i]);
	web_sessions_free(w->sessions);
	free(w);
}

static const struct asset_def *asset_of(const char *url, size_t *idx)
{
	for (size_t i = 0; i < NASSETS; i++) {
		if (!strcmp(url, asset_defs[i].url)) {
			*idx = i;
			return &asset_defs[i];
		}
	}
	return NULL;
}

/* The value of our cookie in the Cookie header, copied to out, or false. */
static bool session_cookie(struct MHD_Connection *conn, char out[WEB_ID_HEX + 1])
{
	const char *v = MHD_lookup_connection_value(conn, MHD_COOKIE_KIND, COOKIE);
	if (!v || strlen(v) != WEB_ID_HEX)
		return false;
	memcpy(out, v, WEB_ID_HEX + 1);
	return true;
}

static bool is_page(const char *method, const char *url)
{
	size_t i;
	return !strcmp(method, "GET") && asset_of(url, &i) &&
	       !strncmp(asset_defs[i].type, "text/html", 9);
}

static bool is_public(const char *method, const char *url)
{
	size_t i;
	if (!strcmp(url, "/ui/login") && !strcmp(method, "POST"))
		return true;
	return (!strcmp(method, "GET") || !strcmp(method, "HEAD")) && asset_of(url, &i) &&
	       asset_defs[i].public;
}

int web_authenticate(struct web *w, struct MHD_Connection *conn, const char *method,
		     const char *url, char session[WEB_ID_HEX + 1], struct api_resp *resp)
{
	char csrf[WEB_ID_HEX + 1];
	session[0] = 0;
	if (session_cookie(conn, session) && web_session_check(w->sessions, session, csrf)) {
		if (!strcmp(method, "GET") || !strcmp(method, "HEAD"))
			return 0;
		const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-CSRF-Token");
		if (h && web_secret_equal(h, csrf))
			return 0;
		api_error(resp, 403, "missing or wrong X-CSRF-Token header for a session request");
		return -1;
	}
	session[0] = 0;
	if (is_public(method, url))
		return 0;
	if (is_page(method, url)) {
		api_error(resp, 303, "log in first: /ui/login");
		resp->location = "/ui/login";
		return -1;
	}
	api_error(resp, 401, "missing or wrong bearer token, or no session (log in at /ui/login)");
	return -1;
}

bool web_session_alive(struct web *w, const char *session)
{
	return session && session[0] && web_session_check(w->sessions, session, NULL);
}

void web_add_headers(struct web *w, struct MHD_Response *mr, const struct api_resp *resp)
{
	MHD_add_response_header(mr, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(mr, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(mr, "X-Frame-Options", "DENY");
	MHD_add_response_header(mr, "Content-Security-Policy", CSP);
	MHD_add_response_header(mr, "Cache-Control", "no-store");
	if (w && w->tls)
		MHD_add_response_header(mr, "Strict-Transport-Security", "max-age=31536000");
	if (resp->set_cookie)
		MHD_add_response_header(mr, "Set-Cookie", resp->set_cookie);
	if (resp->location)
		MHD_add_response_header(mr, "Location", resp->location);
}

static void set_cookie(struct api_resp *resp, const struct web *w, const char *value,
		       bool expire)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s=%s; Path=/; HttpOnly; SameSite=Strict%s%s", COOKIE, value,
		 w->tls ? "; Secure" : "", expire ? "; Max-Age=0" : "");
	free(resp->set_cookie);
	resp->set_cookie = strdup(buf);
}

static void login(struct api_req *r, struct api_resp *resp)
{
	struct web *w = r->web;
	const union MHD_ConnectionInfo *ci =
		r->conn ? MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS) : NULL;
	const struct sockaddr *addr = ci ? ci->client_addr : NULL;
	unsigned retry = 0;
	if (!web_login_allowed(w->sessions, addr, &retry)) {
		api_error(resp, 429, "too many failed logins from this address; try again in %u s",
			  retry ? retry : 1);
		return;
	}
	const char *tok = json_string_value(json_object_get(r->body, "token"));
	if (!tok || strlen(tok) > MAX_TOKEN || !web_secret_equal(tok, w->token)) {
		web_login_result(w->sessions, addr, false);
		kvz_warn("web UI: failed login");
		api_error(resp, 401, "wrong token");
		return;
	}
	web_login_result(w->sessions, addr, true);
	char id[WEB_ID_HEX + 1], csrf[WEB_ID_HEX + 1];
	if (web_session_create(w->sessions, id, csrf)) {
		api_error(resp, 500, "no randomness for a session id");
		return;
	}
	set_cookie(resp, w, id, false);
	explicit_bzero(id, sizeof(id));
	kvz_info("web UI: login");
	api_json(resp, 200, json_pack("{s:s}", "csrf", csrf));
}

static void serve_asset(struct api_req *r, struct api_resp *resp, size_t i)
{
	struct web *w = r->web;
	if (!w->data[i]) {
		api_error(resp, 503, "the web UI is not built (make builds web/ into %s)",
			  w->dir[0] ? w->dir : "build/web");
		return;
	}
	struct MHD_Response *mr = MHD_create_response_from_buffer(w->len[i], w->data[i],
								  MHD_RESPMEM_PERSISTENT);
	if (!mr) {
		api_error(resp, 500, "out of memory");
		return;
	}
	MHD_add_response_header(mr, "Content-Type", asset_defs[i].type);
	resp->status = 200;
	resp->mhd = mr;
}

bool web_route(struct api_req *r, struct api_resp *resp)
{
	size_t i;
	bool ours = strncmp(r->path, "/ui/", 4) == 0 || asset_of(r->path, &i);
	if (!ours)
		return false;
	if (!r->web) {
		api_error(resp, 404, "the web UI is served on kvzd's TCP listener only");
		return true;
	}
	bool get = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD");
	if (!strcmp(r->path, "/ui/login") && !strcmp(r->method, "POST")) {
		login(r, resp);
	} else if (!strcmp(r->path, "/ui/logout") && !strcmp(r->method, "POST")) {
		if (r->session && r->session[0])
			web_session_destroy(r->web->sessions, r->session);
		set_cookie(resp, r->web, "", true);
		api_json(resp, 200, json_pack("{s:b}", "logged_out", 1));
	} else if (!strcmp(r->path, "/ui/session") && get) {
		char csrf[WEB_ID_HEX + 1];
		if (r->session && r->session[0] && web_session_check(r->web->sessions, r->session, csrf))
			api_json(resp, 200, json_pack("{s:s}", "csrf", csrf));
		else
			api_error(resp, 404, "this request came without a session");
	} else if (asset_of(r->path, &i) && get) {
		serve_asset(r, resp, i);
	} else if (asset_of(r->path, &i) || !strcmp(r->path, "/ui/logout")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
	} else {
		api_error(resp, 404, "no such resource: %s %s", r->method, r->path);
	}
	return true;
}
