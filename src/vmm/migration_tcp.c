#include "migration_tcp.h"

#include <errno.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int split(const char *hostport, char *host, size_t hostlen, const char **port)
{
	const char *colon = strrchr(hostport, ':');
	if (!colon || !colon[1])
		return -1;
	const char *h = hostport;
	size_t n = (size_t)(colon - hostport);
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	if (n >= hostlen)
		return -1;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = colon + 1;
	return 0;
}

typedef int (*use_fn)(int fd, const struct addrinfo *ai);

static int use_connect(int fd, const struct addrinfo *ai)
{
	return connect(fd, ai->ai_addr, ai->ai_addrlen);
}

static int use_listen(int fd, const struct addrinfo *ai)
{
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		return -1;
	return listen(fd, 1);
}

static int open_tcp(const char *hostport, bool passive, use_fn use, char *err, size_t errlen)
{
	char host[256];
	const char *port;
	if (split(hostport, host, sizeof(host), &port) < 0) {
		snprintf(err, errlen, "tcp:%s: expected HOST:PORT", hostport);
		return -1;
	}
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
	struct addrinfo *res;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "tcp:%s: %s", hostport, gai_strerror(rc));
		return -1;
	}
	int fd = -1, e = 0;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0 && use(fd, ai) < 0) {
			e = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, errlen, "tcp:%s: %s", hostport, strerror(e ? e : EADDRNOTAVAIL));
	return fd;
}

int mig_tcp_connect(const char *hostport, char *err, size_t errlen)
{
	int fd = open_tcp(hostport, false, use_connect, err, errlen);
	int one = 1;
	if (fd >= 0)   /* the end record must not wait for more data */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int mig_tcp_listen(const char *hostport, char *err, size_t errlen)
{
	return open_tcp(hostport, true, use_listen, err, errlen);
}
