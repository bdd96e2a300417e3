/* Unit tests for src/common: value parsers, the QMP server/client pair,
 * the UNIX listener and the console replay ring. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "parse.h"
#include "qmp_client.h"
#include "qmp_server.h"
#include "replay_ring.h"
#include "unix_socket.h"
#include "write_all.h"

static void test_parse_size(void **state)
{
	(void)state;
	uint64_t v;
	assert_true(kvz_parse_size("512M", &v));
	assert_int_equal(v, 512ull << 20);
	assert_true(kvz_parse_size("1G", &v));
	assert_int_equal(v, 1ull << 30);
	assert_true(kvz_parse_size("1.5G", &v));
	assert_int_equal(v, 3ull << 29);
	assert_true(kvz_parse_size("4096", &v));
	assert_int_equal(v, 4096);
	assert_true(kvz_parse_size("64KiB", &v));
	assert_int_equal(v, 65536);
	assert_false(kvz_parse_size("", &v));
	assert_false(kvz_parse_size("-1M", &v));
	assert_false(kvz_parse_size("12X", &v));
	assert_false(kvz_parse_size("1.5", &v));
	assert_false(kvz_parse_size("99999999999T", &v));
	assert_false(kvz_parse_size("M", &v));
}

static void test_parse_pair(void **state)
{
	(void)state;
	uint64_t s, h;
	assert_true(kvz_parse_size_pair("512M:1G", &s, &h));
	assert_int_equal(s, 512ull << 20);
	assert_int_equal(h, 1ull << 30);
	assert_true(kvz_parse_size_pair("1G", &s, &h));
	assert_int_equal(s, h);
	assert_false(kvz_parse_size_pair("2G:1G", &s, &h));
	assert_false(kvz_parse_size_pair(":1G", &s, &h));
	assert_false(kvz_parse_size_pair("1G:", &s, &h));
}

static void test_parse_misc(void **state)
{
	(void)state;
	double c;
	assert_true(kvz_parse_cpus("0.5", &c));
	assert_true(c > 0.49 && c < 0.51);
	assert_false(kvz_parse_cpus("0", &c));
	assert_false(kvz_parse_cpus("abc", &c));
	assert_true(kvz_valid_name("web1"));
	assert_true(kvz_valid_name("a.b-c_d"));
	assert_false(kvz_valid_name("-web"));
	assert_false(kvz_valid_name("a/b"));
	assert_false(kvz_valid_name(""));
	char buf[16];
	assert_string_equal(kvz_format_size(512ull << 20, buf, sizeof(buf)), "512M");
	assert_string_equal(kvz_format_size(3ull << 29, buf, sizeof(buf)), "1.5G");
}

static json_t *cmd_echo(void *opaque, json_t *args, struct qmp_error *err)
{
	(*(int *)opaque)++;
	json_t *sleep_ms = json_object_get(args, "sleep_ms");
	if (sleep_ms)
		usleep((useconds_t)json_integer_value(sleep_ms) * 1000);
	if (json_object_get(args, "fail")) {
		qmp_set_error(err, "GenericError", "asked to fail");
		return NULL;
	}
	return json_deep_copy(args);
}

static const struct qmp_command cmds[] = {{"echo", cmd_echo}};

/* A server with the echo command on a fresh path (path: a mkstemp template). */
static struct qmp_server *start_echo_server(char *path, int *calls)
{
	char err[256];
	int tfd = mkstemp(path);
	assert_true(tfd >= 0);
	close(tfd);
	unlink(path);
	struct qmp_server *s = qmp_server_start(path, "test", cmds, 1, calls, err, sizeof(err));
	assert_non_null(s);
	return s;
}

static void test_qmp_roundtrip(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-test-qmp-XXXXXX";
	int calls = 0;
	char err[256], cls[32];
	struct qmp_server *s = start_echo_server(path, &calls);

	struct qmp_client *c = qmp_client_connect(path, 2000, err, sizeof(err));
	assert_non_null(c);
	json_t *args = json_pack("{s:i}", "x", 42), *ret = NULL;
	assert_int_equal(qmp_client_execute(c, "echo", args, &ret, cls, sizeof(cls), err, sizeof(err)), 0);
	assert_int_equal(json_integer_value(json_object_get(ret, "x")), 42);
	json_decref(ret);
	json_decref(args);
	args = json_pack("{s:b}", "fail", 1);
	assert_int_equal(qmp_client_execute(c, "echo", args, NULL, cls, sizeof(cls), err, sizeof(err)), 1);
	assert_string_equal(err, "asked to fail");
	json_decref(args);
	assert_int_equal(qmp_client_execute(c, "nope", NULL, NULL, cls, sizeof(cls), err, sizeof(err)), 1);
	assert_string_equal(cls, "CommandNotFound");
	assert_int_equal(calls, 2);

	/* A slow answer: qmp_client_reply says pending until it comes, then
	 * gives it; execute with a shorter timeout fails as ever. */
	args = json_pack("{s:i, s:i}", "sleep_ms", 600, "x", 5);
	assert_int_equal(qmp_client_send(c, "echo", args, err, sizeof(err)), 0);
	int pending = 0, rc;
	while ((rc = qmp_client_reply(c, 100, &ret, cls, sizeof(cls), err, sizeof(err))) ==
	       QMP_CLIENT_PENDING)
		pending++;
	assert_int_equal(rc, 0);
	assert_true(pending >= 3);
	assert_int_equal(json_integer_value(json_object_get(ret, "x")), 5);
	json_decref(ret);
	struct qmp_client *quick = qmp_client_connect(path, 200, err, sizeof(err));
	assert_non_null(quick);
	assert_int_equal(qmp_client_execute(quick, "echo", args, NULL, cls, sizeof(cls), err,
					    sizeof(err)), -1);
	assert_string_equal(err, "timed out waiting for QMP reply");
	json_decref(args);
	qmp_client_close(quick);

	qmp_server_emit(s, "PING", json_pack("{s:i}", "n", 7));
	json_t *ev = qmp_client_next_event(c, 2000);
	assert_non_null(ev);
	assert_string_equal(json_string_value(json_object_get(ev, "event")), "PING");
	json_decref(ev);
	qmp_client_close(c);
	qmp_server_stop(s);
	assert_int_equal(access(path, F_OK), -1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A negotiated client that never reads. */
static int silent_client(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	const char neg[] = "{\"execute\":\"qmp_capabilities\"}\n";
	assert_int_equal(write(fd, neg, sizeof(neg) - 1), (ssize_t)(sizeof(neg) - 1));
	return fd;
}

/* Emits n events of about 1 KiB; returns the slowest single emit in s. */
static double flood(struct qmp_server *s, int n)
{
	char pad[1000];
	memset(pad, 'x', sizeof(pad) - 1);
	pad[sizeof(pad) - 1] = 0;
	double slowest = 0;
	for (int i = 0; i < n; i++) {
		double t0 = now_s();
		qmp_server_emit(s, "FLOOD", json_pack("{s:i,s:s}", "n", i, "pad", pad));
		double dt = now_s() - t0;
		if (dt > slowest)
			slowest = dt;
	}
	return slowest;
}

/* Issue 9: events come from vCPU and device threads that may hold locks, so
 * an emit must never wait for a client. A client that never reads gets
 * more than its socket holds (the old server blocked 5 s per event there),
 * then more than the server keeps for it (it is dropped); meanwhile another
 * client is answered at once. */
static void test_qmp_emit_never_waits_for_client(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-test-qmp-XXXXXX";
	int calls = 0;
	char err[256], cls[32];
	struct qmp_server *s = start_echo_server(path, &calls);
	int silent = silent_client(path);
	struct qmp_client *c = qmp_client_connect(path, 2000, err, sizeof(err));
	assert_non_null(c);   /* negotiated: the silent client's line went first */

	double slowest = flood(s, 600);   /* ~600 KiB: more than a socket buffer */
	assert_true(slowest < 0.2);
	json_t *ret = NULL, *args = json_object();
	double t0 = now_s();
	assert_int_equal(qmp_client_execute(c, "echo", args, &ret, cls, sizeof(cls), err, sizeof(err)), 0);
	assert_true(now_s() - t0 < 2.0);
	json_decref(ret);
	json_decref(args);

	slowest = flood(s, 2000);         /* past the 1 MiB kept per client */
	assert_true(slowest < 0.2);
	/* The silent client is dropped: reading it to the end finds EOF. */
	char buf[65536];
	ssize_t r;
	struct pollfd p = {.fd = silent, .events = POLLIN};
	do {
		assert_int_equal(poll(&p, 1, 5000), 1);
		r = read(silent, buf, sizeof(buf));
	} while (r > 0);
	assert_int_equal(r, 0);
	close(silent);
	qmp_client_close(c);
	qmp_server_stop(s);
}

/* Malformed input and missing negotiation get error replies, not a crash. */
static void test_qmp_malformed(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-test-qmp-XXXXXX";
	int tfd = mkstemp(path);
	close(tfd);
	unlink(path);
	int calls = 0;
	char err[256];
	struct qmp_server *s = qmp_server_start(path, "test", cmds, 1, &calls, err, sizeof(err));
	assert_non_null(s);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strcpy(a.sun_path, path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	const char *in = "{\"execute\":\"echo\"}\n{not json\n[1,2]\n{\"execute\":\"qmp_capabilities\"}\n"
			 "{\"execute\":5}\n{\"execute\":\"echo\",\"arguments\":[]}\n";
	assert_int_equal(write(fd, in, strlen(in)), (ssize_t)strlen(in));
	char buf[4096];
	size_t len = 0;
	int lines = 0;
	while (lines < 7) {  /* greeting + 6 replies */
		struct pollfd p = {.fd = fd, .events = POLLIN};
		assert_int_equal(poll(&p, 1, 2000), 1);
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
		assert_true(n > 0);
		len += (size_t)n;
		buf[len] = 0;
		lines = 0;
		for (char *q = buf; (q = strchr(q, '\n')); q++)
			lines++;
	}
	assert_non_null(strstr(buf, "Expecting capabilities negotiation"));
	assert_non_null(strstr(buf, "JSON parse error"));
	assert_non_null(strstr(buf, "must be a JSON object"));
	assert_non_null(strstr(buf, "lacks member 'execute'"));
	assert_non_null(strstr(buf, "'arguments' must be an object"));
	assert_int_equal(calls, 0);
	close(fd);
	qmp_server_stop(s);
}

/* A live socket and a regular file are refused; a dead socket is replaced. */
/* qmp_client_getfd sends the descriptor with the command (SCM_RIGHTS);
 * the handler takes it with qmp_server_take_fd: the same open file. */
static struct qmp_server *getfd_server;
static int getfd_taken = -1;

static json_t *cmd_getfd(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)opaque;
	getfd_taken = qmp_server_take_fd(getfd_server);
	if (getfd_taken < 0 || !json_is_string(json_object_get(args, "fdname")))
		qmp_set_error(err, "GenericError", "No file descriptor supplied via SCM_RIGHTS");
	return NULL;
}

static const struct qmp_command getfd_cmds[] = {{"getfd", cmd_getfd}};


/* A fresh name under /tmp for a socket (the file mkstemp made is removed). */
static void unused_path(char *path)
{
	int tmp = mkstemp(path);
	assert_true(tmp >= 0);
	close(tmp);
	unlink(path);
}

static void test_qmp_getfd(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-test-qmp-XXXXXX";
	char err[256], cls[64];
	unused_path(path);
	getfd_server = qmp_server_start(path, "test", getfd_cmds, 1, NULL, err, sizeof(err));
	assert_non_null(getfd_server);
	struct qmp_client *c = qmp_client_connect(path, 2000, err, sizeof(err));
	assert_non_null(c);
	json_t *args = json_pack("{s:s}", "fdname", "snap");
	assert_int_equal(qmp_client_execute(c, "getfd", args, NULL, cls, sizeof(cls), err,
					    sizeof(err)), 1);
	assert_non_null(strstr(err, "SCM_RIGHTS"));
	json_decref(args);
	int p[2];
	assert_int_equal(pipe(p), 0);
	assert_int_equal(qmp_client_getfd(c, "snap", p[1], err, sizeof(err)), 0);
	close(p[1]);
	assert_true(getfd_taken >= 0);
	assert_int_equal(write(getfd_taken, "x", 1), 1);
	close(getfd_taken);
	char b;
	assert_int_equal(read(p[0], &b, 1), 1);
	assert_int_equal(b, 'x');
	assert_int_equal(read(p[0], &b, 1), 0);   /* no copy left open anywhere */
	close(p[0]);
	qmp_client_close(c);
	qmp_server_stop(getfd_server);
}

/* A client that sends getfd and leaves without reading its replies: the
 * server's next recvmsg fails (ECONNRESET) and must not take the stale
 * descriptor still in its control buffer. Before the fix the server closed
 * the taken descriptor's number then, under a live migration's stream. */
static void test_qmp_getfd_then_reset_keeps_the_fd(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-test-qmp-XXXXXX";
	char err[256];
	unused_path(path);
	getfd_taken = -1;
	getfd_server = qmp_server_start(path, "test", getfd_cmds, 1, NULL, err, sizeof(err));
	assert_non_null(getfd_server);
	int c = silent_client(path);
	int p[2];
	assert_int_equal(pipe(p), 0);
	const char cmd[] = "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"mig\"}}\n";
	assert_int_equal(kvz_send_fd(c, cmd, sizeof(cmd) - 1, p[1]), (ssize_t)(sizeof(cmd) - 1));
	close(p[1]);
	for (int i = 0; i < 500 && __atomic_load_n(&getfd_taken, __ATOMIC_ACQUIRE) < 0; i++)
		usleep(2000);
	assert_true(getfd_taken >= 0);
	close(c);   /* the greeting and replies unread: the server sees ECONNRESET */
	usleep(200000);
	assert_true(fcntl(getfd_taken, F_GETFD) >= 0);
	assert_int_equal(write(getfd_taken, "x", 1), 1);
	close(getfd_taken);
	char b;
	assert_int_equal(read(p[0], &b, 1), 1);
	close(p[0]);
	qmp_server_stop(getfd_server);
}

/* qmp_server_create + serve: a client that connects and sends commands
 * at once (as soon as the socket exists) is answered only once the caller
 * has the server pointer its handlers use. kvz-vmm's getfd dereferenced a
 * pointer not yet set when a client was that quick (a crash of
 * `--incoming defer` targets seen in vmm-migrate/vmm-cdrom). */
static void test_qmp_create_then_serve(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-test-qmp-XXXXXX";
	char err[256];
	unused_path(path);
	getfd_server = NULL;
	struct qmp_server *s = qmp_server_create(path, "test", getfd_cmds, 1, NULL, err, sizeof(err));
	assert_non_null(s);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	static const char lines[] = "{\"execute\":\"qmp_capabilities\"}\n"
				    "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}\n";
	assert_int_equal(write(fd, lines, sizeof(lines) - 1), (ssize_t)sizeof(lines) - 1);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	assert_int_equal(poll(&p, 1, 100), 0);        /* not served: not even a greeting */
	getfd_server = s;
	assert_int_equal(qmp_server_serve(s, err, sizeof(err)), 0);
	char buf[2048] = "";
	size_t got = 0;
	while (got < sizeof(buf) - 1 && !strstr(buf, "SCM_RIGHTS")) {
		assert_int_equal(poll(&p, 1, 2000), 1);
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		assert_true(n > 0);
		got += (size_t)n;
		buf[got] = 0;
	}
	assert_non_null(strstr(buf, "\"QMP\""));             /* greeting */
	assert_non_null(strstr(buf, "SCM_RIGHTS"));           /* getfd ran with its server */
	close(fd);
	qmp_server_stop(s);
	/* Stopped before it served: nothing to join, the socket is gone. */
	s = qmp_server_create(path, "test", getfd_cmds, 1, NULL, err, sizeof(err));
	assert_non_null(s);
	qmp_server_stop(s);
	assert_int_equal(access(path, F_OK), -1);
}

static void test_unix_listen(void **state)
{
	(void)state;
	char path[] = "/tmp/kvz-test-sock-XXXXXX";
	int tfd = mkstemp(path);
	assert_true(tfd >= 0);
	close(tfd);
	char err[256];
	assert_int_equal(kvz_unix_listen(path, 0, 1, 0600, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a socket"));
	assert_int_equal(access(path, F_OK), 0);
	unlink(path);

	int a = kvz_unix_listen(path, 0, 1, 0600, err, sizeof(err));
	assert_true(a >= 0);
	assert_int_equal(kvz_unix_listen(path, 0, 1, 0600, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "in use"));
	close(a);  /* the file stays behind, as after a crash */
	int b = kvz_unix_listen(path, 0, 1, 0600, err, sizeof(err));
	assert_true(b >= 0);
	close(b);
	unlink(path);
}

/* A client that finds the path must be able to connect at once, and never
 * sees it with another mode: the socket appears only when it listens. */
struct watcher {
	const char *path;
	atomic_bool stop;
	int refused, bad_mode, seen;
	/* Held by the watcher from stat to close and by the test around its
	 * teardown: a connect that found the old socket just before unlink
	 * must not be refused by the close that follows (that race is the
	 * test's own, not kvz_unix_listen's). */
	pthread_mutex_t lock;
};

static void *watch_path(void *arg)
{
	struct watcher *w = arg;
	while (!atomic_load(&w->stop)) {
		struct stat st;
		pthread_mutex_lock(&w->lock);
		if (stat(w->path, &st) < 0) {
			pthread_mutex_unlock(&w->lock);
			continue;
		}
		int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof(a.sun_path), "%s", w->path);
		if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0 && errno == ECONNREFUSED)
			w->refused++;
		if ((st.st_mode & 0777) != 0600)
			w->bad_mode++;
		w->seen++;
		close(c);
		pthread_mutex_unlock(&w->lock);
		while (!atomic_load(&w->stop) && access(w->path, F_OK) == 0)
			;
	}
	return NULL;
}

static void test_unix_listen_appears_ready(void **state)
{
	(void)state;
	char dir[] = "/tmp/kvz-test-dir-XXXXXX";
	assert_non_null(mkdtemp(dir));
	char path[128];
	snprintf(path, sizeof(path), "%s/s.sock", dir);
	struct watcher w = {.path = path, .lock = PTHREAD_MUTEX_INITIALIZER};
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, watch_path, &w), 0);
	char err[256];
	for (int i = 0; i < 300; i++) {
		int fd = kvz_unix_listen(path, 0, 4, 0600, err, sizeof(err));
		assert_true(fd >= 0);
		DIR *d = opendir(dir);
		int entries = 0;
		for (struct dirent *e; (e = readdir(d));)
			entries += e->d_name[0] != '.' || strncmp(e->d_name, ".kvz", 4) == 0;
		closedir(d);
		assert_int_equal(entries, 1); /* no temporary name left behind */
		pthread_mutex_lock(&w.lock);
		unlink(path);
		close(fd);
		pthread_mutex_unlock(&w.lock);
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	assert_int_equal(w.refused, 0);
	assert_int_equal(w.bad_mode, 0);
	rmdir(dir);
}

struct collected {
	uint8_t bytes[64];
	size_t n;
	int spans;
};

static void collect(void *opaque, const uint8_t *p, size_t n)
{
	struct collected *c = opaque;
	assert_true(c->n + n <= sizeof(c->bytes));
	memcpy(c->bytes + c->n, p, n);
	c->n += n;
	c->spans++;
}

/* Against a plain model: the stream so far, of which the ring must hold
 * exactly the newest cap bytes, whatever the sizes of the appends. */
static void test_replay_ring(void **state)
{
	(void)state;
	uint8_t storage[16];
	struct replay_ring r;
	replay_ring_init(&r, storage, sizeof(storage));
	size_t total = 0;   /* bytes appended since the last drain; byte i is (uint8_t)i */
	unsigned seed = 7;
	for (int round = 0; round < 300; round++) {
		seed = seed * 1103515245 + 12345;
		size_t n = (seed >> 16) % 40;     /* 0 .. 39: below, at and above cap */
		uint8_t chunk[40];
		for (size_t i = 0; i < n; i++)
			chunk[i] = (uint8_t)(total + i);
		replay_ring_append(&r, chunk, n);
		total += n;
		if (round % 7 != 6)
			continue;
		/* peek hands the same bytes as drain, and keeps them */
		struct collected peeked = {0}, c = {0};
		replay_ring_peek(&r, collect, &peeked);
		replay_ring_drain(&r, collect, &c);
		assert_int_equal(peeked.n, c.n);
		assert_memory_equal(peeked.bytes, c.bytes, c.n);
		size_t want = total < sizeof(storage) ? total : sizeof(storage);
		assert_int_equal(c.n, want);
		assert_true(c.spans <= 2);
		for (size_t i = 0; i < c.n; i++)
			assert_int_equal(c.bytes[i], (uint8_t)(total - want + i));
		total = 0;                       /* drained: the next replay starts afresh */
	}
	struct collected rest = {0}, empty = {0};
	replay_ring_drain(&r, collect, &rest);
	assert_int_equal(rest.n, total < sizeof(storage) ? total : sizeof(storage));
	replay_ring_drain(&r, collect, &empty);
	assert_int_equal(empty.spans, 0);
}

#define WRITE_ALL_LEN (4u << 20)

struct drain {
	int fd;
	unsigned char *got;
	size_t len;
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;
	ssize_t n;
	while (d->len < WRITE_ALL_LEN &&
	       (n = read(d->fd, d->got + d->len, WRITE_ALL_LEN - d->len)) > 0)
		d->len += (size_t)n;
	return NULL;
}

/* kvz_write_all: a buffer far larger than a socket's takes many short
 * sends and arrives whole; a file works the same; a peer that went away
 * is -1 with EPIPE, not a SIGPIPE (left at its default, it would kill this
 * test). */
static void test_write_all(void **state)
{
	(void)state;
	void (*old)(int) = signal(SIGPIPE, SIG_DFL);
	unsigned char *buf = malloc(WRITE_ALL_LEN);
	assert_non_null(buf);
	for (size_t i = 0; i < WRITE_ALL_LEN; i++)
		buf[i] = (unsigned char)(i * 7 + i / 4096);

	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct drain d = {.fd = sv[1], .got = malloc(WRITE_ALL_LEN)};
	assert_non_null(d.got);
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, drain_main, &d), 0);
	assert_int_equal(kvz_write_all(sv[0], buf, WRITE_ALL_LEN), 0);
	pthread_join(t, NULL);
	assert_int_equal(d.len, WRITE_ALL_LEN);
	assert_memory_equal(d.got, buf, WRITE_ALL_LEN);

	close(sv[1]);
	errno = 0;
	assert_int_equal(kvz_write_all(sv[0], "x", 1), -1);
	assert_int_equal(errno, EPIPE);
	close(sv[0]);

	FILE *f = tmpfile();
	assert_non_null(f);
	assert_int_equal(kvz_write_all(fileno(f), buf, 100000), 0);
	memset(d.got, 0, 100000);
	assert_int_equal(pread(fileno(f), d.got, 100000, 0), 100000);
	assert_memory_equal(d.got, buf, 100000);
	fclose(f);

	assert_int_equal(kvz_write_all(-1, "x", 1), -1);
	assert_int_equal(errno, EBADF);
	free(d.got);
	free(buf);
	signal(SIGPIPE, old);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_pair),
		cmocka_unit_test(test_parse_misc),
		cmocka_unit_test(test_qmp_roundtrip),
		cmocka_unit_test(test_qmp_malformed),
		cmocka_unit_test(test_qmp_emit_never_waits_for_client),
		cmocka_unit_test(test_qmp_getfd),
		cmocka_unit_test(test_qmp_getfd_then_reset_keeps_the_fd),
		cmocka_unit_test(test_qmp_create_then_serve),
		cmocka_unit_test(test_unix_listen),
		cmocka_unit_test(test_unix_listen_appears_ready),
		cmocka_unit_test(test_replay_ring),
		cmocka_unit_test(test_write_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
