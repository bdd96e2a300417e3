#include "conn_guard.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "mono_clock.h"

/* How often the watchdog looks: deadlines are met within this much. */
#define TICK_MS 200

enum slot_state {
	SLOT_FREE,
	SLOT_WAITING,          /* for a complete authenticated header */
	SLOT_SERVING,          /* a request is under way: no deadline */
	SLOT_DROPPED,          /* shut down; MHD has yet to notice */
};

struct slot {
	enum slot_state state;
	int fd;
	int64_t since_ms;      /* SLOT_WAITING: since when */
};

struct conn_guard {
	pthread_mutex_t lock;  /* guards slots; held while shutting a socket down */
	struct slot *slots;
	unsigned nslots;
	unsigned max_waiting;  /* waiting connections at once; see conn_guard_notify */
	int64_t timeout_ms;
	atomic_bool stop;
	pthread_t thread;
};


/* MHD calls the CLOSED notification before it closes the socket, and the
 * slot is freed there under the lock: so a descriptor shut down under the
 * lock is still this connection's, never a reused number. MHD's thread
 * then reads the end of the stream and closes the connection. */
static void drop(struct slot *s)
{
	shutdown(s->fd, SHUT_RDWR);
	s->state = SLOT_DROPPED;
}

static void *watchdog(void *arg)
{
	struct conn_guard *g = arg;
	struct timespec tick = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L};
	while (!atomic_load(&g->stop)) {
		nanosleep(&tick, NULL);
		int64_t now = kvz_mono_ms();
		unsigned dropped = 0;
		pthread_mutex_lock(&g->lock);
		for (unsigned i = 0; i < g->nslots; i++) {
			struct slot *s = &g->slots[i];
			if (s->state != SLOT_WAITING || now < s->since_ms + g->timeout_ms)
				continue;
			drop(s);
			dropped++;
		}
		pthread_mutex_unlock(&g->lock);
		if (dropped)
			kvz_debug("dropped %u TCP connection(s) without a request header in time",
				  dropped);
	}
	return NULL;
}

struct conn_guard *conn_guard_start(unsigned max_conns, unsigned timeout_s,
				    char *err, size_t errlen)
{
	struct conn_guard *g = calloc(1, sizeof(*g));
	if (g)
		g->slots = calloc(max_conns, sizeof(*g->slots));
	if (!g || !g->slots) {
		free(g);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&g->lock, NULL);
	g->nslots = max_conns;
	g->max_waiting = max_conns - max_conns / 4;
	g->timeout_ms = (int64_t)timeout_s * 1000;
	int rc = pthread_create(&g->thread, NULL, watchdog, g);
	if (rc) {
		snprintf(err, errlen, "cannot start the connection watchdog: %s", strerror(rc));
		free(g->slots);
		free(g);
		return NULL;
	}
	return g;
}

void conn_guard_stop(struct conn_guard *g)
{
	if (!g)
		return;
	atomic_store(&g->stop, true);
	pthread_join(g->thread, NULL);
	pthread_mutex_destroy(&g->lock);
	free(g->slots);
	free(g);
}

/* The waiting connection accepted first, if there are max_waiting. */
static struct slot *oldest_if_full(struct conn_guard *g)
{
	struct slot *oldest = NULL;
	unsigned waiting = 0;
	for (unsigned i = 0; i < g->nslots; i++) {
		struct slot *s = &g->slots[i];
		if (s->state != SLOT_WAITING)
			continue;
		waiting++;
		if (!oldest || s->since_ms < oldest->since_ms)
			oldest = s;
	}
	return waiting >= g->max_waiting ? oldest : NULL;
}

static struct slot *slot_take(struct conn_guard *g, int fd)
{
	for (unsigned i = 0; i < g->nslots; i++) {
		struct slot *s = &g->slots[i];
		if (s->state == SLOT_FREE) {
			*s = (struct slot){.state = SLOT_WAITING, .fd = fd, .since_ms = kvz_mono_ms()};
			return s;
		}
	}
	return NULL;
}

/* Waiting connections may fill only three quarters of the slots, so that
 * MHD, whose limit counts every connection, keeps accepting: a new one
 * pushes out the oldest waiting one. A client that sends its header at
 * once therefore gets in even while a flood from many addresses holds the
 * listener full; the flood only shortens the time each of its own
 * connections may wait. */
void conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
		       enum MHD_ConnectionNotificationCode code)
{
	struct conn_guard *g = cls;
	pthread_mutex_lock(&g->lock);
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		int fd = ci ? ci->connect_fd : -1;
		struct slot *oldest = oldest_if_full(g);
		if (oldest)
			drop(oldest);
		*socket_context = fd >= 0 ? slot_take(g, fd) : NULL;
		/* No slot: more connections than MHD was told to allow; end it. */
		if (!*socket_context && fd >= 0)
			shutdown(fd, SHUT_RDWR);
	} else if (*socket_context) {
		((struct slot *)*socket_context)->state = SLOT_FREE;
		*socket_context = NULL;
	}
	pthread_mutex_unlock(&g->lock);
}

static void set_state(struct conn_guard *g, struct MHD_Connection *conn,
		      enum slot_state state)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct slot *s = ci ? ci->socket_context : NULL;
	if (!s)
		return;
	pthread_mutex_lock(&g->lock);
	if (s->state != SLOT_DROPPED) {
		s->state = state;
		s->since_ms = kvz_mono_ms();
	}
	pthread_mutex_unlock(&g->lock);
}

void conn_guard_request_started(struct conn_guard *g, struct MHD_Connection *conn)
{
	set_state(g, conn, SLOT_SERVING);
}

void conn_guard_request_done(struct conn_guard *g, struct MHD_Connection *conn)
{
	set_state(g, conn, SLOT_WAITING);
}
