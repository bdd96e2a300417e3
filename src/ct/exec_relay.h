/* The host side of kvz-ct exec: relays between the administrator's stdio
 * and the command's pty master or pipes, so that nothing of the
 * administrator's (terminal, descriptors) is ever handed to the container. */
#ifndef KVZ_CT_EXEC_RELAY_H
#define KVZ_CT_EXEC_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct exec_relay {
	pid_t child;      /* the process that joined the container */
	int sig_fd;       /* signalfd: SIGCHLD, SIGWINCH, stop signals */
	int ctl;          /* control socket: error lines from the container side */
	int master;       /* tty mode: the pty master, else -1 */
	int cmd_in;       /* pipe mode: the command's stdin, else -1 */
	int cmd_out;      /* pipe mode: the command's stdout, else -1 */
	int cmd_err;      /* pipe mode: the command's stderr, else -1 */
	char error[1024]; /* what the container side reported, "" if nothing */
};

/* Relays until the child has exited and its output is drained. Returns the
 * child's exit code. The administrator's terminal is in raw mode meanwhile
 * (tty mode with a terminal on stdin) and restored before returning. */
int exec_relay_run(struct exec_relay *r);

#endif
