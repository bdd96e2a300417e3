/* Membership: init, join, leave, and the thread that keeps this node's
 * lease alive with its capacity and load, pets the fence watchdog while
 * the lease is sure, runs this node's share of the guest records and, when
 * elected, the HA manager. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster_internal.h"
#include "hostinfo.h"
#include "log.h"
#include "store.h"

/* Ticks between two updates of the node's load in etcd (one write each):
 * the keepalive itself is every tick. */
#define LOAD_EVERY_TICKS 3
#define TICK_MS 1000

static void cluster_file(const struct kvzd *d, char *buf, size_t len)
{
	snprintf(buf, len, "%s/cluster.json", d->state_dir);
}

bool cluster_active(struct kvzd *d)
{
	struct cluster *c = d->cluster;
	if (!c)
		return false;
	pthread_rwlock_rdlock(&c->rw);
	bool j = c->joined;
	pthread_rwlock_unlock(&c->rw);
	return j;
}

json_t *cluster_kv_json(const struct etcd_kv *kv)
{
	json_t *j = json_loadb(kv->value, kv->vlen, 0, NULL);
	if (!json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static int put_json(struct etcd *e, const char *key, json_t *v, int64_t lease,
		    char *err, size_t errlen)
{
	char *s = json_dumps(v, JSON_COMPACT);
	int rc = s ? etcd_put(e, key, s, lease, err, errlen) : -1;
	free(s);
	return rc;
}

/* Capacity and load, as the HA manager weighs nodes. */
static json_t *node_facts(struct cluster *c)
{
	struct host_mem m = {0};
	host_meminfo(&m);
	double load = 0;
	FILE *f = fopen("/proc/loadavg", "r");
	if (f) {
		if (fscanf(f, "%lf", &load) != 1)
			load = 0;
		fclose(f);
	}
	json_t *list = store_guest_list(c->d->store);
	int running = 0;
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g)
		running += !strcmp(json_string_value(json_object_get(g, "state")) ?: "", "running");
	json_decref(list);
	return json_pack("{s:s, s:i, s:I, s:I, s:f, s:i, s:I}", "url", c->o.url,
			 "cpus", host_ncpus(), "mem_total", (json_int_t)m.total,
			 "mem_available", (json_int_t)m.available, "load", load,
			 "guests", running, "ts_ms", (json_int_t)kvzd_now_ms());
}

/* Grants a lease (when there is none) or keeps it alive. */
static bool keep_lease(struct cluster *c, bool *fresh)
{
	char err[300];
	int64_t ttl = 0;
	*fresh = false;
	if (c->lease && etcd_lease_keepalive(c->etcd, c->lease, &ttl, err, sizeof(err))) {
		kvz_debug("cluster: keepalive: %s", err);
		return false;
	}
	if (c->lease && ttl > 0)
		return true;
	if (c->lease)
		kvz_warn("cluster: lease %lld expired; taking a new one", (long long)c->lease);
	int64_t id;
	if (etcd_lease_grant(c->etcd, c->o.ttl_s, &id, err, sizeof(err))) {
		kvz_debug("cluster: lease grant: %s", err);
		return false;
	}
	pthread_mutex_lock(&c->state_lock);
	c->lease = id;
	c->leader = false;
	pthread_mutex_unlock(&c->state_lock);
	*fresh = true;
	return true;
}

/* The HA manager is whoever holds CK_LEADER, a key on its lease: created
 * only when absent, so one at a time; gone with the holder's lease. */
static void elect(struct cluster *c)
{
	char err[300];
	bool done = false;
	struct etcd_kvs k;
	if (etcd_range(c->etcd, CK_LEADER, false, &k, err, sizeof(err)))
		return;
	bool mine = k.n && !strcmp(k.kv[0].value, c->o.name) && k.kv[0].lease == c->lease;
	if (!k.n && !etcd_cas_put(c->etcd, CK_LEADER, c->o.name, c->lease, 0, &done, err,
				 sizeof(err)) && done) {
		mine = true;
		kvz_info("cluster: this node is the HA manager");
		store_event_add(c->d->store, "@cluster", "ha-manager", c->o.name);
	}
	etcd_kvs_free(&k);
	pthread_mutex_lock(&c->state_lock);
	c->leader = mine;
	pthread_mutex_unlock(&c->state_lock);
}

static void tick(struct cluster *c, unsigned n, pid_t *pids, unsigned long long *starts, int *npids)
{
	char err[300];
	bool fresh;
	if (keep_lease(c, &fresh)) {
		/* The alive key on the current lease is what tells the HA
		 * manager this node is up: until it is written on a new lease,
		 * the node is not sure of anything. */
		if (fresh || c->alive_lease != c->lease || n % LOAD_EVERY_TICKS == 0) {
			json_t *f = node_facts(c);
			char key[128];
			snprintf(key, sizeof(key), CK_ALIVE "%s", c->o.name);
			if (!put_json(c->etcd, key, f, c->lease, err, sizeof(err)))
				c->alive_lease = c->lease;
			else
				kvz_debug("cluster: load: %s", err);
			json_decref(f);
		}
		if (c->alive_lease == c->lease) {
			pthread_mutex_lock(&c->state_lock);
			c->last_ok_ms = kvzd_now_ms();
			pthread_mutex_unlock(&c->state_lock);
			fence_pet(c, cluster_fence_ms(c), pids, starts, *npids);
		}
	}
	pthread_mutex_lock(&c->state_lock);
	bool sure = kvzd_now_ms() - c->last_ok_ms < cluster_fence_ms(c);
	pthread_mutex_unlock(&c->state_lock);
	*npids = cluster_guests_tick(c, sure, pids, starts, CLUSTER_MAX_HA);
	pthread_mutex_lock(&c->state_lock);
	int64_t left = cluster_fence_ms(c) - (kvzd_now_ms() - c->last_ok_ms);
	pthread_mutex_unlock(&c->state_lock);
	if (left > 0) {
		fence_pet(c, (int)left, pids, starts, *npids);
		atomic_fetch_add(&c->pet_gen, 1);
		elect(c);
		pthread_mutex_lock(&c->state_lock);
		bool leader = c->leader;
		pthread_mutex_unlock(&c->state_lock);
		if (leader)
			cluster_ha_tick(c);
		if (n % LOAD_EVERY_TICKS == 0)
			cluster_metrics_publish(c);
		cluster_events_publish(c);
	}
}

static int start_member(struct cluster *c, const char *endpoints, bool create, bool rejoin,
			const char *secret, struct op_error *e);

static void *member_thread(void *arg)
{
	struct cluster *c = arg;
	static pid_t pids[CLUSTER_MAX_HA];               /* one thread per process */
	static unsigned long long starts[CLUSTER_MAX_HA];
	int npids = 0;
	for (unsigned n = 0; !atomic_load(&c->stop); n++) {
		int64_t t0 = kvzd_now_ms();
		pthread_rwlock_rdlock(&c->rw);
		bool joined = c->joined;
		if (joined)
			tick(c, n, pids, starts, &npids);
		pthread_rwlock_unlock(&c->rw);
		struct op_error e;
		if (!joined && *c->pending && n % 3 == 0 && !start_member(c, c->pending, false, true, NULL, &e)) {
			c->pending[0] = 0;
			atomic_store(&c->rejoining, false);
		}
		while (!atomic_load(&c->stop) && !atomic_exchange(&c->kick, false) &&
		       kvzd_now_ms() - t0 < TICK_MS)
			usleep(20 * 1000);
	}
	return NULL;
}

void cluster_fence_sync(struct cluster *c)
{
	/* Two ticks: one may have read the records before the change. */
	unsigned want = atomic_load(&c->pet_gen) + 2;
	int64_t deadline = kvzd_now_ms() + 3000;
	while (atomic_load(&c->pet_gen) < want && kvzd_now_ms() < deadline) {
		atomic_store(&c->kick, true);
		usleep(20 * 1000);
	}
}

static int write_cluster_file(struct kvzd *d, const char *endpoints)
{
	char path[300], tmp[310];
	cluster_file(d, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	json_t *j = json_pack("{s:s}", "etcd", endpoints);
	int rc = json_dump_file(j, tmp, JSON_COMPACT);
	json_decref(j);
	if (rc || rename(tmp, path)) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static int fail(struct op_error *e, int status, const char *msg, const char *why)
{
	e->status = status;
	snprintf(e->msg, sizeof(e->msg), "%s%s%s", msg, why ? ": " : "", why ? why : "");
	return -1;
}

/* Is secret the cluster's? rec: the cluster key's value. */
static int secret_matches(json_t *rec, const char *secret, struct op_error *e)
{
	char check[CLUSTER_SECRET_HEX + 1];
	const char *want = json_string_value(json_object_get(rec, "secret_check"));
	if (!want)
		return fail(e, 409, "this cluster was made by a kvzd without a cluster secret; "
			    "make it again with kvz cluster init", NULL);
	if (cluster_secret_check(secret, check))
		return fail(e, 500, "cannot check the cluster secret", NULL);
	if (strcmp(check, want))
		return fail(e, 403, "wrong cluster secret (see STATE/cluster.key on a member)", NULL);
	return 0;
}

/* Checks the cluster key (absent for init, present for join, with the
 * secret's check) and records this node as a member. */
static int enter(struct cluster *c, struct etcd *etcd, bool create, bool rejoin,
		 const char *secret, struct op_error *e)
{
	char err[300], key[128], check[CLUSTER_SECRET_HEX + 1];
	bool done = false;
	if (create) {
		if (cluster_secret_check(secret, check))
			return fail(e, 500, "cannot make the cluster secret's check", NULL);
		json_t *v = json_pack("{s:s, s:I, s:s}", "created_by", c->o.name,
				      "created_ms", (json_int_t)kvzd_now_ms(), "secret_check", check);
		char *s = json_dumps(v, JSON_COMPACT);
		json_decref(v);
		int rc = etcd_cas_put(etcd, CK_CLUSTER, s, 0, 0, &done, err, sizeof(err));
		free(s);
		if (rc)
			return fail(e, 502, "cannot reach etcd", err);
		if (!done)
			return fail(e, 409, "a kvz cluster already exists in this etcd; use join", NULL);
	} else {
		struct etcd_kvs k;
		if (etcd_range(etcd, CK_CLUSTER, false, &k, err, sizeof(err)))
			return fail(e, 502, "cannot reach etcd", err);
		json_t *rec = k.n ? cluster_kv_json(&k.kv[0]) : NULL;
		bool exists = k.n;
		etcd_kvs_free(&k);
		if (!exists)
			return fail(e, 404, "no kvz cluster in this etcd; use init", NULL);
		int rc = secret_matches(rec, secret, e);
		json_decref(rec);
		if (rc)
			return -1;
	}
	snprintf(key, sizeof(key), CK_MEMBERS "%s", c->o.name);
	struct etcd_kvs k;
	if (etcd_range(etcd, key, false, &k, err, sizeof(err)))
		return fail(e, 502, "cannot reach etcd", err);
	json_t *old = k.n ? cluster_kv_json(&k.kv[0]) : NULL;
	etcd_kvs_free(&k);
	const char *oldurl = json_string_value(json_object_get(old, "url"));
	if (!rejoin && oldurl && strcmp(oldurl, c->o.url)) {
		json_decref(old);
		return fail(e, 409, "another node with this node's name is a member", NULL);
	}
	json_decref(old);
	json_t *m = json_pack("{s:s, s:I}", "url", c->o.url, "joined_ms", (json_int_t)kvzd_now_ms());
	int rc = put_json(etcd, key, m, 0, err, sizeof(err));
	json_decref(m);
	return rc ? fail(e, 502, "cannot reach etcd", err) : 0;
}

/* The secret to enter with: made for init, this node's for a rejoin, the
 * one given for a join. */
static int secret_for(struct cluster *c, bool create, bool rejoin, const char *given,
		      char out[CLUSTER_SECRET_HEX + 1], struct op_error *e)
{
	if (create)
		return cluster_secret_generate(out) ? fail(e, 500, "cannot make a cluster secret", NULL) : 0;
	if (rejoin)
		return cluster_secret_load(c->d, out) ?
			fail(e, 500, "cannot read STATE/cluster.key (leave and join again)", NULL) : 0;
	if (!cluster_secret_valid(given))
		return fail(e, 400, "join needs the cluster's secret: {\"secret\": 64 hex digits} "
			    "(STATE/cluster.key on a member)", NULL);
	snprintf(out, CLUSTER_SECRET_HEX + 1, "%s", given);
	return 0;
}

/* Undoes the files of a join that failed after writing them. */
static void forget_files(struct cluster *c)
{
	char path[300];
	cluster_file(c->d, path, sizeof(path));
	unlink(path);
	cluster_secret_remove(c->d);
}

static int start_member(struct cluster *c, const char *endpoints, bool create, bool rejoin,
			const char *given, struct op_error *e)
{
	char err[300], secret[CLUSTER_SECRET_HEX + 1];
	struct etcd_opts eo = c->o.etcd;
	/* A dead endpoint is left after timeout_ms, but a live one may take
	 * longer: etcd answers after its WAL fsync (auth, writes, linearizable
	 * reads behind them), seconds when the disk is busy. A third of the TTL
	 * still leaves the lease time to be kept alive through the next
	 * endpoint after one stalled request. */
	eo.request_ms = c->o.ttl_s * 1000 / 3;
	if (etcd_parse_endpoints(endpoints, &eo, err, sizeof(err)))
		return fail(e, 400, err, NULL);
	if (!*c->o.url)
		return fail(e, 400, "cluster mode needs kvzd --listen (or --node-url): "
			    "peers reach each other's API there", NULL);
	if (secret_for(c, create, rejoin, given, secret, e))
		return -1;
	struct etcd *etcd = etcd_new(&eo);
	if (!etcd)
		return fail(e, 500, "out of memory", NULL);
	if (enter(c, etcd, create, rejoin, secret, e)) {
		etcd_free(etcd);
		return -1;
	}
	if (!rejoin && (write_cluster_file(c->d, endpoints) || cluster_secret_save(c->d, secret))) {
		int errno_was = errno;
		etcd_free(etcd);
		forget_files(c);
		return fail(e, 500, "cannot write cluster.json or cluster.key", strerror(errno_was));
	}
	if (fence_spawn(c, err, sizeof(err))) {
		etcd_free(etcd);
		if (!rejoin)
			forget_files(c);
		return fail(e, 500, "cannot start the fence watchdog", err);
	}
	pthread_rwlock_wrlock(&c->rw);
	c->o.etcd = eo;
	c->etcd = etcd;
	snprintf(c->secret, sizeof(c->secret), "%s", secret);
	c->joined = true;
	pthread_rwlock_unlock(&c->rw);
	store_event_add(c->d->store, "@cluster", create ? "cluster-init" : "cluster-join", c->o.name);
	kvz_info("cluster: %s as %s (etcd %s)", create ? "created" : "joined", c->o.name, endpoints);
	return 0;
}

int cluster_join(struct kvzd *d, json_t *req, bool create, struct op_error *e)
{
	struct cluster *c = d->cluster;
	const char *eps = json_string_value(json_object_get(req, "etcd"));
	if (!json_is_object(req) || !eps)
		return fail(e, 400, "want {\"etcd\": \"URL[,URL...]\"}", NULL);
	if (cluster_active(d))
		return fail(e, 409, "this node is already a cluster member; leave first", NULL);
	if (atomic_load(&c->rejoining))
		return fail(e, 409, "this node is a cluster member still rejoining (etcd unreachable)", NULL);
	const char *secret = json_string_value(json_object_get(req, "secret"));
	return start_member(c, eps, create, false, secret, e);
}

int cluster_leave(struct kvzd *d, struct op_error *e)
{
	struct cluster *c = d->cluster;
	if (!cluster_active(d))
		return fail(e, 409, "this node is not a cluster member", NULL);
	char err[300], key[128], names[256];
	bool done;
	/* Its lease goes with it: HA guests running here would be started
	 * elsewhere while they still run. */
	pthread_rwlock_rdlock(&c->rw);
	int ha = c->joined ? cluster_owned_ha(c, names, sizeof(names)) : 0;
	pthread_rwlock_unlock(&c->rw);
	if (ha)
		return fail(e, ha < 0 ? 503 : 409, ha < 0 ? "cannot read this node's guests from etcd" :
			    "this node runs HA guests; stop them or clear --ha first", ha < 0 ? NULL : names);
	atomic_store(&c->leaving, true);
	pthread_rwlock_wrlock(&c->rw);
	atomic_store(&c->leaving, false);
	c->joined = false;
	snprintf(key, sizeof(key), CK_MEMBERS "%s", c->o.name);
	etcd_cas_delete(c->etcd, key, 0, &done, err, sizeof(err));
	if (c->lease)
		etcd_lease_revoke(c->etcd, c->lease, err, sizeof(err));
	c->lease = 0;
	c->leader = false;
	etcd_free(c->etcd);
	c->etcd = NULL;
	memset(c->secret, 0, sizeof(c->secret));
	pthread_rwlock_unlock(&c->rw);
	/* A node leaving on purpose keeps its guests: the watchdog is told so. */
	fence_close(c);
	forget_files(c);
	store_event_add(d->store, "@cluster", "cluster-leave", c->o.name);
	return 0;
}

int cluster_setup(struct kvzd *d, const struct cluster_opts *o, char *err, size_t errlen)
{
	struct cluster *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->d = d;
	c->o = *o;
	c->wd_fd = -1;
	pthread_rwlock_init(&c->rw, NULL);
	pthread_mutex_init(&c->state_lock, NULL);
	d->cluster = c;
	char path[300];
	cluster_file(d, path, sizeof(path));
	json_t *j = json_load_file(path, 0, NULL);
	const char *eps = json_string_value(json_object_get(j, "etcd"));
	struct op_error e;
	int rc = 0;
	if (eps && start_member(c, eps, false, true, NULL, &e)) {
		/* etcd may be down now: keep trying in the background rather
		 * than refuse to start (guests on this host must stay
		 * manageable). */
		kvz_warn("cluster: cannot rejoin yet (%s); local guests only until then", e.msg);
		snprintf(c->pending, sizeof(c->pending), "%s", eps);
		atomic_store(&c->rejoining, true);
	}
	json_decref(j);
	if (pthread_create(&c->thread, NULL, member_thread, c)) {
		snprintf(err, errlen, "cannot start the cluster thread");
		return -1;
	}
	c->thread_running = true;
	if (pthread_create(&c->watch_thread, NULL, cluster_ha_watch, c)) {
		snprintf(err, errlen, "cannot start the cluster watch thread");
		return -1;
	}
	c->watch_running = true;
	if (pthread_create(&c->ev_watch_thread, NULL, cluster_events_watch, c)) {
		snprintf(err, errlen, "cannot start the cluster events watch thread");
		return -1;
	}
	c->ev_watch_running = true;
	return rc;
}

void cluster_shutdown(struct kvzd *d)
{
	struct cluster *c = d->cluster;
	if (!c)
		return;
	atomic_store(&c->stop, true);
	if (c->thread_running)
		pthread_join(c->thread, NULL);
	if (c->watch_running)
		pthread_join(c->watch_thread, NULL);
	if (c->ev_watch_running)
		pthread_join(c->ev_watch_thread, NULL);
	pthread_rwlock_wrlock(&c->rw);
	etcd_free(c->etcd);
	c->etcd = NULL;
	c->joined = false;
	pthread_rwlock_unlock(&c->rw);
	/* Not fence_close(): the watchdog sees the pipe close with kvzd and
	 * stops the HA guests, whose lease nobody keeps any more. */
	free(c);
	d->cluster = NULL;
}
