/* The kinds of guest kvzd runs and everything that differs between them,
 * as one table per kind. A record's "type" ("vm", "ct") selects its driver
 * once (guest_driver_of); the rest of kvzd calls through the table instead
 * of comparing type strings, so that a new kind is one new table. */
#ifndef KVZD_GUEST_DRIVER_H
#define KVZD_GUEST_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "guest_ops.h"
#include "kvzd.h"

enum guest_kind { GUEST_VM, GUEST_CT, GUEST_KIND_COUNT };

struct argv;
struct job;

struct guest_driver {
	enum guest_kind kind;
	const char *type;     /* as stored and in the API */
	const char *prog;     /* the supervisor's program name, for adoption */
	const char *disk_dir; /* beneath the state dir: where its disks lie */
	/* Its configured memory is taken from the host while it runs (a VM's
	 * RAM), as opposed to a limit on what it may use. */
	bool reserves_memory;
	/* Why this kind has no snapshots, or NULL when it has them. */
	const char *no_snapshots;
	/* Why this kind cannot migrate yet, or NULL when it can. */
	const char *no_migration;

	/* The stored configuration from a POST /v1/guests body. */
	int (*config)(struct kvzd *d, json_t *req, json_t *cfg, struct op_error *e);
	/* Disk or private area of a new guest; may add to cfg. On failure
	 * nothing is left behind. */
	int (*create_storage)(struct kvzd *d, const char *name, json_t *cfg,
			      struct op_error *e);
	/* Removes what create_storage made (cfg as stored; may lack what
	 * create_storage added when a create was interrupted). */
	int (*remove_storage)(struct kvzd *d, const char *name, json_t *cfg,
			      struct op_error *e);
	/* Checks before a start (images still allowed, memory free) and clears
	 * what a previous run left at qmp; NULL when there is nothing to do. */
	int (*prepare_start)(struct kvzd *d, const char *name, json_t *cfg,
			     const char *qmp, struct op_error *e);
	/* The supervisor's command line, with the options extra (NULL-
	 * terminated, may be NULL; a migration's) where its syntax wants them. */
	void (*argv)(struct kvzd *d, const char *name, json_t *cfg, const char *qmp,
		     const char *console, const char *const *extra, struct argv *a);
	/* After the supervisor answers; NULL when there is nothing to do. */
	void (*after_start)(struct kvzd *d, const char *name, json_t *cfg);
	/* Asks a running guest to end within timeout_s and waits for it;
	 * *how is set when it had to be told more firmly. */
	void (*request_stop)(const char *name, const char *qmp, pid_t pid,
			     unsigned long long start, int timeout_s, const char **how);
	/* PATCH /v1/guests/NAME on a stopped or running guest. */
	int (*set)(struct kvzd *d, json_t *g, json_t *req, struct op_error *e);
	/* One monitor sample of a running guest (monitor.c publishes it). */
	void (*sample)(struct kvzd *d, json_t *g, int64_t now_ms);
	/* The file whose allocation counts against disk admission. */
	void (*disk_file)(const struct kvzd *d, const char *name, char *buf, size_t len);
	/* Migration (migration.h). Offline (NULL when the kind has none: it
	 * moves only live, running). Source: saves the running guest's state
	 * into path (created), leaving it paused; progress as job j. */
	int (*migrate_save)(struct kvzd *d, struct job *j, json_t *g, const char *path,
			    struct op_error *e);
	/* Source: after a failure before commitment, it runs on as before: 0,
	 * or -1 with why in err when it cannot (it stays paused or frozen). */
	int (*migrate_resume)(struct kvzd *d, json_t *g, char *err, size_t errlen);
	/* Target: starts the guest (stopped, lock held) from the state at path. */
	int (*migrate_start)(struct kvzd *d, json_t *g, const char *path, struct op_error *e);
	/* Live. Source: hands sock (the VMM gets its own copy) to the running
	 * guest's supervisor, which sends it; follows it as job j with the
	 * limits in params (downtime_ms, max_bandwidth); 0 when all went and
	 * the guest is paused, with its downtime and the bytes sent. */
	int (*migrate_send)(struct kvzd *d, struct job *j, json_t *g, int sock, json_t *params,
			    int64_t *downtime_ms, uint64_t *sent, struct op_error *e);
	/* Target: starts the guest's supervisor waiting for a stream (lock
	 * held); the caller keeps the record "incoming". */
	int (*migrate_listen)(struct kvzd *d, json_t *g, struct op_error *e);
	/* Target: hands sock to the waiting supervisor and waits until the
	 * guest runs, or stopped(arg) says to give up. */
	int (*migrate_receive)(struct kvzd *d, json_t *g, int sock, bool (*stopped)(void *),
			       void *arg, char *err, size_t errlen);
	/* Target: removes what a started but never committed incoming guest
	 * placed on this host beyond its record (after its stop); NULL when
	 * nothing. */
	void (*migrate_discard)(struct kvzd *d, json_t *g);
	/* Source, after the commit and the stop: removes what the live
	 * migration always copied (a container's private area and its id
	 * range); NULL when the migration's disk handling covers it. */
	void (*migrate_forget)(struct kvzd *d, json_t *g);
	/* Adds what clients see beyond the record; NULL when nothing. */
	void (*view)(struct kvzd *d, json_t *g, json_t *v);
};

extern const struct guest_driver guest_vm_driver;
extern const struct guest_driver guest_ct_driver;

/* NULL for an unknown type. */
const struct guest_driver *guest_driver_for_type(const char *type);
/* The driver of a stored record; records only hold known types, so an
 * unknown one is a corrupt store and ends kvzd. */
const struct guest_driver *guest_driver_of(json_t *g);
const struct guest_driver *guest_driver_by_kind(enum guest_kind k);
/* Whether the supervisor g records (pid, pid_start) is still that guest's
 * driver process: not gone, and not a reused pid. */
bool guest_supervisor_runs(json_t *g);

/* Per-kind parts that live with their subject. */
int guest_resize_vm(struct kvzd *d, json_t *g, json_t *req, struct op_error *e);
int guest_resize_ct(struct kvzd *d, json_t *g, json_t *req, struct op_error *e);
void monitor_sample_vm(struct kvzd *d, json_t *g, int64_t now_ms);
void monitor_sample_ct(struct kvzd *d, json_t *g, int64_t now_ms);
/* `kvz-ct VERB --name NAME --ct-root ROOT`, the start of every kvz-ct
 * helper command; root NULL: kvzd's own (STATE/ct). */
void ct_helper_argv(struct kvzd *d, const char *verb, const char *name, const char *root,
		    struct argv *a);
int vm_migrate_save(struct kvzd *d, struct job *j, json_t *g, const char *path,
		    struct op_error *e);
int vm_migrate_resume(struct kvzd *d, json_t *g, char *err, size_t errlen);
int vm_migrate_start(struct kvzd *d, json_t *g, const char *path, struct op_error *e);
int vm_migrate_send(struct kvzd *d, struct job *j, json_t *g, int sock, json_t *params,
		    int64_t *downtime_ms, uint64_t *sent, struct op_error *e);
int vm_migrate_listen(struct kvzd *d, json_t *g, struct op_error *e);
int vm_migrate_receive(struct kvzd *d, json_t *g, int sock, bool (*stopped)(void *), void *arg,
		       char *err, size_t errlen);
/* Containers (migration_ct.c). */
int ct_migrate_send(struct kvzd *d, struct job *j, json_t *g, int sock, json_t *params,
		    int64_t *downtime_ms, uint64_t *sent, struct op_error *e);
int ct_migrate_resume(struct kvzd *d, json_t *g, char *err, size_t errlen);
int ct_migrate_listen(struct kvzd *d, json_t *g, struct op_error *e);
int ct_migrate_receive(struct kvzd *d, json_t *g, int sock, bool (*stopped)(void *), void *arg,
		       char *err, size_t errlen);
void ct_migrate_discard(struct kvzd *d, json_t *g);

#endif
