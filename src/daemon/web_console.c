/* GET /v1/guests/NAME/console with "Upgrade: websocket": the guest's
 * console (the supervisor's console socket, which replays its recent
 * output to a new client, as for `kvz console`) in a browser terminal.
 * After the 101, MHD hands the connection over; a relay thread per console
 * copies console bytes into binary frames and the payload of the
 * browser's frames into the console. See docs/api.md. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api.h"
#include "log.h"
#include "store.h"
#include "web_routes.h"
#include "write_all.h"
#include "ws_frame.h"

#define WAIT_MS 250

/* The relays of the whole process: kvzd's stop ends them all, and must
 * wait for them before MHD stops (MHD requires upgraded connections to be
 * closed first). Process-wide for the same reason as the event streams. */
static pthread_mutex_t relays_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t relays_done = PTHREAD_COND_INITIALIZER;
static unsigned relays;
static atomic_bool stopping;

struct relay {
	struct web *web;
	char session[WEB_ID_HEX + 1];
	char path[108];                 /* the console socket */
	MHD_socket sock;
	int console;
	struct MHD_UpgradeResponseHandle *urh;
	uint8_t in[WS_MAX_PAYLOAD + WS_MAX_HEADER];
	size_t inlen;
};

/* One send() per frame where it fits, so a frame is never left half-sent
 * behind a close. */
static int send_frame(struct relay *r, unsigned opcode, const void *data, size_t len)
{
	uint8_t frame[WS_MAX_HEADER + 16384];
	size_t hl = ws_server_header(opcode, len, frame);
	if (len > sizeof(frame) - hl)
		return kvz_write_all(r->sock, frame, hl) || kvz_write_all(r->sock, data, len) ? -1 : 0;
	memcpy(frame + hl, data, len);
	return kvz_write_all(r->sock, frame, hl + len);
}

/* After our close frame: read and drop what the browser still sends until
 * it closes too, for up to a second, so that the close frame is on its way
 * (MHD forwards TLS data from its own thread) and closing with unread input
 * does not reset the connection before it arrives. */
static void linger(struct relay *r)
{
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		struct pollfd p = {.fd = r->sock, .events = POLLIN};
		char buf[16384];
		if (poll(&p, 1, WAIT_MS) < 0 || (p.revents && recv(r->sock, buf, sizeof(buf), 0) <= 0))
			return;
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 < 1000);
}

static void send_close(struct relay *r, unsigned code, const char *why)
{
	uint8_t body[125];
	size_t n = strlen(why) > 120 ? 120 : strlen(why);
	body[0] = (uint8_t)(code >> 8);
	body[1] = (uint8_t)code;
	memcpy(body + 2, why, n);
	send_frame(r, WS_CLOSE, body, n + 2);
}

static int connect_console(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The browser's frames in r->in: data to the console, ping answered,
 * close ends. 0 to go on, -1 to end. */
static int from_browser(struct relay *r)
{
	for (;;) {
		struct ws_frame f;
		int rc = ws_parse_client(r->in, r->inlen, &f);
		if (rc == 0)
			return 0;
		if (rc < 0) {
			send_close(r, 1002, "protocol error");
			return -1;
		}
		const uint8_t *payload = r->in + f.header_len;
		if (f.opcode == WS_CLOSE) {
			send_frame(r, WS_CLOSE, payload, f.payload_len);
			return -1;
		}
		if (f.opcode == WS_PING && send_frame(r, WS_PONG, payload, f.payload_len))
			return -1;
		if (f.opcode <= WS_BINARY && kvz_write_all(r->console, payload, f.payload_len))
			return -1;
		size_t used = f.header_len + f.payload_len;
		memmove(r->in, r->in + used, r->inlen - used);
		r->inlen -= used;
	}
}

static bool pump(struct relay *r)
{
	struct pollfd p[2] = {{.fd = r->sock, .events = POLLIN}, {.fd = r->console, .events = POLLIN}};
	int n = poll(p, 2, WAIT_MS);
	if (n < 0)
		return errno == EINTR;
	if (p[1].revents) {
		uint8_t buf[16384];
		ssize_t got = read(r->console, buf, sizeof(buf));
		if (got <= 0) {
			send_close(r, 1000, "the console closed");
			return false;
		}
		if (send_frame(r, WS_BINARY, buf, (size_t)got))
			return false;
	}
	if (p[0].revents) {
		ssize_t got = recv(r->sock, r->in + r->inlen, sizeof(r->in) - r->inlen, 0);
		if (got <= 0)
			return false;
		r->inlen += (size_t)got;
		if (from_browser(r))
			return false;
	}
	return true;
}

static void *relay_main(void *arg)
{
	struct relay *r = arg;
	r->console = connect_console(r->path);
	if (r->console < 0) {
		send_close(r, 1011, "cannot connect to the guest's console");
	} else if (r->inlen == 0 || from_browser(r) == 0) {
		while (!atomic_load(&stopping) && pump(r)) {
			if (r->session[0] && !web_session_alive(r->web, r->session)) {
				send_close(r, 1008, "the session ended");
				break;
			}
		}
	}
	if (r->console >= 0)
		close(r->console);
	linger(r);
	MHD_upgrade_action(r->urh, MHD_UPGRADE_ACTION_CLOSE);
	free(r);
	pthread_mutex_lock(&relays_lock);
	relays--;
	pthread_cond_broadcast(&relays_done);
	pthread_mutex_unlock(&relays_lock);
	return NULL;
}

static void upgraded(void *cls, struct MHD_Connection *conn, void *req_cls,
		     const char *extra_in, size_t extra_in_size, MHD_socket sock,
		     struct MHD_UpgradeResponseHandle *urh)
{
	(void)conn;
	(void)req_cls;
	struct relay *r = cls;
	r->sock = sock;
	r->urh = urh;
	if (extra_in_size > sizeof(r->in))
		extra_in_size = 0; /* more than a frame before the 101: a broken client */
	memcpy(r->in, extra_in, extra_in_size);
	r->inlen = extra_in_size;
	pthread_t t;
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_mutex_lock(&relays_lock);
	relays++;
	pthread_mutex_unlock(&relays_lock);
	if (atomic_load(&stopping) || pthread_create(&t, &attr, relay_main, r)) {
		MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
		free(r);
		pthread_mutex_lock(&relays_lock);
		relays--;
		pthread_cond_broadcast(&relays_done);
		pthread_mutex_unlock(&relays_lock);
	}
	pthread_attr_destroy(&attr);
}

static const char *header(struct api_req *r, const char *name)
{
	return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

/* Whether a comma-separated header value holds token (any case). */
static bool has_token(const char *v, const char *token)
{
	size_t n = strlen(token);
	for (const char *p = v; p && *p;) {
		p += strspn(p, " \t,");
		if (!strncasecmp(p, token, n) && (p[n] == 0 || strchr(" \t,", p[n])))
			return true;
		p = strchr(p, ',');
	}
	return false;
}

/* A browser's session may open a console only from kvzd's own pages:
 * Origin must name the Host it connected to (cross-site WebSocket
 * hijacking). Bearer clients send no cookie and need no such check. */
static bool origin_ok(struct api_req *r)
{
	if (!r->session || !r->session[0])
		return true;
	const char *origin = header(r, "Origin"), *host = header(r, "Host");
	if (!origin || !host)
		return false;
	const char *o = !strncmp(origin, "https://", 8) ? origin + 8 :
			!strncmp(origin, "http://", 7) ? origin + 7 : NULL;
	return o && !strcmp(o, host);
}

static void open_console(struct api_req *r, struct api_resp *resp, const char *name)
{
	char accept[29];
	const char *key = header(r, "Sec-WebSocket-Key");
	const char *version = header(r, "Sec-WebSocket-Version");
	if (!r->conn || !has_token(header(r, "Upgrade"), "websocket") ||
	    !has_token(header(r, "Connection"), "upgrade") || !key || ws_accept_key(key, accept) ||
	    !version || strcmp(version, "13")) {
		api_error(resp, 400, "the console is a WebSocket (version 13): send the upgrade headers");
		return;
	}
	if (!origin_ok(r)) {
		api_error(resp, 403, "Origin does not match Host: the console opens only from kvzd's pages");
		return;
	}
	json_t *g = store_guest_get(r->d->store, name);
	const char *state = json_string_value(json_object_get(g, "state"));
	const char *path = json_string_value(json_object_get(g, "console"));
	if (!g || !state || strcmp(state, "running") || !path || strlen(path) >= 108) {
		if (g)
			api_error(resp, 409, "%s is not running: no console", name);
		else
			api_error(resp, 404, "no guest named %s", name);
		json_decref(g);
		return;
	}
	struct relay *rel = calloc(1, sizeof(*rel));
	struct MHD_Response *mr = rel ? MHD_create_response_for_upgrade(upgraded, rel) : NULL;
	if (!mr) {
		free(rel);
		json_decref(g);
		api_error(resp, 500, "out of memory");
		return;
	}
	rel->web = r->web;
	rel->console = -1;
	snprintf(rel->path, sizeof(rel->path), "%s", path);
	if (r->session)
		snprintf(rel->session, sizeof(rel->session), "%s", r->session);
	json_decref(g);
	MHD_add_response_header(mr, MHD_HTTP_HEADER_UPGRADE, "websocket");
	MHD_add_response_header(mr, "Sec-WebSocket-Accept", accept);
	resp->status = MHD_HTTP_SWITCHING_PROTOCOLS;
	resp->mhd = mr;
}

bool console_route(struct api_req *r, struct api_resp *resp)
{
	static const char prefix[] = "/v1/guests/", suffix[] = "/console";
	size_t len = strlen(r->path), pl = sizeof(prefix) - 1, sl = sizeof(suffix) - 1;
	if (len <= pl + sl || strncmp(r->path, prefix, pl) || strcmp(r->path + len - sl, suffix))
		return false;
	char name[80];
	size_t nl = len - pl - sl;
	if (nl >= sizeof(name))
		return false;
	memcpy(name, r->path + pl, nl);
	name[nl] = 0;
	if (strchr(name, '/'))
		return false;
	if (strcmp(r->method, "GET"))
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
	else
		open_console(r, resp, name);
	return true;
}

void console_shutdown(void)
{
	atomic_store(&stopping, true);
	pthread_mutex_lock(&relays_lock);
	while (relays)
		pthread_cond_wait(&relays_done, &relays_lock);
	pthread_mutex_unlock(&relays_lock);
}
