/* Writing a whole buffer to a file descriptor. */
#ifndef KVZ_WRITE_ALL_H
#define KVZ_WRITE_ALL_H

#include <stddef.h>

/* Writes all len bytes of buf to fd, a socket or not, through short
 * writes and EINTR. On a socket it uses MSG_NOSIGNAL: a peer that went
 * away is EPIPE, never a SIGPIPE. 0, or -1 with errno. */
int kvz_write_all(int fd, const void *buf, size_t len);

#endif
