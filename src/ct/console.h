/* The container console served on a UNIX socket (--console-socket): a pty
 * whose slave is the container's /dev/console and stdio; one client at a
 * time; output while nobody is attached goes to a 64 KiB ring replayed on
 * attach (the same behaviour as kvz-vmm's console socket). */
#ifndef KVZ_CT_CONSOLE_H
#define KVZ_CT_CONSOLE_H

#include <limits.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "replay_ring.h"

#define CONSOLE_RING 65536

struct console {
	int master;
	/* Held open by the supervisor too: a pty master whose slave nobody has
	 * open reports POLLHUP forever, which would spin the main loop. */
	int slave_fd;
	char slave_path[64];
	int listen_fd;
	int client_fd;
	char sock_path[PATH_MAX];
	uint8_t ring_storage[CONSOLE_RING];
	struct replay_ring ring;
};

int console_open(struct console *c, const char *sock_path, char *err, size_t len);
/* Fills up to 3 pollfds; returns how many. */
int console_pollfds(struct console *c, struct pollfd *pfd);
void console_handle(struct console *c, const struct pollfd *pfd, int n);
void console_close(struct console *c);

#endif
