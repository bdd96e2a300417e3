#include "write_all.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

int kvz_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	bool sock = true;      /* until send() says otherwise */
	while (len) {
		ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : -1;
		if (sock && n < 0 && errno == ENOTSOCK)
			sock = false;
		if (!sock)
			n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = EPIPE;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}
