/* Header deadlines for the TCP listener. libmicrohttpd's connection timeout
 * counts inactivity only, so a client that sends one byte a second would
 * keep its connection (and its thread) for ever. The guard gives every
 * connection a deadline from its accept (or from the end of its previous
 * response) to a complete, authenticated request header, and a watchdog
 * thread shuts down the socket of one that misses it; MHD then sees the
 * connection end and frees it. Connections waiting for their header may
 * take three quarters of the slots; a new one beyond that pushes out the
 * oldest waiting one, so a client that sends its header at once gets in
 * even while a flood from many addresses fills the listener. */
#ifndef KVZD_CONN_GUARD_H
#define KVZD_CONN_GUARD_H

#include <stddef.h>

#include <microhttpd.h>

struct conn_guard;

/* A guard for at most max_conns connections at once, timeout_s seconds to
 * deliver a header; starts the watchdog thread. */
struct conn_guard *conn_guard_start(unsigned max_conns, unsigned timeout_s,
				    char *err, size_t errlen);
/* Stops the watchdog. Call after MHD_stop_daemon(): no connection is left. */
void conn_guard_stop(struct conn_guard *g);

/* MHD_OPTION_NOTIFY_CONNECTION callback, cls = the guard: the deadline
 * starts at accept and goes with the connection. */
void conn_guard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
		       enum MHD_ConnectionNotificationCode code);
/* The connection delivered an authenticated header: no deadline while its
 * request is served. */
void conn_guard_request_started(struct conn_guard *g, struct MHD_Connection *conn);
/* Its response is done: the next header is due within the timeout. */
void conn_guard_request_done(struct conn_guard *g, struct MHD_Connection *conn);

#endif
