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
	/* Serializes every operation that changes a guest (create, start,
	 * stop, set, destroy, and the monitor's crash handling), so that two
	 * requests never race on one guest's files, supervisor or record.
	 * Reads do not take it. */
	pthread_mutex_t ops_lock;
};

/* Milliseconds since the epoch. */
int64_t kvzd_now_ms(void);

#endif
