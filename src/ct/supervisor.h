/* The per-container supervisor behind `kvz-ct run`: sets the container up,
 * owns its console, reaps it, answers QMP, and tears everything down. */
#ifndef KVZ_CT_SUPERVISOR_H
#define KVZ_CT_SUPERVISOR_H

#include "cgroup.h"
#include "console.h"
#include "ct.h"
#include "idmap.h"
#include "net_filter.h"

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

struct qmp_server;

/* What the QMP thread asks the main loop to do (through ctl[]). */
struct sup_request {
	char cmd; /* 's': stop with timeout, 'q': kill now */
	int timeout;
};

struct supervisor {
	const struct run_opts *o;
	char target[PATH_MAX];  /* root filesystem mount point */
	char stage[PATH_MAX];   /* RUNDIR/.root: where the container's view of
				 * the root (idmapped, /proc, /sys) is mounted,
				 * apart from the plain mount at target */
	char image[PATH_MAX];   /* private.img, "" with --rootfs */
	char loopdev[32];
	int loop_fd;            /* the private area's loop device, or -1 */
	struct idmap idmap;     /* the container's id range (not --privileged) */
	int idmap_run_fd;       /* holds a per-run range (--rootfs), or -1 */
	char qmp_path[PATH_MAX];
	struct cgroup cg;
	bool cg_made;
	bool mounted;
	int lock_fd;
	char veth[16];
	unsigned char mac[6];     /* the container's eth0 */
	struct net_filter filter; /* anti-spoofing on the veth's bridge port */
	bool bridge_created;
	pid_t init_pid;
	struct qmp_server *qmp;
	struct console con;
	bool has_console;
	int ctl[2];
	int sig_fd;
	int timer_fd;
	/* Guards limits and stopping: the QMP thread reads and writes them. */
	pthread_mutex_t lock;
	struct ct_limits limits;
	bool stopping;
	bool checkpointing;     /* a checkpoint's dump runs (QMP thread) */
	bool checkpointed;      /* init ended by its checkpoint: exit 0 */
	int mig_fd;             /* a migration's socket (QMP getfd "mig"), or -1;
				 * QMP thread only */
	bool held;              /* frozen and unplugged after a migration's
				 * final dump, until sup_release() */
	/* Where a start's time goes (issue 12's downtime): ms since t0 (the
	 * supervisor's start, CLOCK_MONOTONIC) at the end of each phase,
	 * written into NAME.json as "start-ms"; main thread, before QMP. */
	int64_t t0;
	json_t *times;
	/* CLOCK_MONOTONIC ms when a restore's tasks ran again (criu restore
	 * returned: it resumes them before it exits), 0 otherwise; in NAME.json
	 * as "thawed-at-ms" for kvzd's downtime (same host, same clock). */
	int64_t thawed_at;
	int64_t frozen_at;      /* the same for a hold's freeze; QMP thread */
	int exit_code;
};

/* Runs the container to the end. notify_fd (or -1) gets "ok" once the
 * container runs (--detach). Returns the supervisor's exit code. */
int supervisor_run(const struct run_opts *o, int notify_fd);

/* Shared with sup_checkpoint.c. */
/* Records that phase ended now (s->times). */
void sup_mark(struct supervisor *s, const char *phase);
int sup_make_stage(struct supervisor *s, char *err, size_t len);
int sup_own_console(struct supervisor *s, char *err, size_t len);
/* The veth's host end (s->veth, made already) behind its anti-spoofing
 * filter, on the bridge, up. */
int sup_veth_attach(struct supervisor *s, char *err, size_t len);

/* Checkpoint and restore (sup_checkpoint.c). */
struct sup_checkpoint_opts {
	const char *dir; /* absolute, as process client sees it (0: our view) */
	pid_t client;    /* its end cancels between criu runs; 0: none */
	bool leave_running;
	int pre;         /* pre-dumps of the memory while it runs first */
	int ps_fd;       /* pages to a page server on this socket, or -1 */
	/* A migration's final dump: the container stays, frozen and
	 * unplugged, until sup_release() ends or resumes it. */
	bool hold;
};

/* Dumps the container into c->dir (QMP thread). Without leave_running or
 * hold the container ends when the dump is complete, and the supervisor
 * with it (exit 0). Appends to steps (an array, or NULL) one {"step":
 * "pre-N" or "dump", "bytes": memory pages written or sent, "ms"} per
 * criu run. */
int sup_checkpoint(struct supervisor *s, const struct sup_checkpoint_opts *c, json_t *steps,
		   char *err, size_t len);
/* Ends a hold: end kills the container (the supervisor exits as after a
 * checkpoint: the target runs it now), otherwise it runs on as before.
 * -1 when it was not held (err may be NULL). */
int sup_release(struct supervisor *s, bool end, char *err, size_t len);
/* Instead of starting argv: brings back the container of the checkpoint
 * o->restore_dir, set up as `run` would have (cgroup, limits, bridge). */
int sup_restore(struct supervisor *s, char *err, size_t len);

/* QMP handlers (qmp.c). */
int sup_qmp_start(struct supervisor *s, char *err, size_t len);
/* Called on the QMP thread for `set`: applies a parsed update. */
int sup_apply_limits(struct supervisor *s, const struct ct_limits *upd, char *err, size_t len);

#endif
