/* The REST API: libmicrohttpd serving JSON on a UNIX socket (and optionally
 * TCP with a bearer token). api.c owns the HTTP plumbing and dispatch; each
 * resource has a file of routes (guests.c, events.c, stats.c, metrics.c). */
#ifndef KVZD_API_H
#define KVZD_API_H

#include <stdbool.h>

#include <jansson.h>

#include "guest_ops.h"
#include "kvzd.h"

struct api;
struct web;
struct web_options;

struct api_req {
	struct kvzd *d;
	const char *method;
	const char *path;      /* without the query string */
	json_t *body;          /* parsed JSON body, or NULL when there was none */
	void *conn;            /* the MHD connection, for api_query(); NULL for api_get_json() */
	struct web *web;       /* the TCP listener's web UI (web_routes.h); NULL on the UNIX socket */
	const char *session;   /* the browser session the request came with, or NULL/"" */
};

struct api_resp {
	int status;
	json_t *json;          /* owned; sent as application/json */
	char *text;            /* owned (malloc); sent as text/plain when json is NULL */
	const char *content_type;
	void *mhd;             /* a ready struct MHD_Response (owned), sent as is: assets, streams */
	char *set_cookie;      /* owned; a Set-Cookie header */
	const char *location;  /* a Location header */
};

/* A query-string argument or NULL. */
const char *api_query(const struct api_req *r, const char *key);
/* {"error": {"code": status, "message": ...}} */
void api_error(struct api_resp *resp, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void api_json(struct api_resp *resp, int status, json_t *json);

/* Routes: each returns false when the path is not theirs. */
bool guests_route(struct api_req *r, struct api_resp *resp);
bool events_route(struct api_req *r, struct api_resp *resp);
/* The all= query of /v1/events and its stream: *all is true for all=1 on a
 * cluster member; false (after a 400 in resp) when all= is bad. */
bool events_all_param(struct api_req *r, struct api_resp *resp, bool *all);
bool stats_route(struct api_req *r, struct api_resp *resp);
bool metrics_route(struct api_req *r, struct api_resp *resp);
bool jobs_route(struct api_req *r, struct api_resp *resp);
bool nodes_route(struct api_req *r, struct api_resp *resp);
bool migrations_route(struct api_req *r, struct api_resp *resp);
/* POST /v1/guests/GUEST/migrate. */
void migrate_route(struct api_req *r, struct api_resp *resp, const char *guest);
bool policies_route(struct api_req *r, struct api_resp *resp);
/* /v1/guests/GUEST/snapshots, rest being what follows "snapshots". */
void snapshots_route(struct api_req *r, struct api_resp *resp, const char *guest,
		     const char *rest);
/* /v1/guests/GUEST/backups, rest being what follows "backups". */
void backups_route(struct api_req *r, struct api_resp *resp, const char *guest,
		   const char *rest);
/* Helpers of the snapshot and backup routes. "/ITEM" or "/ITEM/ACTION"
 * (rest) split: false when it is neither. */
bool api_item_path(const char *rest, char *item, size_t len, const char **action);
/* A body that is absent or {"name": STRING}: 0 with *name (NULL when
 * absent), -1 for anything else. */
int api_optional_name(struct api_req *r, const char **name);
/* 202 with a submitted job, or e's error. */
void api_job_reply(struct api_resp *resp, json_t *job, const struct op_error *e);
bool event_stream_route(struct api_req *r, struct api_resp *resp);
/* GET /v1/guests/NAME/console as a WebSocket (web_console.c). */
bool console_route(struct api_req *r, struct api_resp *resp);
/* Ends every console relay and waits for them (before the listeners stop). */
void console_shutdown(void);
/* Ends every event stream (before the listeners stop). */
void event_stream_shutdown(void);
/* What GET PATH answers on the UNIX socket when it is 200, else NULL. */
json_t *api_get_json(struct kvzd *d, const char *path);

/* Stats of one guest (GET /v1/guests/NAME/stats), used by guests.c. */
void stats_guest(struct api_req *r, struct api_resp *resp, const char *name);
/* The latest usage of a guest as a JSON object, or NULL. */
json_t *stats_usage_json(const char *name);

/* What one client may hold (docs/architecture.md, "kvzd and kvz"). */
struct api_limits {
	unsigned max_conns;       /* connections at once, per listener */
	unsigned max_per_ip;      /* TCP: connections at once from one address */
	unsigned idle_timeout_s;  /* TCP: from accept or the last response to a
				   * complete authenticated request header */
};

/* Listens on socket_path (refusing when another kvzd answers there) and, when
 * tcp is not NULL ("ADDR:PORT"), on TCP requiring "Authorization: Bearer
 * TOKEN" or a web UI session (web_routes.h), over TLS when web->tls. */
struct api *api_start(struct kvzd *d, const char *tcp, const char *token,
		      const struct api_limits *lim, const struct web_options *web,
		      char *err, size_t errlen);
void api_stop(struct api *a);

#endif
