/* qmp-send [--linger SECONDS] [--fd N|--tcp-fd IPV4:PORT] SOCKET COMMAND-JSON...: a static QMP client
 * for the nested lab, where L1 has busybox but no socat or `nc -U`.
 * Negotiates capabilities, sends each command and prints its reply on one
 * line; events are skipped. --linger keeps the connection open that long
 * afterwards without reading (a client that stops reading its events).
 * --fd N sends descriptor N with the first command (SCM_RIGHTS), as
 * libvirt and kvzd send `getfd`. --tcp-fd connects to IPV4:PORT first
 * and sends that socket (kvzd's way of handing a migration stream over;
 * busybox sh has no /dev/tcp).
 * Exit status 0 when every reply was a "return", 1 otherwise. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char buf[65536];
static size_t have;

/* Reads one newline-terminated message into line (NUL-terminated). */
static int read_line(int fd, char *line, size_t cap)
{
	for (;;) {
		char *nl = memchr(buf, '\n', have);
		if (nl) {
			size_t n = nl - buf;
			if (n >= cap)
				n = cap - 1;
			memcpy(line, buf, n);
			line[n] = '\0';
			have -= nl + 1 - buf;
			memmove(buf, nl + 1, have);
			return 0;
		}
		if (have == sizeof(buf))
			return -1;
		ssize_t r = read(fd, buf + have, sizeof(buf) - have);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		have += r;
	}
}

/* Writes cmd and its newline, with pass_fd attached when >= 0. */
static int send_cmd(int fd, const char *cmd, int pass_fd)
{
	size_t len = strlen(cmd);
	if (pass_fd < 0)
		return write(fd, cmd, len) == (ssize_t)len && write(fd, "\n", 1) == 1 ? 0 : -1;
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct iovec iov[2] = {{(void *)cmd, len}, {"\n", 1}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2, .msg_control = ctl.buf,
			   .msg_controllen = sizeof(ctl.buf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &pass_fd, sizeof(int));
	return sendmsg(fd, &m, 0) == (ssize_t)len + 1 ? 0 : -1;
}

/* Sends cmd and prints the reply when show; returns 0 for a "return". */
static int command(int fd, const char *cmd, bool show, int pass_fd)
{
	char line[65536];

	if (send_cmd(fd, cmd, pass_fd) < 0) {
		fprintf(stderr, "qmp-send: write: %s\n", strerror(errno));
		return -1;
	}
	for (;;) {
		if (read_line(fd, line, sizeof(line)) < 0) {
			fprintf(stderr, "qmp-send: connection closed\n");
			return -1;
		}
		if (strstr(line, "\"event\""))
			continue;
		if (show)
			printf("%s\n", line);
		return strncmp(line, "{\"return\"", 9) == 0 ? 0 : 1;
	}
}

static int tcp_connect(const char *ipport)
{
	char ip[64];
	const char *colon = strrchr(ipport, ':');
	struct sockaddr_in sin = { .sin_family = AF_INET };
	if (!colon || (size_t)(colon - ipport) >= sizeof(ip)) {
		fprintf(stderr, "qmp-send: --tcp-fd %s: expected IPV4:PORT\n", ipport);
		return -1;
	}
	memcpy(ip, ipport, (size_t)(colon - ipport));
	ip[colon - ipport] = '\0';
	sin.sin_port = htons((uint16_t)atoi(colon + 1));
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1 || fd < 0 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		fprintf(stderr, "qmp-send: --tcp-fd %s: %s\n", ipport, strerror(errno));
		return -1;
	}
	return fd;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char line[65536];
	unsigned linger = 0;
	int pass_fd = -1;

	for (;;) {
		if (argc > 2 && !strcmp(argv[1], "--linger"))
			linger = (unsigned)atoi(argv[2]);
		else if (argc > 2 && !strcmp(argv[1], "--fd"))
			pass_fd = atoi(argv[2]);
		else if (argc > 2 && !strcmp(argv[1], "--tcp-fd") && (pass_fd = tcp_connect(argv[2])) < 0)
			return 2;
		else if (argc > 2 && !strcmp(argv[1], "--tcp-fd"))
			;
		else
			break;
		argc -= 2;
		argv += 2;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: qmp-send [--linger SECONDS] [--fd N|--tcp-fd IPV4:PORT] SOCKET COMMAND-JSON...\n");
		return 2;
	}
	if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "qmp-send: socket path too long\n");
		return 2;
	}
	strcpy(sa.sun_path, argv[1]);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "qmp-send: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (read_line(fd, line, sizeof(line)) < 0 || !strstr(line, "\"QMP\"")) {
		fprintf(stderr, "qmp-send: no QMP greeting\n");
		return 2;
	}
	int rc = 0;
	if (command(fd, "{\"execute\": \"qmp_capabilities\"}", false, -1) != 0)
		return 2;
	for (int i = 2; i < argc; i++)
		if (command(fd, argv[i], true, i == 2 ? pass_fd : -1) != 0)
			rc = 1;
	fflush(stdout);
	if (linger)
		sleep(linger);
	close(fd);
	return rc;
}
