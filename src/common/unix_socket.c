#include "unix_socket.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Returns 0 when path is free to bind (absent, or a dead socket removed). */
static int clear_stale(const struct sockaddr_un *addr, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(addr->sun_path, &st) < 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket", addr->sun_path);
		return -1;
	}
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int rc = connect(probe, (const struct sockaddr *)addr, sizeof(*addr));
	int saved = errno;
	close(probe);
	if (rc == 0) {
		snprintf(err, errlen, "%s is in use by another process", addr->sun_path);
		return -1;
	}
	if (saved != ECONNREFUSED) {
		snprintf(err, errlen, "cannot probe %s: %s", addr->sun_path, strerror(saved));
		return -1;
	}
	if (unlink(addr->sun_path) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove stale socket %s: %s", addr->sun_path,
			 strerror(errno));
		return -1;
	}
	return 0;
}

/* A name in path's directory to bind first: ".kvzPID-N", or "" when it
 * would not fit in sun_path. */
static void temp_name(const char *path, char *out, size_t size)
{
	/* Distinct for concurrent listeners of one process (kvzd's threads). */
	static _Atomic unsigned counter;
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path + 1) : 0;
	int n = snprintf(out, size, "%.*s.kvz%d-%u", dirlen, path, (int)getpid(), counter++);
	if (n < 0 || (size_t)n >= size)
		out[0] = 0;
}

/* Binds fd at path with mode, ready for clients only once it listens: bound
 * under a temporary name, chmod-ed and listening, then renamed into place,
 * so that a client never finds the path with the wrong mode or refusing
 * connections (it exists only once connect() can succeed). */
static int bind_listen(int fd, const struct sockaddr_un *addr, int backlog, mode_t mode,
		       char *err, size_t errlen)
{
	struct sockaddr_un tmp = {.sun_family = AF_UNIX};
	temp_name(addr->sun_path, tmp.sun_path, sizeof(tmp.sun_path));
	const struct sockaddr_un *at = tmp.sun_path[0] ? &tmp : addr;
	if (bind(fd, (const struct sockaddr *)at, sizeof(*at)) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr->sun_path, strerror(errno));
		return -1;
	}
	if (chmod(at->sun_path, mode) < 0 || listen(fd, backlog) < 0 ||
	    (at == &tmp && rename(tmp.sun_path, addr->sun_path) < 0)) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr->sun_path, strerror(errno));
		unlink(at->sun_path);
		return -1;
	}
	return 0;
}

int kvz_unix_listen(const char *path, int type_flags, int backlog, mode_t mode,
		    char *err, size_t errlen)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	if (clear_stale(&addr, err, errlen) < 0)
		return -1;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind_listen(fd, &addr, backlog, mode, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

ssize_t kvz_send_fd(int sock, const void *buf, size_t len, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &mh, MSG_NOSIGNAL);
}
