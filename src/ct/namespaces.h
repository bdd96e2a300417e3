/* Starting the container's first process in new user (unless
 * --privileged), pid, mount, uts, ipc and net namespaces, and what that process does before it
 * execs the container's command. */
#ifndef KVZ_CT_NAMESPACES_H
#define KVZ_CT_NAMESPACES_H

#include "ct.h"
#include "idmap.h"

#include <stddef.h>
#include <sys/types.h>

struct child_cfg {
	const struct run_opts *o;
	int console_slave;      /* pty slave for stdio, or -1: inherit stdio */
	const char *console;    /* host path of that slave, for /dev/console */
	bool null_stdio;        /* no console: stdio on /dev/null (--detach) */
	int sync_fd;            /* UNIX socket: one byte and the root's mount
				 * tree (idmount.h) when the parent is done */
	int err_fd;             /* child writes why it failed; EOF at exec */
};

/* Returns the child's pid; the child never returns from here. */
pid_t ns_spawn(const struct child_cfg *cfg, char *err, size_t len);
/* Container ids 0..count-1 are host ids m->uid.. and m->gid... */
int ns_write_id_maps(pid_t pid, const struct idmap *m, char *err, size_t len);
/* setresuid/gid 0 after entering a user namespace. */
int ns_become_root(char *err, size_t len);

#endif
