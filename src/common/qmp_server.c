#include "qmp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
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
/* Output a client has not read yet; past this it is dropped, so that a
 * client that stops reading costs memory, never a blocked thread. */
#define QMP_MAX_PENDING (1024 * 1024)
/* At stop, how long pending output (SHUTDOWN above all) may take to go. */
#define QMP_FINAL_FLUSH_MS 1000

struct qmp_conn {
	int fd;              /* -1 when the slot is free; non-blocking */
	int negotiated;
	int dead;            /* output overflowed or failed: close it */
	size_t len;
	char *buf;           /* QMP_MAX_LINE + 1 bytes */
	char *out;           /* pending output, out_len bytes */
	size_t out_len, out_cap;
	int passed_fd;       /* last descriptor the client sent (SCM_RIGHTS), -1 if none */
};

struct qmp_server {
	int listen_fd;
	int wake_pipe[2];    /* non-blocking; wakes the thread for output or stop */
	int stopping;        /* under lock */
	char path[108];
	char package[64];
	const struct qmp_command *cmds;
	size_t ncmds;
	void *opaque;
	pthread_t thread;
	bool serving;        /* the thread runs (qmp_server_serve) */
	struct qmp_conn *current;   /* server thread only: whose command a handler serves */
	/* A leaf lock: guards the slots' fd/negotiated/dead/out* and stopping
	 * (events are queued from other threads). Held for appends and
	 * non-blocking sends only, never while calling out: no handler runs
	 * and no thread waits on a client under it. */
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

static void wake_thread(struct qmp_server *s)
{
	char c = 0;
	/* Full pipe: the thread has a wake-up pending already. */
	if (write(s->wake_pipe[1], &c, 1) < 0 && errno != EAGAIN)
		kvz_warn("qmp: cannot wake server thread: %s", strerror(errno));
}

/* Caller holds s->lock. Appends text + newline to c's pending output; a
 * client past QMP_MAX_PENDING is marked dead instead. */
static void queue_locked(struct qmp_conn *c, const char *text, size_t n)
{
	if (c->dead)
		return;
	if (c->out_len + n + 1 > QMP_MAX_PENDING) {
		c->dead = 1;
		return;
	}
	if (c->out_len + n + 1 > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		while (cap < c->out_len + n + 1)
			cap *= 2;
		char *p = realloc(c->out, cap);
		if (!p) {
			c->dead = 1;
			return;
		}
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, text, n);
	c->out[c->out_len + n] = '\n';
	c->out_len += n + 1;
}

/* Caller holds s->lock. Sends what the socket takes now (non-blocking).
 * Returns -1 when the client is gone. */
static int flush_locked(struct qmp_conn *c)
{
	size_t done = 0;
	while (done < c->out_len) {
		ssize_t n = send(c->fd, c->out + done, c->out_len - done, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	memmove(c->out, c->out + done, c->out_len - done);
	c->out_len -= done;
	return 0;
}

/* Queues msg (stolen) for c; the server thread sends it. */
static void send_json(struct qmp_server *s, struct qmp_conn *c, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	pthread_mutex_lock(&s->lock);
	if (text)
		queue_locked(c, text, strlen(text));
	else
		c->dead = 1;
	pthread_mutex_unlock(&s->lock);
	free(text);
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
		s->current = c;
		json_t *ret = s->cmds[i].fn(s->opaque, args, &err);
		s->current = NULL;
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
	send_json(s, c, reply);
	return 0;
}

static void close_conn(struct qmp_server *s, struct qmp_conn *c)
{
	pthread_mutex_lock(&s->lock);
	close(c->fd);
	if (c->passed_fd >= 0)
		close(c->passed_fd);
	c->passed_fd = -1;
	c->fd = -1;
	c->negotiated = 0;
	c->dead = 0;
	c->len = 0;
	c->out_len = 0;
	pthread_mutex_unlock(&s->lock);
}

/* Reads what is available and handles complete lines. Returns -1 when the
 * connection must be closed. */
/* Keeps the last descriptor a message carried (getfd takes it); any other
 * is closed at once, so a client cannot make us hold many. */
static void take_rights(struct qmp_conn *c, struct msghdr *m)
{
	for (struct cmsghdr *h = CMSG_FIRSTHDR(m); h; h = CMSG_NXTHDR(m, h)) {
		if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(h) + i * sizeof(int), sizeof(int));
			if (c->passed_fd >= 0)
				close(c->passed_fd);
			c->passed_fd = fd;
		}
	}
}

int qmp_server_take_fd(struct qmp_server *s)
{
	struct qmp_conn *c = s->current;
	if (!c)
		return -1;
	int fd = c->passed_fd;
	c->passed_fd = -1;
	return fd;
}

static int read_conn(struct qmp_server *s, struct qmp_conn *c)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} ctl;
	struct iovec iov = {.iov_base = c->buf + c->len, .iov_len = QMP_MAX_LINE - c->len};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			   .msg_controllen = sizeof(ctl.buf)};
	ssize_t n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
	/* A failed call (ECONNRESET from a client that left with output
	 * unread) leaves msg_controllen as it was, and ctl.buf holds the
	 * last message's descriptor on this thread's stack: taking it would
	 * close a number that now belongs to its new owner (the migration
	 * stream of a getfd, issue 11). Only a successful call's rights. */
	if (n < 0)
		return errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
	take_rights(c, &m);
	if (n == 0)
		return -1;
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
		send_json(s, c, error_reply("GenericError", "QMP message too long"));
		c->len = 0;
		pthread_mutex_lock(&s->lock);
		c->dead = 1;   /* closed after one try to send the error */
		pthread_mutex_unlock(&s->lock);
	}
	return 0;
}

static void accept_conn(struct qmp_server *s)
{
	int fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	struct qmp_conn *slot = NULL;
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		if (s->conns[i].fd < 0) {
			slot = &s->conns[i];
			break;
		}
	if (!slot) {
		static const char msg[] =
			"{\"error\":{\"class\":\"GenericError\",\"desc\":\"too many QMP clients\"}}\n";
		if (send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			kvz_debug("qmp: refusing a client: %s", strerror(errno));
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
	slot->dead = 0;
	slot->out_len = 0;
	pthread_mutex_unlock(&s->lock);
	send_json(s, slot, greeting);
}

/* Sends what c has pending; closes it when it is gone, or dead (what a
 * dead client's socket did not take at once is dropped with it). */
static void service_output(struct qmp_server *s, struct qmp_conn *c)
{
	pthread_mutex_lock(&s->lock);
	bool gone = c->out_len && flush_locked(c) < 0;
	gone = gone || c->dead;
	pthread_mutex_unlock(&s->lock);
	if (gone)
		close_conn(s, c);
}

static bool has_output(struct qmp_server *s, struct qmp_conn *c)
{
	pthread_mutex_lock(&s->lock);
	bool r = c->out_len > 0;
	pthread_mutex_unlock(&s->lock);
	return r;
}

/* At stop: what is pending (SHUTDOWN above all) gets QMP_FINAL_FLUSH_MS to
 * leave, then clients are closed whatever they do. */
static void final_flush(struct qmp_server *s)
{
	for (int waited = 0; waited < QMP_FINAL_FLUSH_MS; waited += 10) {
		struct pollfd pfd[QMP_MAX_CLIENTS];
		nfds_t n = 0;
		for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
			struct qmp_conn *c = &s->conns[i];
			if (c->fd < 0)
				continue;
			service_output(s, c);
			if (c->fd >= 0 && has_output(s, c))
				pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
		}
		if (n == 0)
			return;
		poll(pfd, n, 10);
	}
}

static bool drain_wake(struct qmp_server *s)
{
	char buf[64];
	while (read(s->wake_pipe[0], buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&s->lock);
	bool stop = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return stop;
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
				short ev = POLLIN | (has_output(s, &s->conns[i]) ? POLLOUT : 0);
				who[n] = &s->conns[i];
				pfd[n++] = (struct pollfd){.fd = s->conns[i].fd, .events = ev};
			}
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			kvz_error("qmp: poll: %s", strerror(errno));
			return NULL;
		}
		if (pfd[0].revents && drain_wake(s)) {
			final_flush(s);
			return NULL;
		}
		if (pfd[1].revents & POLLIN)
			accept_conn(s);
		for (int i = 2; i < n; i++)
			if ((pfd[i].revents & ~POLLOUT) && read_conn(s, who[i]) < 0)
				close_conn(s, who[i]);
		/* Replies, greetings and events queued meanwhile. */
		for (int i = 0; i < QMP_MAX_CLIENTS; i++)
			if (s->conns[i].fd >= 0)
				service_output(s, &s->conns[i]);
	}
}

struct qmp_server *qmp_server_create(const char *path, const char *package,
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
	for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
		s->conns[i].fd = -1;
		s->conns[i].passed_fd = -1;
	}
	s->wake_pipe[0] = s->wake_pipe[1] = -1;
	s->listen_fd = kvz_unix_listen(path, 0, 8, 0600, err, errlen);
	if (s->listen_fd < 0)
		goto fail;
	if (pipe2(s->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
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

int qmp_server_serve(struct qmp_server *s, char *err, size_t errlen)
{
	int rc = pthread_create(&s->thread, NULL, server_thread, s);
	if (rc) {
		snprintf(err, errlen, "pthread_create: %s", strerror(rc));
		return -1;
	}
	s->serving = true;
	return 0;
}

struct qmp_server *qmp_server_start(const char *path, const char *package,
				    const struct qmp_command *cmds, size_t ncmds,
				    void *opaque, char *err, size_t errlen)
{
	struct qmp_server *s = qmp_server_create(path, package, cmds, ncmds, opaque, err, errlen);
	if (s && qmp_server_serve(s, err, errlen) < 0) {
		qmp_server_stop(s);
		return NULL;
	}
	return s;
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
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!text)
		return;
	/* Only queued here: the caller may hold a device's lock or be a vCPU,
	 * and must never wait for a client. */
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < QMP_MAX_CLIENTS; i++)
		if (s->conns[i].fd >= 0 && s->conns[i].negotiated)
			queue_locked(&s->conns[i], text, strlen(text));
	pthread_mutex_unlock(&s->lock);
	free(text);
	wake_thread(s);
}

void qmp_server_stop(struct qmp_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = 1;
	pthread_mutex_unlock(&s->lock);
	wake_thread(s);
	if (s->serving)
		pthread_join(s->thread, NULL);
	for (int i = 0; i < QMP_MAX_CLIENTS; i++) {
		if (s->conns[i].fd >= 0)
			close(s->conns[i].fd);
		if (s->conns[i].passed_fd >= 0)
			close(s->conns[i].passed_fd);
		free(s->conns[i].buf);
		free(s->conns[i].out);
	}
	close(s->listen_fd);
	unlink(s->path);
	close(s->wake_pipe[0]);
	close(s->wake_pipe[1]);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
