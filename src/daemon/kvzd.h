/* kvzd: what every part of the daemon shares. */
#ifndef KVZD_H
#define KVZD_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct store;
struct image_dirs;
struct jobs;
struct migrations;
struct cluster;

/* Guest operations in flight at once; more wait their turn. */
#define KVZD_MAX_BUSY 64

/* One per process, built by main() before any thread starts; the fields are
 * read-only afterwards except where a lock is named. */
struct kvzd {
	char state_dir[256];   /* database, images/, ct/, logs/ */
	char run_dir[256];     /* vm/ and ct/ sockets, pid files */
	char socket_path[256]; /* the API's UNIX socket */
	char vmm_bin[PATH_MAX];     /* kvz-vmm */
	char ct_bin[PATH_MAX];       /* kvz-ct */
	int sample_interval_s;
	struct store *store;
	/* Where kernels and initrds named by API clients may lie
	 * (image_dirs.h). */
	struct image_dirs *images;
	/* Promised disk space on a filesystem may reach this times its free
	 * space (disk_admission.h); disk_lock makes checking and recording a
	 * new size one step. */
	double disk_overcommit;
	pthread_mutex_t disk_lock;
	/* The names of guests an operation is changing now (create, start,
	 * stop, set, destroy, crash handling), so that two requests never race
	 * on one guest's files, supervisor or record; see guest_locks.h.
	 * Guarded by ops_lock; reads of guests take none of this. */
	pthread_mutex_t ops_lock;
	pthread_cond_t ops_cond;
	char busy[KVZD_MAX_BUSY][72];
	int nbusy;
	/* Long operations running now (jobs.h); set by jobs_init(). */
	struct jobs *jobs;
	/* Incoming migrations' reservations (migration.h); set by
	 * migration_init(). */
	struct migrations *migs;
	/* Cluster mode (cluster.h); set by cluster_setup(), inactive until
	 * this node is a member. */
	struct cluster *cluster;
};

/* Milliseconds since the epoch. */
int64_t kvzd_now_ms(void);

#endif
