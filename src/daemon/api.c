#include "api.h"
#include "unix_socket.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <microhttpd.h>

#include "cluster.h"
#include "conn_guard.h"
#include "log.h"
#include "tls.h"
#include "web_routes.h"

#define MAX_BODY (1024 * 1024)
/* Inactivity allowed once a request is under way (an authenticated one on
 * TCP): start and stop wait for supervisors, and MHD counts the handler's
 * time as inactivity. */
#define REQUEST_TIMEOUT_S 120u
/* Room in the kernel's accept queue: while a flood arrives faster than the
 * listening thread accepts (and closes) it, a full queue would drop the
 * SYN of an honest client, which then retries only a second later. */
#define TCP_BACKLOG 1024

struct listener {
	struct kvzd *d;
	const char *token;      /* NULL: no authentication (the UNIX socket) */
	struct conn_guard *guard; /* TCP: header deadlines; NULL on the UNIX socket */
	struct MHD_Daemon *mhd;
	int fd;
	struct web *web;          /* TCP: the web UI and its sessions */
	struct tls_pem tls;       /* TCP with TLS: what MHD serves */
};

struct api {
	struct listener unix_l, tcp_l;
};

/* Per-request state while MHD delivers the body in pieces. */
struct upload {
	char *buf;
	size_t len;
	bool too_big;
	char session[WEB_ID_HEX + 1]; /* the browser session it came with, or "" */
	bool upgraded;                /* answered 101: MHD hands the socket over */
	/* A cluster peer's request: the SHA-256 its body must have. */
	char peer_body[CLUSTER_SECRET_HEX + 1];
};

const char *api_query(const struct api_req *r, const char *key)
{
	if (!r->conn)
		return NULL;
	return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

void api_json(struct api_resp *resp, int status, json_t *json)
{
	json_decref(resp->json);
	resp->status = status;
	resp->json = json;
}

void api_error(struct api_resp *resp, int status, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	api_json(resp, status, json_pack("{s:{s:i, s:s}}", "error", "code", status,
					 "message", msg));
}

static bool token_ok(struct MHD_Connection *conn, const char *token)
{
	const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (!h || strncmp(h, "Bearer ", 7))
		return false;
	h += 7;
	size_t a = strlen(h), b = strlen(token);
	/* Compare every byte whatever the first difference, so the time taken
	 * does not tell an attacker how much of the token was right. */
	unsigned diff = (unsigned)(a ^ b);
	for (size_t i = 0; i < b; i++)
		diff |= (unsigned char)token[i] ^ (unsigned char)(i < a ? h[i] : 0);
	return diff == 0;
}

static void dispatch(struct api_req *r, struct api_resp *resp)
{
	if (console_route(r, resp) || guests_route(r, resp) || event_stream_route(r, resp) ||
	    events_route(r, resp) || stats_route(r, resp) || metrics_route(r, resp) ||
	    jobs_route(r, resp) || nodes_route(r, resp) || migrations_route(r, resp) ||
	    policies_route(r, resp) || cluster_route(r, resp) || web_route(r, resp))
		return;
	api_error(resp, 404, "no such resource: %s %s", r->method, r->path);
}

json_t *api_get_json(struct kvzd *d, const char *path)
{
	struct api_req req = {.d = d, .method = "GET", .path = path};
	struct api_resp resp = {.status = 500};
	dispatch(&req, &resp);
	free(resp.text);
	free(resp.set_cookie);
	if (resp.mhd)
		MHD_destroy_response(resp.mhd);
	if (resp.status != 200) {
		json_decref(resp.json);
		return NULL;
	}
	return resp.json;
}

/* A response built by a route (an asset, a stream). */
static enum MHD_Result send_ready(struct MHD_Connection *conn, struct web *web,
				  struct api_resp *resp)
{
	struct MHD_Response *mr = resp->mhd;
	resp->mhd = NULL;
	web_add_headers(web, mr, resp);
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, mr);
	MHD_destroy_response(mr);
	return ret;
}

static enum MHD_Result send_resp(struct MHD_Connection *conn, struct web *web,
				 struct api_resp *resp)
{
	if (resp->mhd)
		return send_ready(conn, web, resp);
	char *body;
	const char *type = resp->content_type;
	if (resp->json) {
		body = json_dumps(resp->json, JSON_COMPACT);
		type = "application/json";
	} else {
		body = resp->text ? resp->text : strdup("");
		resp->text = NULL;
		if (!type)
			type = "text/plain; charset=utf-8";
	}
	if (!body)
		return MHD_NO;
	size_t len = strlen(body);
	if (resp->json) {
		/* A newline at the end makes curl and nc output readable. */
		char *nb = realloc(body, len + 2);
		if (nb) {
			body = nb;
			body[len++] = '\n';
			body[len] = 0;
		}
	}
	struct MHD_Response *mr = MHD_create_response_from_buffer(len, body,
								  MHD_RESPMEM_MUST_FREE);
	if (!mr) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(mr, "Content-Type", type);
	if (web)
		web_add_headers(web, mr, resp);
	enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp->status, mr);
	MHD_destroy_response(mr);
	return ret;
}

/* On the first call, when the header is complete: a client without the
 * token or a session gets its 401 before any body is read, and keeps its
 * header deadline, so it cannot hold the connection by dribbling a body.
 * The login page and the login itself are public, but keep that deadline
 * too. */
static enum MHD_Result check_auth(struct listener *l, struct MHD_Connection *conn,
				  const char *method, const char *url, struct upload *up)
{
	struct api_resp resp = {.status = 401};
	const char *authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
	if (authz && !strncmp(authz, "KvzPeer ", 8)) {
		/* Another member (cluster_auth.c): its users' token is not ours. */
		int st = cluster_peer_check(l->d, authz + 8, method, url, up->peer_body);
		if (st == 403)
			api_error(&resp, 403, "a cluster peer may not %s %s", method, url);
		else if (st)
			api_error(&resp, 401, "missing or wrong cluster credential");
	} else if (authz) {
		if (!token_ok(conn, l->token))
			api_error(&resp, 401, "missing or wrong bearer token");
	} else if (web_authenticate(l->web, conn, method, url, up->session, &resp) == 0 &&
		   !up->session[0]) {
		return MHD_YES;
	}
	if (resp.json) {
		enum MHD_Result ret = send_resp(conn, l->web, &resp);
		json_decref(resp.json);
		return ret;
	}
	conn_guard_request_started(l->guard, conn);
	MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, REQUEST_TIMEOUT_S);
	return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version,
			      const char *data, size_t *data_size, void **con_cls)
{
	(void)version;
	struct listener *l = cls;
	struct upload *up = *con_cls;
	if (!up) {
		up = calloc(1, sizeof(*up));
		if (!up)
			return MHD_NO;
		*con_cls = up;
		return l->token ? check_auth(l, conn, method, url, up) : MHD_YES;
	}
	if (*data_size) {
		if (up->len + *data_size > MAX_BODY) {
			up->too_big = true;
		} else {
			char *nb = realloc(up->buf, up->len + *data_size + 1);
			if (!nb)
				return MHD_NO;
			up->buf = nb;
			memcpy(up->buf + up->len, data, *data_size);
			up->len += *data_size;
			up->buf[up->len] = 0;
		}
		*data_size = 0;
		return MHD_YES;
	}
	struct api_resp resp = {.status = 500};
	struct api_req req = {.d = l->d, .method = method, .path = url, .conn = conn,
			      .web = l->web, .session = up->session};
	if (up->too_big) {
		api_error(&resp, 413, "request body larger than %d bytes", MAX_BODY);
	} else if (up->peer_body[0] && !cluster_peer_body_ok(up->peer_body, up->buf, up->len)) {
		api_error(&resp, 401, "the body is not the one the cluster peer signed");
	} else if (up->len) {
		json_error_t jerr;
		req.body = json_loadb(up->buf, up->len, 0, &jerr);
		if (!req.body)
			api_error(&resp, 400, "bad JSON in request body: %s (line %d)", jerr.text,
				  jerr.line);
	}
	if (!resp.json)
		dispatch(&req, &resp);
	up->upgraded = resp.status == MHD_HTTP_SWITCHING_PROTOCOLS;
	enum MHD_Result ret = send_resp(conn, l->web, &resp);
	json_decref(resp.json);
	free(resp.text);
	free(resp.set_cookie);
	json_decref(req.body);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
		      enum MHD_RequestTerminationCode toe)
{
	(void)toe;
	struct listener *l = cls;
	struct upload *up = *con_cls;
	/* An upgraded connection (a console) serves no further request: no
	 * header deadline for it. */
	if (l->guard && !(up && up->upgraded))
		conn_guard_request_done(l->guard, conn);
	if (up) {
		free(up->buf);
		free(up);
	}
	*con_cls = NULL;
}

static int listen_tcp(const char *spec, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host) || !colon[1]) {
		snprintf(err, errlen, "bad TCP address \"%s\" (want ADDR:PORT)", spec);
		return -1;
	}
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = 0;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res;
	int rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "bad TCP address \"%s\": %s", spec, gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, TCP_BACKLOG) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* Each listener is its own MHD daemon with its own listening thread and
 * connection threads, so a flood on TCP does not touch the UNIX socket.
 * One thread per connection: requests such as start or stop wait for a
 * supervisor, and must not hold up list or metrics. The connection limit
 * bounds threads and descriptors; on TCP the per-address limit keeps one
 * client from taking them all, and the guard drops clients that do not
 * deliver a header in time. */
static int start_listener(struct listener *l, const struct api_limits *lim,
			  char *err, size_t errlen)
{
	unsigned timeout = l->guard ? lim->idle_timeout_s : REQUEST_TIMEOUT_S;
	struct MHD_OptionItem tcp_opts[] = {
		{MHD_OPTION_PER_IP_CONNECTION_LIMIT, (intptr_t)lim->max_per_ip, NULL},
		{MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)conn_guard_notify, l->guard},
		{MHD_OPTION_HTTPS_MEM_CERT, 0, l->tls.cert}, /* these two only with TLS */
		{MHD_OPTION_HTTPS_MEM_KEY, 0, l->tls.key},
		{MHD_OPTION_END, 0, NULL},
	};
	if (!l->tls.cert)
		tcp_opts[2].option = MHD_OPTION_END;
	struct MHD_OptionItem none[] = {{MHD_OPTION_END, 0, NULL}};
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD |
			 MHD_ALLOW_UPGRADE;
	struct MHD_OptionItem *opts = l->guard ? tcp_opts : none;
	if (l->tls.cert)
		flags |= MHD_USE_TLS;
	l->mhd = MHD_start_daemon(flags,
				  0, NULL, NULL, handle, l,
				  MHD_OPTION_LISTEN_SOCKET, l->fd,
				  MHD_OPTION_NOTIFY_COMPLETED, completed, l,
				  MHD_OPTION_CONNECTION_LIMIT, lim->max_conns,
				  MHD_OPTION_CONNECTION_TIMEOUT, timeout,
				  MHD_OPTION_ARRAY, opts,
				  MHD_OPTION_END);
	if (!l->mhd) {
		snprintf(err, errlen, "cannot start the HTTP server");
		return -1;
	}
	return 0;
}

/* TCP's extras: the web UI, and the certificate when on TLS. */
static int prepare_web(struct listener *l, const struct web_options *web, char *err,
		       size_t errlen)
{
	l->web = web_new(web, l->token, err, errlen);
	if (!l->web)
		return -1;
	if (web->tls && tls_load_or_create(l->d->state_dir, web->tls_cert, web->tls_key, &l->tls,
					   err, errlen))
		return -1;
	return 0;
}

struct api *api_start(struct kvzd *d, const char *tcp, const char *token,
		      const struct api_limits *lim, const struct web_options *web,
		      char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->unix_l = (struct listener){.d = d, .fd = -1};
	a->tcp_l = (struct listener){.d = d, .fd = -1, .token = token};
	/* TCP (and its certificate, which can take a while to make) first: an
	 * answering UNIX socket means kvzd is wholly up. */
	if (tcp) {
		a->tcp_l.guard = conn_guard_start(lim->max_conns, lim->idle_timeout_s, err, errlen);
		if (!a->tcp_l.guard || prepare_web(&a->tcp_l, web, err, errlen))
			goto fail;
		a->tcp_l.fd = listen_tcp(tcp, err, errlen);
		if (a->tcp_l.fd < 0 || start_listener(&a->tcp_l, lim, err, errlen))
			goto fail;
	}
	a->unix_l.fd = kvz_unix_listen(d->socket_path, 0, 64, 0660, err, errlen);
	if (a->unix_l.fd < 0 || start_listener(&a->unix_l, lim, err, errlen))
		goto fail;
	return a;
fail:
	api_stop(a);
	return NULL;
}

static void stop_listener(struct listener *l)
{
	if (l->mhd)
		MHD_stop_daemon(l->mhd);
	if (l->fd >= 0)
		close(l->fd);
	conn_guard_stop(l->guard);
	web_free(l->web);
	tls_pem_free(&l->tls);
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	event_stream_shutdown();
	console_shutdown();
	stop_listener(&a->unix_l);
	stop_listener(&a->tcp_l);
	free(a);
}

bool api_item_path(const char *rest, char *item, size_t len, const char **action)
{
	const char *slash = strchr(rest + 1, '/');
	size_t n = slash ? (size_t)(slash - rest - 1) : strlen(rest + 1);
	*action = slash ? slash + 1 : NULL;
	if (*rest != '/' || !n || n >= len || (*action && strchr(*action, '/')))
		return false;
	memcpy(item, rest + 1, n);
	item[n] = 0;
	return true;
}

int api_optional_name(struct api_req *r, const char **name)
{
	json_t *n = r->body ? json_object_get(r->body, "name") : NULL;
	*name = json_string_value(n);
	if (r->body && (!json_is_object(r->body) || (n && !json_is_string(n)) ||
			json_object_size(r->body) > (n ? 1u : 0u)))
		return -1;
	return 0;
}

void api_job_reply(struct api_resp *resp, json_t *job, const struct op_error *e)
{
	if (job)
		api_json(resp, 202, job);
	else
		api_error(resp, e->status, "%s", e->msg);
}
