/* The container side of kvz-ct exec: a child of the kvz-ct process that
 * joins the container (cgroups, namespaces, root, credentials, bounding
 * set), opens the command's terminal from the container's own devpts, and
 * forks the command into the container's pid namespace. */
#ifndef KVZ_CT_EXEC_INSIDE_H
#define KVZ_CT_EXEC_INSIDE_H

#include "confine.h"

#include <jansson.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/types.h>

/* Messages on the control socket (SOCK_SEQPACKET) to the host side: the
 * first byte says what follows. */
#define EXEC_MSG_MASTER 'M' /* the pty master travels as SCM_RIGHTS */
#define EXEC_MSG_ERROR 'E'  /* one line of text: why it failed */

struct exec_inside {
	pid_t init;           /* the container's init, whose namespaces we join */
	json_t *cgroups;      /* cgroup directories (array of strings) */
	const char *name;
	char **argv;
	char **envp;
	bool tty;             /* a new pty from the container's devpts */
	bool has_winsize;
	struct winsize ws;
	int ctl;              /* control socket to the host side */
	int stdio[3];         /* pipe mode: the command's stdin/out/err */
	const struct confine_opts *conf; /* the init's, from the state file */
};

/* Runs in the forked child and never returns: exits with the command's
 * exit code (128+N for signal N), 1 after a set-up error, 127 when the
 * command cannot be run; errors go to the host side on ctl. */
__attribute__((noreturn)) void exec_inside_run(const struct exec_inside *x);

#endif
