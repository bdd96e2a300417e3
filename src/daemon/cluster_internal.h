/* What the cluster_*.c files share (cluster.h is the rest of kvzd's view). */
#ifndef KVZD_CLUSTER_INTERNAL_H
#define KVZD_CLUSTER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "cluster.h"

/* Keys (docs/cluster.md). */
#define CK_CLUSTER "/kvz/cluster"
#define CK_MEMBERS "/kvz/members/"   /* + node: {"url", "joined_ms"}, no lease */
#define CK_ALIVE "/kvz/alive/"       /* + node: capacity and load, on the node's lease */
#define CK_GUESTS "/kvz/guests/"     /* + guest: owner, state, ha, def, counters */
#define CK_LEADER "/kvz/ha/leader"   /* the HA manager's node, on its lease */
#define CK_OWNED "/kvz/owned/"       /* + node + "/" + guest: "", the owner index */
#define CK_EVENTS "/kvz/events/"     /* + guest + "/" + node-id: an event (cluster_events.c) */
#define CK_POLICIES "/kvz/policies/" /* + rule name: the rule (cluster_policies.c) */
#define CK_POLICY_WRITES "/kvz/policy-writes" /* bumped by every rule change */
#define CK_METRICS "/kvz/metrics/"   /* + node: its running guests' metrics, on its lease */

/* Seconds etcd keeps a copied event (at least; up to an hour more). */
#define CLUSTER_EVENT_KEEP_S 86400

#define CLUSTER_MAX_HA 256           /* HA guests one node fences */

struct cluster {
	struct kvzd *d;
	struct cluster_opts o;
	/* Guards etcd, joined and secret: API threads read, join/leave write. */
	pthread_rwlock_t rw;
	struct etcd *etcd;        /* NULL while not a member */
	bool joined;
	char secret[CLUSTER_SECRET_HEX + 1]; /* the cluster credential, "" while not a member */
	/* The membership thread's (cluster_member.c); others read them under
	 * state_lock. */
	pthread_mutex_t state_lock;
	int64_t lease;
	int64_t alive_lease;      /* the lease CK_ALIVE/this node was last written with */
	int64_t last_ok_ms;       /* last keepalive etcd answered with a live lease */
	bool leader;              /* this node is the HA manager */
	pthread_t thread;
	bool thread_running;
	atomic_bool stop;
	/* Ticks that have petted the watchdog after reading the guest
	 * records; kick starts the next tick at once (cluster_fence_sync). */
	atomic_uint pet_gen;
	atomic_bool kick;
	/* Set by leave before it takes rw for writing: ends the watch. */
	atomic_bool leaving;
	/* The HA manager's watch of CK_ALIVE (cluster_ha.c): a lease that
	 * expires kicks the next tick at once instead of up to a second later. */
	pthread_t watch_thread;
	bool watch_running;
	/* Endpoints of a membership to resume once etcd answers (set before
	 * the thread starts, then the thread's own). */
	char pending[1024];
	/* This node is a member whose membership is not restored yet: no
	 * guest may start until it knows which are its own. */
	atomic_bool rejoining;
	/* The fence watchdog (cluster_fence.c): its pipe and pid. */
	int wd_fd;
	pid_t wd_pid;
	/* The membership thread's copy of local events to etcd
	 * (cluster_events.c): the last local id copied, the retention lease. */
	bool ev_started;
	int64_t ev_cursor, ev_lease, ev_lease_ms;
	/* The events watch (cluster_events.c): its thread, whether its stream
	 * is open, and a count bumped by every event key etcd reports. */
	pthread_t ev_watch_thread;
	bool ev_watch_running;
	atomic_bool ev_watching;
	atomic_uint_fast64_t ev_gen;
};

/* Milliseconds the node may go without a keepalive before it fences: half
 * the TTL, so its HA guests are gone well before the lease expires and
 * the HA manager may start them elsewhere. */
static inline int cluster_fence_ms(const struct cluster *c) { return c->o.ttl_s * 500; }

/* One tick of the HA manager when this node leads (cluster_ha.c). */
void cluster_ha_tick(struct cluster *c);
/* The watch thread's body (cluster_ha.c). */
void *cluster_ha_watch(void *arg);
/* One tick of this node's guest records (cluster_guests.c): when its
 * lease is sure, starts guests the HA manager assigned to it and restarts
 * its HA guests that crashed (or that its watchdog fenced while the lease
 * then survived); fills pids with its running HA guests' supervisors
 * (pid, start) for the watchdog; returns how many. */
int cluster_guests_tick(struct cluster *c, bool sure, pid_t *pids, unsigned long long *starts,
			int max);

/* How many HA guests this node owns that run or are being started here
 * (their names in names), or -1 when etcd cannot say. */
int cluster_owned_ha(struct cluster *c, char *names, size_t len);

/* The fence watchdog (cluster_fence.c). */
int fence_spawn(struct cluster *c, char *err, size_t errlen);
/* Tells the watchdog the lease is sure for ms_left more milliseconds
 * (the fence time less what passed since the last keepalive), with the
 * supervisors to kill if it does not hear again by then. */
void fence_pet(struct cluster *c, int ms_left, const pid_t *pids, const unsigned long long *starts,
	       int n);
void fence_close(struct cluster *c);
/* From an API thread after a guest became an HA guest running here: waits
 * (up to 3 s) until the watchdog knows of it, so that kvzd dying right
 * after the answer still fences it. */
void cluster_fence_sync(struct cluster *c);

/* Writes a guest record when its mod_revision is still rev (0: it must not
 * exist), moving its owner index entry from old_owner (NULL: none) to the
 * record's owner in the same transaction. */
int cluster_record_write(struct cluster *c, const char *name, json_t *rec, int64_t rev,
			 const char *old_owner, bool *done, char *err, size_t errlen);

/* Publishes this node's running guests' metrics (membership thread,
 * lease sure; cluster_metrics.c). */
void cluster_metrics_publish(struct cluster *c);

/* The events watch thread's body (cluster_events.c). */
void *cluster_events_watch(void *arg);

/* Copies this node's new events to etcd (membership thread). */
void cluster_events_publish(struct cluster *c);
/* The URL of member node (from its CK_MEMBERS record); rw held. */
int cluster_member_url(struct cluster *c, const char *node, char *url, size_t len);

/* The owner of guest name's record: 1 (with the record in *rec when rec
 * is not NULL), 0 when there is no record, -1 when etcd cannot say; rw
 * held. */
int cluster_guest_owner(struct cluster *c, const char *name, char *owner, size_t len,
			json_t **rec);

/* The cluster credential (cluster_auth.c). */
int cluster_secret_generate(char out[CLUSTER_SECRET_HEX + 1]);
bool cluster_secret_valid(const char *s);
/* What /kvz/cluster keeps of the secret: an HMAC of a constant under it. */
int cluster_secret_check(const char *secret, char out[CLUSTER_SECRET_HEX + 1]);
/* STATE/cluster.key, mode 0600. */
int cluster_secret_save(const struct kvzd *d, const char *secret);
int cluster_secret_load(const struct kvzd *d, char out[CLUSTER_SECRET_HEX + 1]);
void cluster_secret_remove(const struct kvzd *d);
/* peer_call signed with the cluster credential (rw held, or the
 * membership thread). */
long cluster_peer_call(struct cluster *c, const char *url, const char *method, const char *path,
		       json_t *body, json_t **out, char *err, size_t errlen);

/* JSON value of a key (a new reference) or NULL. */
json_t *cluster_kv_json(const struct etcd_kv *kv);

#endif
