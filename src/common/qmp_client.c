#include "qmp_client.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mono_clock.h"
#include "unix_socket.h"

#define QMP_CLIENT_MAX (1024 * 1024)

struct qmp_client {
	int fd;
	int timeout_ms;
	char *buf;
	size_t len, cap;
	json_t *events;  /* events read while waiting for a command's reply */
	int pass_fd;     /* sent with the next message (getfd), or -1 */
};


/* Reads one newline-terminated JSON object, waiting at most timeout_ms.
 * Returns a new reference or NULL (timeout: *timed_out set; EOF, junk). */
static json_t *read_message(struct qmp_client *c, int timeout_ms, bool *timed_out, char *err,
			    size_t errlen)
{
	long long deadline = kvz_mono_ms() + timeout_ms;
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		if (nl) {
			size_t l = (size_t)(nl - c->buf);
			json_error_t jerr;
			json_t *msg = json_loadb(c->buf, l, 0, &jerr);
			memmove(c->buf, nl + 1, c->len - l - 1);
			c->len -= l + 1;
			if (!msg)
				snprintf(err, errlen, "malformed QMP message: %s", jerr.text);
			return msg;
		}
		if (c->len == c->cap) {
			if (c->cap >= QMP_CLIENT_MAX) {
				snprintf(err, errlen, "QMP message too long");
				return NULL;
			}
			size_t ncap = c->cap ? c->cap * 2 : 4096;
			char *nb = realloc(c->buf, ncap);
			if (!nb) {
				snprintf(err, errlen, "out of memory");
				return NULL;
			}
			c->buf = nb;
			c->cap = ncap;
		}
		long long left = deadline - kvz_mono_ms();
		if (left <= 0) {
			snprintf(err, errlen, "timed out waiting for QMP reply");
			*timed_out = true;
			return NULL;
		}
		struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		ssize_t n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			snprintf(err, errlen, "QMP connection closed");
			return NULL;
		}
		c->len += (size_t)n;
	}
}

static int send_message(struct qmp_client *c, json_t *msg, char *err, size_t errlen)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	if (!text) {
		snprintf(err, errlen, "cannot encode QMP request");
		return -1;
	}
	size_t len = strlen(text);
	text[len] = '\n';
	const char *p = text;
	size_t left = len + 1;
	while (left) {
		ssize_t n = c->pass_fd >= 0 ? kvz_send_fd(c->fd, p, left, c->pass_fd)
					    : send(c->fd, p, left, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "QMP send: %s", strerror(errno));
			free(text);
			return -1;
		}
		c->pass_fd = -1;   /* it went with the first byte */
		p += n;
		left -= (size_t)n;
	}
	free(text);
	return 0;
}

int qmp_client_getfd(struct qmp_client *c, const char *fdname, int fd, char *err,
		     size_t errlen)
{
	json_t *args = json_pack("{s:s}", "fdname", fdname);
	c->pass_fd = fd;
	int rc = qmp_client_execute(c, "getfd", args, NULL, NULL, 0, err, errlen);
	c->pass_fd = -1;
	json_decref(args);
	return rc;
}

struct qmp_client *qmp_client_connect(const char *path, int timeout_ms,
				      char *err, size_t errlen)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "QMP socket path too long: %s", path);
		return NULL;
	}
	strcpy(addr.sun_path, path);
	struct qmp_client *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->timeout_ms = timeout_ms;
	c->pass_fd = -1;
	c->events = json_array();
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
		qmp_client_close(c);
		return NULL;
	}
	bool timed_out = false;
	json_t *greeting = read_message(c, timeout_ms, &timed_out, err, errlen);
	if (!greeting || !json_object_get(greeting, "QMP")) {
		if (greeting)
			snprintf(err, errlen, "%s did not send a QMP greeting", path);
		json_decref(greeting);
		qmp_client_close(c);
		return NULL;
	}
	json_decref(greeting);
	if (qmp_client_execute(c, "qmp_capabilities", NULL, NULL, NULL, 0, err, errlen)) {
		qmp_client_close(c);
		return NULL;
	}
	return c;
}

int qmp_client_send(struct qmp_client *c, const char *cmd, json_t *args, char *err,
		    size_t errlen)
{
	json_t *req = json_pack("{s:s}", "execute", cmd);
	if (args)
		json_object_set(req, "arguments", args);
	int rc = send_message(c, req, err, errlen);
	json_decref(req);
	return rc;
}

int qmp_client_reply(struct qmp_client *c, int timeout_ms, json_t **ret, char *cls,
		     size_t clslen, char *err, size_t errlen)
{
	for (;;) {
		/* timeout_ms bounds each wait for a message, events included. */
		bool timed_out = false;
		json_t *msg = read_message(c, timeout_ms, &timed_out, err, errlen);
		if (!msg)
			return timed_out ? QMP_CLIENT_PENDING : -1;
		if (json_object_get(msg, "event")) {
			json_array_append_new(c->events, msg);
			continue;
		}
		json_t *r = json_object_get(msg, "return");
		if (r) {
			if (ret)
				*ret = json_incref(r);
			json_decref(msg);
			return 0;
		}
		json_t *e = json_object_get(msg, "error");
		const char *desc = json_string_value(json_object_get(e, "desc"));
		const char *klass = json_string_value(json_object_get(e, "class"));
		snprintf(err, errlen, "%s", desc ? desc : "malformed QMP reply");
		if (cls && clslen)
			snprintf(cls, clslen, "%s", klass ? klass : "GenericError");
		json_decref(msg);
		return e ? 1 : -1;
	}
}

int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args,
		       json_t **ret, char *cls, size_t clslen,
		       char *err, size_t errlen)
{
	if (qmp_client_send(c, cmd, args, err, errlen))
		return -1;
	int rc = qmp_client_reply(c, c->timeout_ms, ret, cls, clslen, err, errlen);
	if (rc == QMP_CLIENT_PENDING) {
		snprintf(err, errlen, "timed out waiting for QMP reply");
		rc = -1;
	}
	return rc;
}

json_t *qmp_client_next_event(struct qmp_client *c, int timeout_ms)
{
	if (json_array_size(c->events)) {
		json_t *ev = json_incref(json_array_get(c->events, 0));
		json_array_remove(c->events, 0);
		return ev;
	}
	char err[128];
	long long deadline = kvz_mono_ms() + timeout_ms;
	for (;;) {
		long long left = deadline - kvz_mono_ms();
		if (left <= 0)
			return NULL;
		bool timed_out = false;
		json_t *msg = read_message(c, (int)left, &timed_out, err, sizeof(err));
		if (!msg)
			return NULL;
		if (json_object_get(msg, "event"))
			return msg;
		json_decref(msg);
	}
}

int qmp_client_fd(const struct qmp_client *c) { return c->fd; }

void qmp_client_close(struct qmp_client *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	json_decref(c->events);
	free(c->buf);
	free(c);
}
