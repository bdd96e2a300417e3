/* kvz-ct: shared definitions of the subcommands. */
#ifndef KVZ_CT_H
#define KVZ_CT_H

#include "confine.h"
#include "ct_limits.h"
#include "devices.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <limits.h>

#define KVZ_CT_DEFAULT_ROOT "/var/lib/kvz/ct"
#define KVZ_CT_DEFAULT_RUNDIR "/run/kvz"
/* Limits of a container run without --pids / --memory. */
#define KVZ_CT_DEFAULT_PIDS "4096"
#define KVZ_CT_DEFAULT_MEMORY "512M:1G"

struct net_opts {
	bool enabled;
	char bridge[16];
	struct in_addr ip;
	unsigned prefix;
	bool has_gw;
	struct in_addr gw;
};

struct run_opts {
	const char *name;
	const char *rootfs;      /* NULL: CTROOT/NAME/private.img */
	const char *ct_root;
	const char *run_dir;
	const char *hostname;
	const char *qmp_path;    /* NULL: RUNDIR/NAME.qmp */
	const char *console_socket;
	bool detach;
	bool privileged;         /* no user namespace: container root is host root */
	struct ct_limits limits;
	struct net_opts net;
	struct confine_opts confine; /* seccomp, no_new_privs */
	struct dev_list devices;     /* --device */
	char **argv;
	/* The arguments of `run` (after "run") as given: a checkpoint keeps
	 * them, so that restore sets the container up the same way. */
	int run_argc;
	char **run_argv;
	const char *restore_dir; /* restore this checkpoint instead of argv */
	/* A staged restore (--restore-go-fd, a migration's target): the
	 * supervisor sets up all that needs neither the images nor the
	 * private area while they arrive, then waits for one byte 'g' on this
	 * fd before it mounts and restores; EOF or a stop calls it off. -1:
	 * none. */
	int go_fd;
	/* --lazy-pages (with --restore): the tasks run before their memory is
	 * back; a `criu lazy-pages` daemon fills it from the images on fault
	 * and in the background (post-copy from local images, userfaultfd). */
	bool lazy_pages;
};

int cmd_create(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_set(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_destroy(int argc, char **argv);
int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_checkpoint(int argc, char **argv);
/* A migration's page server and the end of a hold (cmd_migrate.c). */
int cmd_page_server(int argc, char **argv);
int cmd_release(int argc, char **argv);
/* A VM disk from a template (cmd_vm_image.c, vm_image.h). */
int cmd_vm_image(int argc, char **argv);
/* `restore --dir`: a checkpoint (cmd_checkpoint.c); `restore --input`: a
 * backup (cmd_backup.c). */
int cmd_restore_checkpoint(int argc, char **argv);
/* Dies with one line unless dir is a private checkpoint of name and CRIU
 * works here (run --restore). */
void checkpoint_dir_check(const char *dir, const char *name);
/* The same for a staged restore (run --restore-go-fd), whose images are
 * still arriving: the directory's ownership and CRIU only; the supervisor
 * checks the checkpoint itself once told to go (sup_restore). */
void checkpoint_dir_staged_check(const char *dir, const char *name);

/* Parses `run`'s arguments (argv[0] is "run") into o (cmd_run.c). */
void run_parse(int argc, char **argv, struct run_opts *o);
/* Becomes the supervisor of o, detached or not; returns the exit code. */
int run_start(const struct run_opts *o);

/* "bridge=BR,ip=A.B.C.D/P[,gw=G]" */
bool parse_net(const char *s, struct net_opts *n, char *err, size_t len);

/* Paths of a container's private area under ct_root. */
void ct_dir(const char *ct_root, const char *name, const char *leaf, char *out, size_t size);
/* The absolute path of the idmap file of the private area dir (which must
 * exist): the id registry names its owners by it. */
int ct_idmap_path(const char *dir, char *out, size_t size, char *err, size_t len);

#endif
