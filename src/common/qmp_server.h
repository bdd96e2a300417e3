/* QMP-compatible control socket, shared by kvz-vmm and kvz-ct.
 *
 * Wire protocol (QEMU's): on connect the server sends
 *   {"QMP": {"version": {...}, "capabilities": []}}
 * the client sends {"execute": "qmp_capabilities"}, then commands
 *   {"execute": NAME, "arguments": {...}, "id": ANY}
 * each answered by {"return": VALUE, "id": ...} or
 *   {"error": {"class": CLASS, "desc": TEXT}, "id": ...}.
 * Events are {"event": NAME, "data": {...}, "timestamp": {...}}.
 * Messages are newline-terminated JSON objects.
 *
 * The server runs its own thread; handlers are called on that thread, one
 * at a time, so they must only take locks the rest of the program can give
 * up promptly. */
#ifndef KVZ_QMP_SERVER_H
#define KVZ_QMP_SERVER_H

#include <jansson.h>
#include <stddef.h>

struct qmp_error {
	char cls[32];   /* "GenericError", "CommandNotFound", ... */
	char desc[512];
};

/* Returns the "return" value (a new reference; NULL means {}), or sets
 * *err with qmp_set_error() and returns NULL. args is never NULL (an empty
 * object when the client sent none). */
typedef json_t *(*qmp_handler_fn)(void *opaque, json_t *args, struct qmp_error *err);

struct qmp_command {
	const char *name;
	qmp_handler_fn fn;
};

struct qmp_server;

/* Binds a UNIX socket at path (replacing a stale socket file) and starts the
 * server thread. cmds must stay valid until qmp_server_stop(). package names
 * the program in the greeting. Returns NULL with a message in err. */
struct qmp_server *qmp_server_start(const char *path, const char *package,
				    const struct qmp_command *cmds, size_t ncmds,
				    void *opaque, char *err, size_t errlen);

/* The same in two steps, for a caller whose handlers need the server
 * pointer (qmp_server_take_fd, events): create binds the socket (clients
 * may connect and wait), serve starts the thread that answers them; until
 * then nothing is dispatched. qmp_server_stop ends either. */
struct qmp_server *qmp_server_create(const char *path, const char *package,
				     const struct qmp_command *cmds, size_t ncmds,
				     void *opaque, char *err, size_t errlen);
int qmp_server_serve(struct qmp_server *s, char *err, size_t errlen);

/* Sends an event to every negotiated client. Takes ownership of data (may
 * be NULL). Callable from any thread. */
void qmp_server_emit(struct qmp_server *s, const char *event, json_t *data);

/* Stops the thread, closes clients, unlinks the socket. NULL is a no-op.
 * Must not be called from a handler: ask the main thread to do it. */
void qmp_server_stop(struct qmp_server *s);

/* Inside a handler only: the last file descriptor the client whose command
 * runs sent with SCM_RIGHTS (QEMU's getfd), now the caller's; -1 if none. */
int qmp_server_take_fd(struct qmp_server *s);

void qmp_set_error(struct qmp_error *e, const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
