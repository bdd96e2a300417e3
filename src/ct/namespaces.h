/* Starting the container's first process in new pid, mount, uts, ipc, net
 * (and optionally user) namespaces, and what that process does before it
 * execs the container's command. */
#ifndef KVZ_CT_NAMESPACES_H
#define KVZ_CT_NAMESPACES_H

#include "ct.h"

#include <stddef.h>
#include <sys/types.h>

struct child_cfg {
	const struct run_opts *o;
	const char *target;     /* the root filesystem's mount point */
	int console_slave;      /* pty slave for stdio, or -1: inherit stdio */
	const char *console;    /* host path of that slave, for /dev/console */
	bool null_stdio;        /* no console: stdio on /dev/null (--detach) */
	int sync_fd;            /* child reads one byte: parent is done */
	int err_fd;             /* child writes why it failed; EOF at exec */
};

/* User namespace mapping: container root is host uid/gid 100000 and up. */
#define KVZ_CT_USERNS_BASE 100000
#define KVZ_CT_USERNS_SIZE 65536

/* Returns the child's pid; the child never returns from here. */
pid_t ns_spawn(const struct child_cfg *cfg, char *err, size_t len);
int ns_write_id_maps(pid_t pid, char *err, size_t len);
/* setresuid/gid 0 after entering a user namespace. */
int ns_become_root(char *err, size_t len);

#endif
