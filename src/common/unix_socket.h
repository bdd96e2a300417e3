/* Listening UNIX stream sockets (QMP, consoles, the kvzd API). */
#ifndef KVZ_UNIX_SOCKET_H
#define KVZ_UNIX_SOCKET_H

#include <stddef.h>
#include <sys/types.h>

/* Binds and listens at path, chmod mode. A socket file nobody answers on is
 * a leftover of a dead process and is replaced; a socket that answers, or a
 * path that is not a socket, is refused: never unlink a user's file.
 * type_flags are extra socket() type flags (SOCK_NONBLOCK); SOCK_CLOEXEC is
 * always set. Returns the fd, or -1 with one line in err. */
int kvz_unix_listen(const char *path, int type_flags, int backlog, mode_t mode,
		    char *err, size_t errlen);

/* One sendmsg(MSG_NOSIGNAL) of buf with fd attached (SCM_RIGHTS): the
 * bytes sent, or -1 with errno. */
ssize_t kvz_send_fd(int sock, const void *buf, size_t len, int fd);

#endif
