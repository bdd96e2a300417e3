/* Client side of the QMP protocol (see qmp_server.h): used by kvzd, the
 * kvz-ct subcommands that reach a running container, and tests. */
#ifndef KVZ_QMP_CLIENT_H
#define KVZ_QMP_CLIENT_H

#include <jansson.h>

struct qmp_client;

/* Connects, reads the greeting, negotiates capabilities. timeout_ms bounds
 * every later read as well. NULL with a message in err on failure. */
struct qmp_client *qmp_client_connect(const char *path, int timeout_ms,
				      char *err, size_t errlen);

/* Runs one command. args is borrowed and may be NULL. On success returns 0
 * and, when ret is not NULL, stores a new reference to the "return" value.
 * Returns 1 when the server answered with an error (its desc in err, its
 * class in cls when cls is not NULL), -1 on a transport failure or timeout. */
int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args,
		       json_t **ret, char *cls, size_t clslen,
		       char *err, size_t errlen);

/* The same in two steps, for a caller that waits for a slow answer in
 * slices and checks its own conditions between them: send, then
 * qmp_client_reply() until it returns other than QMP_CLIENT_PENDING (no
 * message within timeout_ms: the command is still running; call again;
 * events read meanwhile are queued for qmp_client_next_event()). A
 * reply that is not the command's own is an error: one command at a
 * time. */
#define QMP_CLIENT_PENDING 2
int qmp_client_send(struct qmp_client *c, const char *cmd, json_t *args, char *err,
		    size_t errlen);
int qmp_client_reply(struct qmp_client *c, int timeout_ms, json_t **ret, char *cls,
		     size_t clslen, char *err, size_t errlen);

/* Waits up to timeout_ms for the next event (events that arrived while a
 * command was running are queued). Returns a new reference, or NULL on
 * timeout or disconnect. */
json_t *qmp_client_next_event(struct qmp_client *c, int timeout_ms);

/* QMP getfd as libvirt drives QEMU: passes fd over the socket
 * (SCM_RIGHTS) for the server to keep under fdname, e.g. for a later
 * `migrate {"uri": "fd:NAME"}`. The caller still owns its fd. Returns as
 * qmp_client_execute(). */
int qmp_client_getfd(struct qmp_client *c, const char *fdname, int fd, char *err,
		     size_t errlen);

int qmp_client_fd(const struct qmp_client *c);

void qmp_client_close(struct qmp_client *c);

#endif
