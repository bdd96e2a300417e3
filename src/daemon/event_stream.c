/* GET /v1/events/stream: server-sent events (text/event-stream) so that a
 * browser (or kvz) sees guests change without polling. Each stream has its
 * connection's own thread (MHD thread per connection), which waits in the
 * reader below and looks at the store's events once a second and its jobs
 * every 250 ms; see docs/api.md. With all=1 on a cluster member the
 * events are every member's, read from etcd (cluster_events.c) when the
 * member's watch of them reports a write (or every WATCH_RECHECK_MS, or
 * once a second while the watch is not open). */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <microhttpd.h>

#include "api.h"
#include "cluster.h"
#include "parse.h"
#include "store.h"
#include "web_routes.h"

#define CHECK_MS 1000       /* new events are looked for this often */
#define JOBS_CHECK_MS 250   /* jobs too: a progress bar wants more than 1 Hz */
#define JOBS_SENT 20        /* the newest jobs in a "jobs" message */
#define KEEPALIVE_MS 15000  /* a comment line when nothing else was sent */
#define MAX_EVENTS 100      /* events sent per check */
#define WATCH_RECHECK_MS 15000 /* all=1 with the watch open: a range anyway this often */

/* Set once when kvzd stops, before MHD joins the connection threads: each
 * stream's reader returns within one wait. One flag for all streams because
 * stopping is a property of the process, not of a listener. */
static atomic_bool stopping;

struct stream {
	struct kvzd *d;
	struct web *web;                 /* NULL on the UNIX socket */
	char session[WEB_ID_HEX + 1];    /* "": not a browser session */
	int64_t last_id;
	bool all;                         /* every member's events (cluster mode) */
	int64_t next_snapshot, next_keepalive, next_events;
	uint64_t ev_gen;                  /* all=1: the watch's count last seen */
	char *jobs_sent;                  /* the last "jobs" message's data */
	char *buf;                        /* what is ready to go out */
	size_t len, off;
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void append(struct stream *s, const char *text)
{
	size_t n = strlen(text);
	char *nb = realloc(s->buf, s->len + n + 1);
	if (!nb)
		return;
	s->buf = nb;
	memcpy(s->buf + s->len, text, n + 1);
	s->len += n;
}

/* One SSE message; JSON compact dumps carry no newline. */
static void message(struct stream *s, const char *type, int64_t id, json_t *data)
{
	char head[96];
	char *js = json_dumps(data, JSON_COMPACT);
	if (id)
		snprintf(head, sizeof(head), "id: %lld\nevent: %s\ndata: ", (long long)id, type);
	else
		snprintf(head, sizeof(head), "event: %s\ndata: ", type);
	append(s, head);
	append(s, js ? js : "null");
	append(s, "\n\n");
	free(js);
}

static void snapshot(struct stream *s)
{
	json_t *host = api_get_json(s->d, "/v1/host");
	json_t *guests = api_get_json(s->d, "/v1/guests");
	json_t *snap = json_pack("{s:o, s:o, s:I}", "host", host ? host : json_null(),
				 "guests", guests ? guests : json_array(),
				 "ts_ms", (json_int_t)kvzd_now_ms());
	message(s, "snapshot", 0, snap);
	json_decref(snap);
	s->next_snapshot = mono_ms() + (int64_t)s->d->sample_interval_s * 1000;
}

static bool new_events(struct stream *s)
{
	struct op_error err;
	json_t *list = s->all ? cluster_events_list(s->d, s->last_id, NULL, MAX_EVENTS, &err)
			      : store_event_list(s->d->store, s->last_id, NULL, MAX_EVENTS);
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e) {
		s->last_id = json_integer_value(json_object_get(e, "id"));
		message(s, "guest-event", s->last_id, e);
	}
	bool any = json_array_size(list) > 0;
	json_decref(list);
	return any;
}

/* The newest jobs, whenever they differ from what this stream last sent:
 * a running job's progress is stored every 200 ms (jobs.c), so a browser's
 * progress bar moves without polling. */
static void jobs(struct stream *s)
{
	json_t *list = store_job_list(s->d->store, NULL, JOBS_SENT);
	char *js = list ? json_dumps(list, JSON_COMPACT) : NULL;
	json_decref(list);
	if (!js || (s->jobs_sent && !strcmp(js, s->jobs_sent))) {
		free(js);
		return;
	}
	append(s, "event: jobs\ndata: ");
	append(s, js);
	append(s, "\n\n");
	free(s->jobs_sent);
	s->jobs_sent = js;
}

/* When to look for events next after looking now: with all=1 and the
 * cluster's watch open, the watch says when (the re-check is a safety
 * net); else every CHECK_MS. True when the watch reported a write. */
static bool events_due(struct stream *s, int64_t now)
{
	if (!s->all)
		return now >= s->next_events;
	bool watching;
	uint64_t gen = cluster_events_generation(s->d, &watching);
	bool moved = gen != s->ev_gen;
	if (!moved && now < s->next_events)
		return false;
	s->ev_gen = gen;
	s->next_events = now + (watching ? WATCH_RECHECK_MS : CHECK_MS);
	return true;
}

/* Blocks until there is something to send (or the stream must end). */
static bool produce(struct stream *s)
{
	while (!atomic_load(&stopping)) {
		if (s->session[0] && !web_session_alive(s->web, s->session))
			return false;
		int64_t now = mono_ms();
		if (events_due(s, now)) {
			if (!s->all)
				s->next_events = now + CHECK_MS;
			if (new_events(s))
				snapshot(s);
		}
		if (now >= s->next_snapshot)
			snapshot(s);
		jobs(s);
		if (!s->len && now >= s->next_keepalive)
			append(s, ": keepalive\n\n");
		if (s->len) {
			s->next_keepalive = now + KEEPALIVE_MS;
			return true;
		}
		struct timespec ts = {0, JOBS_CHECK_MS * 1000000L};
		nanosleep(&ts, NULL);
	}
	return false;
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max)
{
	(void)pos;
	struct stream *s = cls;
	if (s->off == s->len) {
		s->off = s->len = 0;
		if (!produce(s))
			return MHD_CONTENT_READER_END_OF_STREAM;
	}
	size_t n = s->len - s->off < max ? s->len - s->off : max;
	memcpy(out, s->buf + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *s = cls;
	free(s->jobs_sent);
	free(s->buf);
	free(s);
}

/* Where the stream starts: after Last-Event-ID (a reconnecting
 * EventSource) or ?since=ID, else after the newest event now. */
static bool start_id(struct api_req *r, struct api_resp *resp, bool all, int64_t *out)
{
	const char *v = r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
							       "Last-Event-ID") : NULL;
	if (!v)
		v = api_query(r, "since");
	uint64_t id;
	if (v) {
		if (!kvz_parse_u64(v, 0, INT64_MAX, &id)) {
			api_error(resp, 400, "since must be an event id");
			return false;
		}
		*out = (int64_t)id;
		return true;
	}
	if (all) {
		*out = cluster_events_cursor(r->d);
		if (*out < 0)
			api_error(resp, 503, "cannot read the cluster's events: etcd does not answer");
		return *out >= 0;
	}
	json_t *last = store_event_list(r->d->store, 0, NULL, 1);
	*out = json_integer_value(json_object_get(json_array_get(last, 0), "id"));
	json_decref(last);
	return true;
}

bool event_stream_route(struct api_req *r, struct api_resp *resp)
{
	if (strcmp(r->path, "/v1/events/stream"))
		return false;
	if (strcmp(r->method, "GET")) {
		api_error(resp, 405, "%s is not allowed on %s", r->method, r->path);
		return true;
	}
	int64_t last_id;
	bool all;
	if (!events_all_param(r, resp, &all) || !start_id(r, resp, all, &last_id))
		return true;
	struct stream *s = calloc(1, sizeof(*s));
	if (!s) {
		api_error(resp, 500, "out of memory");
		return true;
	}
	s->last_id = last_id;
	s->all = all;
	s->d = r->d;
	s->web = r->web;
	if (r->session)
		snprintf(s->session, sizeof(s->session), "%s", r->session);
	/* The first snapshot goes out at once. */
	s->next_snapshot = 0;
	s->next_keepalive = mono_ms() + KEEPALIVE_MS;
	struct MHD_Response *mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
								    reader, s, stream_free);
	if (!mr) {
		stream_free(s);
		api_error(resp, 500, "out of memory");
		return true;
	}
	MHD_add_response_header(mr, "Content-Type", "text/event-stream; charset=utf-8");
	resp->status = 200;
	resp->mhd = mr;
	return true;
}

void event_stream_shutdown(void)
{
	atomic_store(&stopping, true);
}
