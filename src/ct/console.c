#include "console.h"
#include "unix_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int open_pty(struct console *c, char *err, size_t len)
{
	c->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (c->master < 0 || grantpt(c->master) < 0 || unlockpt(c->master) < 0 ||
	    ptsname_r(c->master, c->slave_path, sizeof(c->slave_path)) != 0) {
		snprintf(err, len, "cannot allocate a pty for the console: %s", strerror(errno));
		return -1;
	}
	c->slave_fd = open(c->slave_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (c->slave_fd < 0) {
		snprintf(err, len, "cannot open %s: %s", c->slave_path, strerror(errno));
		return -1;
	}
	return fcntl(c->master, F_SETFL, O_NONBLOCK);
}

static int listen_unix(struct console *c, const char *path, char *err, size_t len)
{
	c->listen_fd = kvz_unix_listen(path, SOCK_NONBLOCK, 4, 0600, err, len);
	if (c->listen_fd < 0)
		return -1;
	snprintf(c->sock_path, sizeof(c->sock_path), "%s", path);
	return 0;
}

int console_open(struct console *c, const char *sock_path, char *err, size_t len)
{
	memset(c, 0, sizeof(*c));
	c->master = c->slave_fd = c->listen_fd = c->client_fd = -1;
	replay_ring_init(&c->ring, c->ring_storage, sizeof(c->ring_storage));
	if (open_pty(c, err, len) < 0 || listen_unix(c, sock_path, err, len) < 0) {
		console_close(c);
		return -1;
	}
	return 0;
}

int console_pollfds(struct console *c, struct pollfd *pfd)
{
	int n = 0;
	pfd[n++] = (struct pollfd){.fd = c->master, .events = POLLIN};
	pfd[n++] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
	pfd[n++] = (struct pollfd){.fd = c->client_fd, .events = POLLIN};
	return n;
}

static void drop_client(struct console *c)
{
	close(c->client_fd);
	c->client_fd = -1;
}

/* A slow client is dropped rather than allowed to stall the container's
 * output; it can reattach and gets the ring. */
static void to_client(struct console *c, const void *buf, size_t n)
{
	if (c->client_fd >= 0 && send(c->client_fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)n)
		drop_client(c);
}

static void replay_span(void *opaque, const uint8_t *p, size_t n)
{
	to_client(opaque, p, n);
}

void console_handle(struct console *c, const struct pollfd *pfd, int n)
{
	char buf[4096];
	if (n > 0 && pfd[0].revents & POLLIN) {
		ssize_t r = read(c->master, buf, sizeof(buf));
		if (r > 0 && c->client_fd >= 0)
			to_client(c, buf, (size_t)r);
		else if (r > 0)
			replay_ring_append(&c->ring, buf, (size_t)r);
	}
	if (n > 1 && pfd[1].revents & POLLIN) {
		int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0 && c->client_fd >= 0) {
			const char *busy = "kvz-ct: console is in use by another client\n";
			if (write(fd, busy, strlen(busy)) < 0) {
				/* nothing to do: the client is going away */
			}
			close(fd);
		} else if (fd >= 0) {
			c->client_fd = fd;
			replay_ring_drain(&c->ring, replay_span, c);
		}
	}
	if (n > 2 && c->client_fd >= 0 && pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) {
		ssize_t r = read(c->client_fd, buf, sizeof(buf));
		if (r <= 0)
			drop_client(c);
		else if (write(c->master, buf, (size_t)r) < 0 && errno != EAGAIN)
			drop_client(c);
	}
}

void console_close(struct console *c)
{
	if (c->client_fd >= 0)
		close(c->client_fd);
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		if (c->sock_path[0])
			unlink(c->sock_path);
	}
	if (c->slave_fd >= 0)
		close(c->slave_fd);
	if (c->master >= 0)
		close(c->master);
	c->client_fd = c->listen_fd = c->master = c->slave_fd = -1;
}
