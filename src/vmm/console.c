#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "phase_trace.h"
#include "replay_ring.h"
#include "unix_socket.h"

struct console {
	bool is_socket;
	int in_fd;               /* stdin, or -1 for a socket console */
	int out_fd;              /* stdout, or -1 */
	int listen_fd;           /* socket console: listening socket */
	char path[108];
	bool tty_raw;
	struct termios saved_tty;
	int wake[2];             /* ends the input thread */
	int kick_fd;             /* eventfd: output is waiting for its deadline */
	pthread_t thread;
	bool started;
	console_input_fn fn;
	void *opaque;
	/* Guards client_fd, the ring and the output buffer: the vCPU thread
	 * writes output while the input thread accepts and drops clients and
	 * flushes what waited too long. */
	pthread_mutex_t lock;
	int client_fd;
	struct replay_ring ring;
	uint8_t *ring_storage;
	/* Guest output not yet written. A UART sends one byte per exit; a
	 * write per byte doubled the cost of each (Linux's console polls LSR
	 * and writes THR per character). Written at a line end, when full,
	 * CONSOLE_FLUSH_MS after its first byte (the input thread), and on
	 * every stop path (console_flush, console_destroy). */
	uint8_t out[CONSOLE_OUT_SIZE];
	size_t out_len;
	struct timespec out_since;   /* CLOCK_MONOTONIC of out[0] */
};

static struct console *console_alloc(char *err, size_t errlen)
{
	struct console *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->in_fd = c->out_fd = c->listen_fd = c->client_fd = -1;
	c->wake[0] = c->wake[1] = c->kick_fd = -1;
	pthread_mutex_init(&c->lock, NULL);
	if (pipe2(c->wake, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		console_destroy(c);
		return NULL;
	}
	c->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->kick_fd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		console_destroy(c);
		return NULL;
	}
	return c;
}

struct console *console_create_stdio(char *err, size_t errlen)
{
	struct console *c = console_alloc(err, errlen);
	if (!c)
		return NULL;
	c->in_fd = STDIN_FILENO;
	c->out_fd = STDOUT_FILENO;
	/* Only the terminal's foreground job may change its modes: from the
	 * background, tcsetattr() would stop us with SIGTTOU. */
	if (isatty(STDIN_FILENO) && tcgetpgrp(STDIN_FILENO) == getpgrp() &&
	    tcgetattr(STDIN_FILENO, &c->saved_tty) == 0) {
		/* Raw: every key, Ctrl-C included, goes to the guest. */
		struct termios raw = c->saved_tty;
		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR;
		if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
			c->tty_raw = true;
	}
	return c;
}

struct console *console_create_socket(const char *path, char *err, size_t errlen)
{
	struct console *c = console_alloc(err, errlen);
	if (!c)
		return NULL;
	c->is_socket = true;
	c->ring_storage = malloc(CONSOLE_RING_SIZE);
	if (!c->ring_storage) {
		snprintf(err, errlen, "out of memory");
		console_destroy(c);
		return NULL;
	}
	replay_ring_init(&c->ring, c->ring_storage, CONSOLE_RING_SIZE);
	c->listen_fd = kvz_unix_listen(path, 0, 4, 0600, err, errlen);
	if (c->listen_fd < 0) {
		console_destroy(c);
		return NULL;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	return c;
}

static void write_fd(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;   /* console gone: guest output is dropped, the VM runs on */
		buf += n;
		len -= (size_t)n;
	}
}

/* Writes the buffered output: stdout, or the ring and the socket client. */
static void flush_locked(struct console *c)
{
	if (!c->out_len)
		return;
	kvz_phase_console(c->out, c->out_len);
	if (!c->is_socket) {
		write_fd(c->out_fd, c->out, c->out_len);
		c->out_len = 0;
		return;
	}
	/* A history, kept whether or not a client is attached: a client that
	 * goes away before reading what it was sent (`timeout 1 kvz console`,
	 * a killed terminal) would otherwise take the guest's only copy with
	 * it, and the next client would see nothing of a guest that printed
	 * all its boot (issue 9). Every client first gets the last
	 * CONSOLE_RING_SIZE bytes. */
	replay_ring_append(&c->ring, c->out, c->out_len);
	if (c->client_fd >= 0) {
		/* MSG_DONTWAIT: a client that stops reading loses output rather
		 * than stalling the vCPU. */
		ssize_t n = send(c->client_fd, c->out, c->out_len, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)n;
	}
	c->out_len = 0;
}

/* Output that starts a buffer: the input thread must learn its deadline. */
static void kick_locked(struct console *c)
{
	clock_gettime(CLOCK_MONOTONIC, &c->out_since);
	uint64_t one = 1;
	if (write(c->kick_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kvz_warn("console: cannot wake the input thread: %s", strerror(errno));
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&c->lock);
	bool line_end = memchr(buf, '\n', len) != NULL;
	while (len) {
		if (c->out_len == sizeof(c->out))
			flush_locked(c);
		size_t n = sizeof(c->out) - c->out_len;
		if (n > len)
			n = len;
		bool was_empty = c->out_len == 0;
		memcpy(c->out + c->out_len, buf, n);
		c->out_len += n;
		buf += n;
		len -= n;
		if (was_empty && !line_end)
			kick_locked(c);
	}
	if (line_end)
		flush_locked(c);
	pthread_mutex_unlock(&c->lock);
}

void console_flush(struct console *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	flush_locked(c);
	pthread_mutex_unlock(&c->lock);
}

void console_flush_nowait(struct console *c)
{
	if (!c || pthread_mutex_trylock(&c->lock) != 0)
		return;
	int fd = c->is_socket ? c->client_fd : c->out_fd;
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	if (c->out_len && fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
		flush_locked(c);
	pthread_mutex_unlock(&c->lock);
}

/* Milliseconds until the buffered output is due, -1 when there is none;
 * output already due is written here. */
static int flush_due(struct console *c)
{
	pthread_mutex_lock(&c->lock);
	int ms = -1;
	if (c->out_len) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long long age = (now.tv_sec - c->out_since.tv_sec) * 1000LL +
				(now.tv_nsec - c->out_since.tv_nsec) / 1000000;
		if (age >= CONSOLE_FLUSH_MS)
			flush_locked(c);
		else
			ms = (int)(CONSOLE_FLUSH_MS - age);
	}
	pthread_mutex_unlock(&c->lock);
	return ms;
}

static void replay_to_fd(void *opaque, const uint8_t *p, size_t n)
{
	write_fd(*(int *)opaque, p, n);
}

static void attach_client(struct console *c)
{
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->client_fd >= 0) {
		pthread_mutex_unlock(&c->lock);
		const char msg[] = "kvz-vmm: console busy: another client is attached\r\n";
		write_fd(fd, (const uint8_t *)msg, sizeof(msg) - 1);
		close(fd);
		return;
	}
	/* Replay, in order, the guest's recent output. */
	replay_ring_peek(&c->ring, replay_to_fd, &fd);
	c->client_fd = fd;
	pthread_mutex_unlock(&c->lock);
}

static void drop_client(struct console *c)
{
	pthread_mutex_lock(&c->lock);
	close(c->client_fd);
	c->client_fd = -1;
	pthread_mutex_unlock(&c->lock);
}

/* Feeds what arrived on fd to the UART. Returns false once it is closed
 * (a socket client is then dropped; stdin's end only stops input). */
static bool read_input(struct console *c, int fd)
{
	uint8_t buf[256];
	ssize_t r = read(fd, buf, sizeof(buf));
	if (r > 0) {
		c->fn(c->opaque, buf, (size_t)r);
		return true;
	}
	if (r < 0 && errno == EINTR)
		return true;
	if (c->is_socket)
		drop_client(c);
	return false;
}

static void *input_thread(void *arg)
{
	struct console *c = arg;
	pthread_setname_np(pthread_self(), "console-in");   /* for top -H, gdb, stack dumps */
	bool in_open = c->in_fd >= 0;
	for (;;) {
		struct pollfd p[4] = {{.fd = c->wake[0], .events = POLLIN},
				      {.fd = c->kick_fd, .events = POLLIN}};
		int n = 2;
		int data_fd = c->is_socket ? c->client_fd : (in_open ? c->in_fd : -1);
		int listen_idx = n;
		if (c->is_socket)
			p[n++] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
		int data_idx = n;
		p[n++] = (struct pollfd){.fd = data_fd, .events = POLLIN};
		if (poll(p, (nfds_t)n, flush_due(c)) < 0) {
			if (errno == EINTR)
				continue;
			kvz_error("console: poll: %s", strerror(errno));
			return NULL;
		}
		if (p[0].revents)
			return NULL;
		uint64_t kicks;
		if ((p[1].revents & POLLIN) && read(c->kick_fd, &kicks, sizeof(kicks)) < 0 &&
		    errno != EAGAIN)
			kvz_warn("console: eventfd: %s", strerror(errno));
		/* The client's data (or its hang-up) first: a client that left
		 * just before the next one connected must not make the console
		 * look busy to it. */
		if (data_fd >= 0 && p[data_idx].revents)
			in_open = read_input(c, data_fd) || c->is_socket;
		if (c->is_socket && (p[listen_idx].revents & POLLIN))
			attach_client(c);
	}
}

int console_start(struct console *c, console_input_fn fn, void *opaque, char *err, size_t errlen)
{
	c->fn = fn;
	c->opaque = opaque;
	int rc = pthread_create(&c->thread, NULL, input_thread, c);
	if (rc) {
		snprintf(err, errlen, "console: pthread_create: %s", strerror(rc));
		return -1;
	}
	c->started = true;
	return 0;
}

bool console_saved_terminal(const struct console *c, struct termios *tty)
{
	if (!c || !c->tty_raw)
		return false;
	*tty = c->saved_tty;
	return true;
}

void console_destroy(struct console *c)
{
	if (!c)
		return;
	if (c->started) {
		char b = 0;
		if (write(c->wake[1], &b, 1) != 1)
			kvz_warn("console: cannot wake input thread: %s", strerror(errno));
		pthread_join(c->thread, NULL);
	}
	console_flush(c);   /* before the terminal's modes and the client go */
	if (c->tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &c->saved_tty);
	if (c->client_fd >= 0)
		close(c->client_fd);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		if (c->path[0])
			unlink(c->path);
	}
	if (c->wake[0] >= 0) {
		close(c->wake[0]);
		close(c->wake[1]);
	}
	if (c->kick_fd >= 0)
		close(c->kick_fd);
	pthread_mutex_destroy(&c->lock);
	free(c->ring_storage);
	free(c);
}
