#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
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
	pthread_t thread;
	bool started;
	console_input_fn fn;
	void *opaque;
	/* Guards client_fd and the ring: the vCPU thread writes output while
	 * the input thread accepts and drops clients. */
	pthread_mutex_t lock;
	int client_fd;
	struct replay_ring ring;
	uint8_t *ring_storage;
};

static struct console *console_alloc(char *err, size_t errlen)
{
	struct console *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->in_fd = c->out_fd = c->listen_fd = c->client_fd = -1;
	c->wake[0] = c->wake[1] = -1;
	pthread_mutex_init(&c->lock, NULL);
	if (pipe2(c->wake, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
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

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	kvz_phase_console(buf, len);
	if (!c->is_socket) {
		write_fd(c->out_fd, buf, len);
		return;
	}
	pthread_mutex_lock(&c->lock);
	/* A history, kept whether or not a client is attached: a client that
	 * goes away before reading what it was sent (`timeout 1 kvz console`,
	 * a killed terminal) would otherwise take the guest's only copy with
	 * it, and the next client would see nothing of a guest that printed
	 * all its boot (issue 9). Every client first gets the last
	 * CONSOLE_RING_SIZE bytes. */
	replay_ring_append(&c->ring, buf, len);
	if (c->client_fd >= 0) {
		/* MSG_DONTWAIT: a client that stops reading loses output rather
		 * than stalling the vCPU. */
		ssize_t n = send(c->client_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)n;
	}
	pthread_mutex_unlock(&c->lock);
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
		struct pollfd p[3] = {{.fd = c->wake[0], .events = POLLIN}};
		int n = 1;
		int data_fd = c->is_socket ? c->client_fd : (in_open ? c->in_fd : -1);
		if (c->is_socket)
			p[n++] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
		int data_idx = n;
		p[n++] = (struct pollfd){.fd = data_fd, .events = POLLIN};
		if (poll(p, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			kvz_error("console: poll: %s", strerror(errno));
			return NULL;
		}
		if (p[0].revents)
			return NULL;
		/* The client's data (or its hang-up) first: a client that left
		 * just before the next one connected must not make the console
		 * look busy to it. */
		if (data_fd >= 0 && p[data_idx].revents)
			in_open = read_input(c, data_fd) || c->is_socket;
		if (c->is_socket && (p[1].revents & POLLIN))
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
	pthread_mutex_destroy(&c->lock);
	free(c->ring_storage);
	free(c);
}
