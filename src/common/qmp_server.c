#include "qmp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "unix_socket.h"

#define QMP_MAX_CLIENTS 16
#define QMP_MAX_LINE (64 * 1024)

struct qmp_conn {
	int fd;              /* -1 when the slot is free */
	int negotiated;
	size_t len;
	char *buf;           /* QMP_MAX_LINE + 1 bytes */
};

struct qmp_server {
	int listen_fd;
	int wake_pipe[2];    /* written by qmp_server_stop() to end the thread */
	char path[108];
	char package[64];
	const struct qmp_command *cmds;
	size_t ncmds;
	void *opaque;
	pthread_t thread;
	/* Guards conns[].fd and writes: events come from other threads. */
	pthread_mutex_t lock;
	struct qmp_conn conns[QMP_MAX_CLIENTS];
};

void qmp_set_error(struct qmp_error *e, const char *cls, const char *fmt, ...)
{
	snprintf(e->cls, sizeof(e->cls), "%s", cls);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->desc, sizeof(e->desc), fmt, ap);
	va_end(ap);
}

/* Writes all of buf; the socket is blocking with a send timeout so that a
 * client that stops reading cannot stall the server forever. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Caller holds s->lock. Steals msg. */
static int send_json_locked(int fd, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!text)
		return -1;
	size_t n = strlen(text);
	text[n] = '\n';  /* replaces the NUL; written with its length below */
	int rc = write_all(fd, text, n + 1);
	free(text);
	return rc;
}

static int send_json(struct qmp_server *s, int fd, json_t *msg)
{
	pthread_mutex_lock(&s->lock);
	int rc = send_json_locked(fd, msg);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static json_t *error_reply(const char *cls, const char *desc)
{
	return json_pack("{s:{s:s,s:s}}", "error", "class", cls, "desc", desc);
}

static json_t *builtin_commands(struct qmp_server *s)
{
	json_t *list = json_array();
	json_array_append_new(list, json_pack("{s:s}", "name", "qmp_capabilities"));
	json_array_append_new(list, json_pack("{s:s}", "name", "query-commands"));
	json_array_append_new(list, json_pack("{s:s}", "name", "query-version"));
	for (size_t i = 0; i < s->ncmds; i++)
		json_array_append_new(list, json_pack("{s:s}", "name", s->cmds[i].name));
	return list;
}

static json_t *version_object(void)
{
	return json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "major", 0, "minor", 1,
			 "micro", 0, "package", "kvz");
}

static json_t *dispatch(struct qmp_server *s, struct qmp_conn *c, json_t *req)
{
	if (!json_is_object(req))
		return error_reply("GenericError", "QMP input must be a JSON object");
	json_t *exec = json_object_get(req, "execute");
	if (!exec)
		exec = json_object_get(req, "exec-oob");
	if (!json_is_string(exec))
		return error_reply("GenericError", "QMP input lacks member 'execute'");
	json_t *args = json_object_get(req, "arguments");
	if (args && !json_is_object(args))
		return error_reply("GenericError", "QMP input member 'arguments' must be an object");
	const char *name = json_string_value(exec);

	if (!strcmp(name, "qmp_capabilities")) {
		if (c->negotiated)
			return error_reply("CommandNotFound",
					   "Capabilities negotiation is already complete, command ignored");
		c->negotiated = 1;
		return json_pack("{s:{}}", "return");
	}
	if (!c->negotiated)
		return error_reply("CommandNotFound",
				   "Expecting capabilities negotiation with 'qmp_capabilities'");
	if (!strcmp(name, "query-commands"))
		return json_pack("{s:o}", "return", builtin_commands(s));
	if (!strcmp(name, "query-version"))
		return json_pack("{s:o}", "return", version_object());

	for (size_t i = 0; i < s->ncmds; i++) {
		if (strcmp(s->cmds[i].name, name))
			continue;
		struct qmp_error err = {0};
		json_t *empty = NULL;
		if (!args)
			args = empty = json_object();
		json_t *ret = s->cmds[i].fn(s->opaque, args, &err);
		json_decref(empty);
		if (err.cls[0]) {
			json_decref(ret);
			return error_reply(err.cls, err.desc);
		}
		if (!ret)
			ret = json_object();
		return json_pack("{s:o}", "return", ret);
	}
	char desc[256];
	snprintf(desc, sizeof(desc), "The command %.200s has not been found", name);
	return error_reply("CommandNotFound", desc);
}

static int handle_line(struct qmp_server *s, struct qmp_conn *c, const char *line, size_t len)
{
	json_error_t jerr;
	json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *reply;
	if (!req) {
		char desc[300];
		snprintf(desc, sizeof(desc), "JSON parse error: %.200s", jerr.text);
		reply = error_reply("GenericError", desc);
	} else {
		reply = dispatch(s, c, req);
		json_t *id = json_is_object(req) ? json_object_get(req, "id") : NULL;
		if (id)
			json_object_set(reply, "id", id);
		json_decref(req);
	}
	return send_json(s, c->fd, reply);
}

static void close_conn(struct qmp_server *s, struct qmp_conn *c)
{
	pthread_mutex_lock(&s->lock);
	close(c->fd);
	c->fd = -1;
	c->negotiated = 0;
	c->len = 0;
	pthread_mutex_unlock(&s->lock);
}

/* Reads what is available and handles complete lines. Returns -1 when the
 * connection must be closed. */
static int read_conn(struct qmp_server *s, struct qmp_conn *c)
{
	ssize_t n = read(c->fd, c->buf + c->len, QMP_MAX_LINE - c->len);
	if (n <= 0)
		return n < 0 && errno == EINTR ? 0 : -1;
	c->len += (size_t)n;
	size_t start = 0;
	for (size_t i = 0; i < c->len; i++) {
		if (c->buf[i] != '\n')
			continue;
		size_t l = i - start;
		int blank = 1;
		for (size_t k = start; k < i; k++)
			if (c->buf[k] != ' ' && c->buf[k] != '\r' && c->buf[k] != '\t')
				blank = 0;
		if (!blank && handle_line(s, c, c->buf + start, l) < 0)
			return -1;
		start = i + 1;
	}
	memmove(c->buf, c->buf + start, c->len - start);
	c->len -= start;
	if (c->len == QMP_MAX_LINE) {
		send_json(s, c->fd, error_reply("GenericError", "QMP message too long"));
		return -1;
	}
	return 0;
}

static void accept_conn(struct qmp_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct qmp_conn *slot = NULL;
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		if (s->conns[i].fd < 0) {
			slot = &s->conns[i];
			break;
		}
	if (!slot) {
		json_t *e = error_reply("GenericError", "too many QMP clients");
		pthread_mutex_lock(&s->lock);
		send_json_locked(fd, e);
		pthread_mutex_unlock(&s->lock);
		close(fd);
		return;
	}
	json_t *greeting = json_pack("{s:{s:o,s:[]}}", "QMP", "version",
				     version_object(), "capabilities");
	json_object_set_new(json_object_get(json_object_get(greeting, "QMP"), "version"),
			    "package", json_string(s->package));
	pthread_mutex_lock(&s->lock);
	slot->fd = fd;
	slot->len = 0;
	slot->negotiated = 0;
	int rc = send_json_locked(fd, greeting);
	pthread_mutex_unlock(&s->lock);
	if (rc < 0)
		close_conn(s, slot);
}

static void *server_thread(void *arg)
{
	struct qmp_server *s = arg;
	pthread_setname_np(pthread_self(), "qmp");   /* for top -H, gdb, stack dumps */
	for (;;) {
		struct pollfd pfd[QMP_MAX_CLIENTS + 2];
		struct qmp_conn *who[QMP_MAX_CLIENTS + 2];
		int n = 0;
		pfd[n++] = (struct pollfd){.fd = s->wake_pipe[0], .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
		for (int i = 0; i < QMP_MAX_CLIENTS; i++)
			if (s->conns[i].fd >= 0) {
				who[n] = &s->conns[i];
				pfd[n++] = (struct pollfd){.fd = s->conns[i].fd, .events = POLLIN};
			}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			kvz_error("qmp: poll: %s", strerror(errno));
			return NULL;
		}
		if (pfd[0].revents)
			return NULL;
		if (pfd[1].revents & POLLIN)
			accept_conn(s);
		for (int i = 2; i < n; i++)
			if (pfd[i].revents && read_conn(s, who[i]) < 0)
				close_conn(s, who[i]);
	}
}

struct qmp_server *qmp_server_start(const char *path, const char *package,
				    const struct qmp_command *cmds, size_t ncmds,
				    void *opaque, char *err, size_t errlen)
{
	struct qmp_server *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->cmds = cmds;
	s->ncmds = ncmds;
	s->opaque = opaque;
	snprintf(s->package, sizeof(s->package), "%s", package);
	snprintf(s->path, sizeof(s->path), "%s", path);
	pthread_mutex_init(&s->lock, NULL);
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		s->conns[i].fd = -1;
	s->wake_pipe[0] = s->wake_pipe[1] = -1;
	s->listen_fd = kvz_unix_listen(path, 0, 8, 0600, err, errlen);
	if (s->listen_fd < 0)
		goto fail;
	if (pipe2(s->wake_pipe, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
		s->conns[i].buf = malloc(QMP_MAX_LINE + 1);
		if (!s->conns[i].buf) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	int rc = pthread_create(&s->thread, NULL, server_thread, s);
	if (rc) {
		snprintf(err, errlen, "pthread_create: %s", strerror(rc));
		goto fail;
	}
	return s;
fail:
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		unlink(path);
	}
	if (s->wake_pipe[0] >= 0) {
		close(s->wake_pipe[0]);
		close(s->wake_pipe[1]);
	}
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		free(s->conns[i].buf);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return NULL;
}

void qmp_server_emit(struct qmp_server *s, const char *event, json_t *data)
{
	if (!s) {
		json_decref(data);
		return;
	}
	struct timeval tv;
	gettimeofday(&tv, NULL);
	json_t *msg = json_pack("{s:s,s:{s:I,s:I}}", "event", event, "timestamp",
				"seconds", (json_int_t)tv.tv_sec, "microseconds",
				(json_int_t)tv.tv_usec);
	json_object_set_new(msg, "data", data ? data : json_object());
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		if (s->conns[i].fd >= 0 && s->conns[i].negotiated)
			send_json_locked(s->conns[i].fd, json_incref(msg));
	pthread_mutex_unlock(&s->lock);
	json_decref(msg);
}

void qmp_server_stop(struct qmp_server *s)
{
	if (!s)
		return;
	char c = 0;
	if (write(s->wake_pipe[1], &c, 1) != 1)
		kvz_warn("qmp: cannot wake server thread: %s", strerror(errno));
	pthread_join(s->thread, NULL);
	for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
		if (s->conns[i].fd >= 0)
			close(s->conns[i].fd);
		free(s->conns[i].buf);
	}
	close(s->listen_fd);
	unlink(s->path);
	close(s->wake_pipe[0]);
	close(s->wake_pipe[1]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
