/* The target of a migration: reservations, the migration port, commit and
 * discard (migration.h). Locks: a guest's lock (guest_locks.h) is taken
 * before the registry's mutex, never the other way round; the receiving
 * thread holds neither while it reads the stream. */
#include "migration.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "file_copy.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "guest_locks.h"
#include "hostinfo.h"
#include "log.h"
#include "mig_stream.h"
#include "migration_stats.h"
#include "migration_storage.h"
#include "parse.h"
#include "peer_client.h"
#include "store.h"
#include "vm_disks.h"

#define MAX_INCOMING 8
/* Reading the proof, then each piece of the stream. */
#define PROOF_TIMEOUT_S 5
#define STREAM_TIMEOUT_S 30
/* Machine state beyond the guest's RAM (devices, vCPUs). */
#define STATE_SLACK (256ull << 20)
/* How long a live commit waits for this side to finish loading before it
 * answers 503 (still loading: the source asks again); below the peer
 * client's timeout (peer_client.h), so the answer is never lost to it. */
#define LIVE_COMMIT_WAIT_MS 3000
_Static_assert(LIVE_COMMIT_WAIT_MS < PEER_TIMEOUT_S * 1000, "a live commit's answer outlasts the peer's wait");

enum slot_state { SLOT_FREE, SLOT_RECEIVING, SLOT_COMPLETE };

struct slot {
	enum slot_state state;
	char name[72];
	char proof[MIG_PROOF_LEN + 1];
	int lfd;  /* the migration port */
	int conn; /* the accepted connection with the proof, or -1 */
	bool stop;
	bool ended; /* the receiving thread failed and drops the guest */
	struct kvzd *d;
	struct mig_sink sink;
	char state_path[450], disk_path[450];
	char extra_path[MIG_EXTRA_DISKS][460];   /* offline: disks 1.. as received */
	bool has_disk;
	const char *disk_mode; /* what ran: "copy", "shared" or "none" (answered) */
	bool live; /* the guest's supervisor waits for the stream (--incoming defer) */
	int64_t running_ms; /* live: when its supervisor said the guest runs */
};

struct migrations {
	pthread_mutex_t lock; /* guards the slots */
	pthread_cond_t changed; /* a slot's state changed (CLOCK_MONOTONIC) */
	char host[64];        /* where ports are opened: the API's TCP address */
	struct slot slots[MAX_INCOMING];
};

void migration_dir(const struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/migrations/%s", d->state_dir, name);
}

int migration_init(struct kvzd *d, const char *listen_host, char *err, size_t errlen)
{
	struct migrations *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->changed, &ca);
	pthread_condattr_destroy(&ca);
	snprintf(m->host, sizeof(m->host), "%s", listen_host ? listen_host : "");
	d->migs = m;
	return 0;
}

void migration_stop(struct kvzd *d)
{
	struct migrations *m = d->migs;
	if (!m)
		return;
	for (int waited = 0;; waited++) {
		bool busy = false;
		pthread_mutex_lock(&m->lock);
		for (int i = 0; i < MAX_INCOMING; i++) {
			struct slot *s = &m->slots[i];
			if (s->state != SLOT_RECEIVING)
				continue;
			busy = true;
			s->stop = true;
			if (s->conn >= 0)
				shutdown(s->conn, SHUT_RDWR);
		}
		pthread_mutex_unlock(&m->lock);
		if (!busy)
			break;
		if (waited == 0)
			kvz_info("discarding the migrations coming in");
		struct timespec ts = {0, 50 * 1000000L};
		nanosleep(&ts, NULL);
	}
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->changed);
	free(m);
	d->migs = NULL;
}

/* ---- removing an incoming guest ---- */

/* With the guest's lock: the incoming record and its files go. */
static void drop_incoming(struct kvzd *d, const char *name, const char *why)
{
	json_t *g = store_guest_get(d->store, name);
	if (!g || strcmp(cfg_str(g, "state"), "incoming")) {
		json_decref(g);
		return;
	}
	/* The reason first: a source that sees the record leave "incoming"
	 * reads it next (migration_source.c, target_reason), while a stuck
	 * supervisor may take seconds to stop. */
	store_event_add(d->store, name, "migration-discarded", why);
	if (json_integer_value(json_object_get(g, "pid")) > 0) {
		/* A live target's supervisor: stopped as a running guest is. */
		struct op_error e;
		store_guest_set_state(d->store, name, "running");
		json_decref(g);
		g = store_guest_get(d->store, name);
		if (guest_stop_locked(d, g, 0, true, &e))
			kvz_warn("%s: %s", name, e.msg);
		if (guest_driver_of(g)->migrate_discard)
			guest_driver_of(g)->migrate_discard(d, g);
	}
	/* After the supervisor stopped: it had the file open. */
	mig_storage_remove(json_object_get(g, "config"));
	json_decref(g);
	char dir[400];
	migration_dir(d, name, dir, sizeof(dir));
	remove_tree(dir);
	store_samples_delete(d->store, name);
	store_guest_delete(d->store, name);
	kvz_info("%s: incoming migration discarded: %s", name, why);
}

/* ---- the port ---- */

static int open_port(const char *host, char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	int rc = getaddrinfo(host[0] ? host : NULL, "0", &hints, &ai);
	if (rc) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4) < 0) {
		snprintf(err, errlen, "cannot open a migration port on %s: %s", host,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static void set_timeout(int fd, int s)
{
	struct timeval tv = {.tv_sec = s};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Reads the proof from a new connection: true when it is the slot's. */
static bool proof_ok(struct slot *s, int c)
{
	char got[MIG_PROOF_LEN];
	size_t have = 0;
	set_timeout(c, PROOF_TIMEOUT_S);
	while (have < sizeof(got)) {
		ssize_t n = read(c, got + have, sizeof(got) - have);
		if (n <= 0)
			return false;
		have += (size_t)n;
	}
	return mig_proof_equal(s->proof, got, have);
}

/* Waits for the connection that brings the proof; -1 on timeout or stop.
 * Connections without it are dropped and recorded. */
static int accept_feeder(struct migrations *m, struct slot *s)
{
	time_t deadline = time(NULL) + MIG_RESERVE_TTL_S;
	while (time(NULL) < deadline) {
		pthread_mutex_lock(&m->lock);
		bool stop = s->stop;
		pthread_mutex_unlock(&m->lock);
		if (stop)
			return -1;
		struct pollfd p = {.fd = s->lfd, .events = POLLIN};
		if (poll(&p, 1, 200) != 1)
			continue;
		int c = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		if (proof_ok(s, c))
			return c;
		close(c);
		store_event_add(s->d->store, s->name, "migration-proof-rejected",
				"a connection to the migration port without the proof");
		kvz_warn("%s: dropped a connection to the migration port without the proof",
			 s->name);
	}
	return -1;
}

static bool slot_stopped(void *arg)
{
	struct slot *s = arg;
	pthread_mutex_lock(&s->d->migs->lock);
	bool stop = s->stop;
	pthread_mutex_unlock(&s->d->migs->lock);
	return stop;
}

/* Live: the waiting supervisor reads the stream itself. */
static int receive_live(struct slot *s, int c, char *err, size_t errlen)
{
	json_t *g = store_guest_get(s->d->store, s->name);
	int rc = -1;
	if (!g)
		snprintf(err, errlen, "the incoming record is gone");
	else
		rc = guest_driver_of(g)->migrate_receive(s->d, g, c, slot_stopped, s, err, errlen);
	json_decref(g);
	return rc;
}

static void *receiver(void *arg)
{
	struct slot *s = arg;
	struct kvzd *d = s->d;
	struct migrations *m = d->migs;
	char err[600] = "no stream within the reservation's time";
	int c = accept_feeder(m, s);
	int rc = -1;
	if (c >= 0) {
		pthread_mutex_lock(&m->lock);
		s->conn = s->stop ? -1 : c;
		pthread_mutex_unlock(&m->lock);
		set_timeout(c, STREAM_TIMEOUT_S);
		if (s->conn >= 0 && s->live)
			rc = receive_live(s, c, err, sizeof(err));
		else
			rc = s->conn >= 0 ? mig_receive(c, &s->sink, err, sizeof(err)) : -1;
		if (s->conn < 0)
			snprintf(err, sizeof(err), "discarded");
	}
	int64_t done_ms = kvzd_now_ms();
	char name[72];
	snprintf(name, sizeof(name), "%s", s->name);
	pthread_mutex_lock(&m->lock);
	close(s->lfd);
	s->lfd = -1;
	s->conn = -1;
	/* A live commit waiting in take_complete goes on at once. */
	pthread_cond_broadcast(&m->changed);
	if (rc == 0 && !s->stop) {
		s->state = SLOT_COMPLETE;
		s->running_ms = s->live ? done_ms : 0;
		pthread_mutex_unlock(&m->lock);
		store_event_add(d->store, name, "migration-received", NULL);
		/* A lost confirmation fails the source, which discards. The
		 * live source learns it from its own supervisor. */
		if (!s->live)
			mig_ack(c);
		close(c);
		return NULL;
	}
	/* A discard says only that, unless the receiver knows why the
	 * stream waited ("discarded: ...": kvz-vmm had not answered). */
	if (s->stop && strncmp(err, "discarded: ", 11))
		snprintf(err, sizeof(err), "discarded");
	/* The slot stays taken until the guest is dropped with this reason:
	 * a discard meanwhile (the source saw its stream break) leaves the
	 * drop to this thread, and a commit waits no more (ended). */
	s->ended = true;
	pthread_mutex_unlock(&m->lock);
	if (c >= 0)
		close(c);
	guest_lock(d, name);
	drop_incoming(d, name, err);
	guest_unlock(d, name);
	pthread_mutex_lock(&m->lock);
	s->state = SLOT_FREE;
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

/* ---- reservation ---- */

static struct slot *find_slot(struct migrations *m, const char *name)
{
	for (int i = 0; i < MAX_INCOMING; i++)
		if (m->slots[i].state != SLOT_FREE && !strcmp(m->slots[i].name, name))
			return &m->slots[i];
	return NULL;
}

static int check_file(const char *what, const char *path, struct op_error *e)
{
	if (path && access(path, R_OK) < 0)
		return op_fail(e, 409, "this host has no %s %s (%s)", what, path, strerror(errno));
	return 0;
}

/* What the guest needs from this host. */
static int check_host(struct kvzd *d, const struct guest_driver *drv, json_t *req,
		      json_t *cfg, struct op_error *e)
{
	char model[256];
	host_cpu_model(model, sizeof(model));
	const char *want = cfg_str(req, "cpu_model");
	if (drv->kind == GUEST_VM && (!want || strcmp(want, model)))
		return op_fail(e, 409, "CPU model differs: the guest runs on \"%s\", this host has \"%s\"",
			       want ? want : "?", model);
	json_t *mem = json_object_get(cfg, "memory");
	struct host_mem hm;
	if (drv->reserves_memory && json_is_integer(mem) && host_meminfo(&hm) == 0 &&
	    (uint64_t)json_integer_value(mem) > hm.available) {
		char a[32], b[32];
		return op_fail(e, 409, "not enough memory: the guest needs %s, this host has %s available",
			       kvz_format_size((uint64_t)json_integer_value(mem), a, sizeof(a)),
			       kvz_format_size(hm.available, b, sizeof(b)));
	}
	const char *br = cfg_str(cfg, "bridge");
	char sys[300];
	if (br) {
		if (!kvz_valid_name(br))
			return op_fail(e, 400, "bad bridge name");
		snprintf(sys, sizeof(sys), "/sys/class/net/%s/bridge", br);
		if (access(sys, F_OK) < 0)
			return op_fail(e, 409, "this host has no bridge %s", br);
	}
	if (check_file("kernel", cfg_str(cfg, "kernel"), e) ||
	    check_file("initrd", cfg_str(cfg, "initrd"), e))
		return -1;
	(void)d;
	return 0;
}

enum probe_seen { PROBE_NONE, PROBE_SEEN, PROBE_UNSEEN };

/* Whether disk 0 lies in the source's image dir beside the probe
 * ("probe_disk0", true when absent as an older source sends it only
 * then); disks 1.. always do. */
static bool probe_covers_disk0(json_t *req)
{
	return !json_is_false(json_object_get(req, "probe_disk0"));
}

/* A disk the source made in its image dir, with the probe it put beside
 * it: when this host's image dir shows the probe, it is the same directory
 * and the disk is this host's images/NAME.img (cfg's disk_path becomes
 * that); when it does not, the disk is copied, whatever this host has at
 * the source's path (its own file of that name, or on one machine the
 * source's). -1: a malformed probe name. */
static int shared_image_dir(struct kvzd *d, const char *name, json_t *req, json_t *cfg,
			    enum probe_seen *seen, struct op_error *e)
{
	json_t *v = json_object_get(req, "shared_probe");
	*seen = PROBE_NONE;
	if (!v)
		return 0;
	if (!mig_shared_probe_valid(json_string_value(v)))
		return op_fail(e, 400, "shared_probe must be \"%s\" and %d hex digits",
			       MIG_SHARED_PROBE_PREFIX, MIG_PROOF_LEN);
	char mine[400], probe[600];
	guest_image_path(d, name, mine, sizeof(mine));
	snprintf(probe, sizeof(probe), "%s/images/%s", d->state_dir, json_string_value(v));
	*seen = access(probe, F_OK) == 0 ? PROBE_SEEN : PROBE_UNSEEN;
	if (*seen == PROBE_SEEN && probe_covers_disk0(req))
		json_object_set_new(cfg, "disk_path", json_string(mine));
	return 0;
}

/* Disks 1.. move as disk 0 does (kvz-vmm copies every writable disk or
 * none): shared only where the probe shows the source's image dir here,
 * copied otherwise. */
static int place_extras(struct kvzd *d, const char *name, json_t *cfg, enum probe_seen seen,
			struct slot *s, struct op_error *e)
{
	size_t n = json_array_size(json_object_get(cfg, "disks"));
	if (n <= 1)
		return 0;
	bool shared = seen == PROBE_SEEN, shared0 = !strcmp(s->disk_mode, "shared");
	if (shared != shared0)
		return op_fail(e, 409, "disk 0 of %s is %s here and disks 1..%zu %s: its disks move "
			       "all shared or all copied (copy them: --copy-storage)", name,
			       shared0 ? "on shared storage" : "not", n - 1,
			       shared ? "are" : "are not");
	if (n - 1 > MIG_EXTRA_DISKS)
		return op_fail(e, 400, "%s comes with %zu disks; at most %d", name, n,
			       MIG_EXTRA_DISKS + 1);
	return mig_storage_place_extras(d, name, cfg, shared, e);
}

/* The disk: copied into this kvzd's image dir, or the same path (shared
 * storage), or this kvzd's images/NAME.img where its image dir is the
 * source's (shared_image_dir); "auto": shared when this host has the
 * path, else copied. Sets the sink's disk path and s->disk_mode. */
static int place_disk(struct kvzd *d, const char *name, json_t *req, json_t *cfg,
		      struct slot *s, struct op_error *e)
{
	const char *mode = cfg_str(req, "disk");
	const char *disk = cfg_str(cfg, "disk_path");
	enum probe_seen seen = PROBE_NONE;
	s->disk_mode = "none";
	if (!strcmp(mode, "none"))
		return disk || json_object_get(cfg, "disks") ?
		       op_fail(e, 400, "disk \"none\" for a guest with a disk") : 0;
	if (!disk)
		return op_fail(e, 400, "disk \"%s\" for a guest without a disk", mode);
	if (!strcmp(mode, "auto") && shared_image_dir(d, name, req, cfg, &seen, e))
		return -1;
	disk = cfg_str(cfg, "disk_path");
	bool by_probe = seen != PROBE_NONE && probe_covers_disk0(req);
	if (!strcmp(mode, "auto"))
		mode = by_probe ? (seen == PROBE_SEEN ? "shared" : "copy") :
		       access(disk, R_OK | W_OK) == 0 ? "shared" : "copy";
	if (strcmp(mode, "shared") && strcmp(mode, "copy"))
		return op_fail(e, 400, "disk must be \"copy\", \"shared\", \"auto\" or \"none\"");
	s->disk_mode = !strcmp(mode, "shared") ? "shared" : "copy";
	if (place_extras(d, name, cfg, seen, s, e))
		return -1;
	if (!strcmp(mode, "shared")) {
		if (access(disk, R_OK | W_OK) < 0)
			return op_fail(e, 409, "disk %s is not on this host (%s): it must be on shared storage",
				       disk, strerror(errno));
		return 0;
	}
	char mine[400];
	guest_image_path(d, name, mine, sizeof(mine));
	if (access(mine, F_OK) == 0)
		return op_fail(e, 409, "%s already exists on this host", mine);
	json_t *size = json_object_get(cfg, "disk_size");
	if (!json_is_integer(size) || json_integer_value(size) <= 0)
		return op_fail(e, 400, "a disk to copy needs its disk_size");
	json_object_set_new(cfg, "disk_path", json_string(mine));
	s->has_disk = true;
	s->sink.max_disk = (uint64_t)json_integer_value(size);
	return 0;
}

static int check_request(json_t *req, const struct guest_driver **drv, struct op_error *e)
{
	const char *name = cfg_str(req, "name");
	if (!json_is_object(req) || !name || !kvz_valid_name(name))
		return op_fail(e, 400, "a reservation needs a valid \"name\"");
	*drv = guest_driver_for_type(cfg_str(req, "type"));
	if (!*drv)
		return op_fail(e, 400, "unknown guest type");
	if ((*drv)->no_migration)
		return op_fail(e, 409, "%s: %s", name, (*drv)->no_migration);
	json_t *cfg = json_object_get(req, "config");
	json_t *mem = json_object_get(cfg, "memory");
	if (!json_is_object(cfg) || ((*drv)->reserves_memory &&
				     (!json_is_integer(mem) || json_integer_value(mem) <= 0)))
		return op_fail(e, 400, "a reservation needs the guest's \"config\"");
	if (!json_is_string(json_object_get(req, "disk")) ||
	    !json_is_boolean(json_object_get(req, "running")))
		return op_fail(e, 400, "a reservation needs \"disk\" and \"running\"");
	json_t *live = json_object_get(req, "live");
	if (live && (!json_is_boolean(live) ||
		     (json_is_true(live) && !json_is_true(json_object_get(req, "running")))))
		return op_fail(e, 400, "\"live\" is a boolean, for a running guest");
	if (json_is_true(live) && !(*drv)->migrate_listen)
		return op_fail(e, 409, "%s: no live migration for this kind", name);
	return 0;
}

static struct slot *take_slot(struct migrations *m, const char *name, struct op_error *e)
{
	pthread_mutex_lock(&m->lock);
	struct slot *s = NULL;
	if (find_slot(m, name)) {
		op_fail(e, 409, "a migration of %s is already coming in", name);
	} else {
		for (int i = 0; i < MAX_INCOMING && !s; i++)
			if (m->slots[i].state == SLOT_FREE)
				s = &m->slots[i];
		if (s) {
			memset(s, 0, sizeof(*s));
			s->state = SLOT_RECEIVING;
			s->lfd = s->conn = -1;
			snprintf(s->name, sizeof(s->name), "%s", name);
		} else {
			op_fail(e, 503, "%d migrations are already coming in", MAX_INCOMING);
		}
	}
	pthread_mutex_unlock(&m->lock);
	return s;
}

static void free_slot(struct migrations *m, struct slot *s)
{
	pthread_mutex_lock(&m->lock);
	if (s->lfd >= 0)
		close(s->lfd);
	s->state = SLOT_FREE;
	pthread_mutex_unlock(&m->lock);
}

/* Live: the guest's supervisor starts waiting for the stream; the record
 * stays "incoming" (the start made it "running"). */
static int listen_live(struct kvzd *d, const struct guest_driver *drv, const char *name,
		       struct op_error *e)
{
	store_guest_set_state(d->store, name, "stopped");
	json_t *g = store_guest_get(d->store, name);
	int rc = g ? drv->migrate_listen(d, g, e) : op_fail(e, 500, "%s is gone", name);
	json_decref(g);
	store_guest_set_state(d->store, name, "incoming");
	return rc;
}

/* With the guest's lock and a slot: checks, files, record, port. */
static int reserve_locked(struct kvzd *d, json_t *req, const struct guest_driver *drv,
			  struct slot *s, struct op_error *e)
{
	const char *name = s->name;
	json_t *cfg = json_deep_copy(json_object_get(req, "config"));
	char dir[400], top[300], err[300];
	int rc = -1;
	/* Only this kvzd names a file it may remove (never the peer). */
	json_object_del(cfg, "incoming_disk");
	json_object_del(cfg, "incoming_disks");
	json_t *old = NULL;
	/* Disks 1.. checked like a client's; disks[0] is this store's to
	 * make from the flat keys, never the peer's. */
	if (mig_storage_take_extras(d, name, cfg, e))
		goto out;
	old = store_guest_get(d->store, name);
	if (old) {
		op_fail(e, 409, "this host already has a guest named %s", name);
		goto out;
	}
	if (check_host(d, drv, req, cfg, e) ||
	    place_disk(d, name, req, cfg, s, e))
		goto out;
	/* Live: the target's kvz-vmm writes the copy into a disk made now. */
	if (s->live && s->has_disk &&
	    mig_storage_create(d, name, drv, cfg, cfg_str(cfg, "disk_path"), e))
		goto out;
	snprintf(top, sizeof(top), "%s/migrations", d->state_dir);
	migration_dir(d, name, dir, sizeof(dir));
	remove_tree(dir);
	if ((mkdir(top, 0700) < 0 && errno != EEXIST) || mkdir(dir, 0700) < 0) {
		op_fail(e, 500, "cannot create %s: %s", dir, strerror(errno));
		goto out;
	}
	snprintf(s->state_path, sizeof(s->state_path), "%s/state", dir);
	snprintf(s->disk_path, sizeof(s->disk_path), "%s/disk", dir);
	bool running = json_is_true(json_object_get(req, "running"));
	/* A stopped guest sends an empty state record. */
	s->sink.state_path = s->state_path;
	s->sink.disk_path = s->has_disk ? s->disk_path : NULL;
	/* Offline, copied: disks 1.. come as 'X' records into DIR/diskN. */
	json_t *disks = json_object_get(cfg, "disks");
	for (size_t i = 1; s->has_disk && !s->live && i < json_array_size(disks); i++) {
		unsigned k = s->sink.nextra++;
		snprintf(s->extra_path[k], sizeof(s->extra_path[k]), "%s/disk%zu", dir, i);
		s->sink.extra_path[k] = s->extra_path[k];
		s->sink.max_extra[k] =
			(uint64_t)json_integer_value(json_object_get(json_array_get(disks, i), "size"));
	}
	s->sink.max_state = running ? (uint64_t)json_integer_value(json_object_get(cfg, "memory")) +
				      STATE_SLACK : 0;
	s->lfd = open_port(d->migs->host, err, sizeof(err));
	if (s->lfd < 0) {
		op_fail(e, 500, "%s", err);
		goto fail_dir;
	}
	if (store_guest_insert(d->store, name, drv->type, cfg,
			       json_is_true(json_object_get(req, "autostart")), err, sizeof(err)) ||
	    store_guest_set_state(d->store, name, "incoming")) {
		op_fail(e, 500, "cannot record %s: %s", name, err);
		goto fail_dir;
	}
	if (s->live && listen_live(d, drv, name, e)) {
		store_guest_set_state(d->store, name, "incoming");
		drop_incoming(d, name, e->msg);
		goto out;
	}
	rc = 0;
	goto out;
fail_dir:
	remove_tree(dir);
out:
	if (rc)
		mig_storage_remove(cfg);
	json_decref(old);
	json_decref(cfg);
	return rc;
}

static int port_of(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

int migration_reserve(struct kvzd *d, json_t *req, json_t **answer, struct op_error *e)
{
	const struct guest_driver *drv = NULL;
	if (check_request(req, &drv, e))
		return -1;
	if (!d->migs->host[0])
		return op_fail(e, 409, "this kvzd has no --listen address to receive migrations on");
	const char *name = cfg_str(req, "name");
	struct slot *s = take_slot(d->migs, name, e);
	if (!s)
		return -1;
	s->d = d;
	s->live = json_is_true(json_object_get(req, "live"));
	guest_lock(d, name);
	int rc = mig_proof_new(s->proof) ? op_fail(e, 500, "no randomness") :
		 reserve_locked(d, req, drv, s, e);
	int port = rc == 0 ? port_of(s->lfd) : 0;
	char proof[MIG_PROOF_LEN + 1];
	memcpy(proof, s->proof, sizeof(proof));
	const char *disk_mode = s->disk_mode ? s->disk_mode : "none";
	pthread_t t;
	if (rc == 0 && pthread_create(&t, NULL, receiver, s)) {
		rc = op_fail(e, 500, "cannot start the receiving thread");
		drop_incoming(d, name, e->msg);
	}
	guest_unlock(d, name);
	if (rc) {
		free_slot(d->migs, s);
		return -1;
	}
	pthread_detach(t);
	/* Its event's id: the source asks for this move's events only
	 * (why the target dropped it), never an earlier move's. */
	int64_t ev = store_event_add(d->store, name, "migration-reserved", NULL);
	*answer = json_pack("{s:i, s:s, s:s, s:I}", "port", port, "proof", proof, "disk", disk_mode,
			    "event_id", (json_int_t)(ev > 0 ? ev : 0));
	return 0;
}

/* ---- commit and discard ---- */

/* With the guest's lock: takes the completed slot's paths; -1 when the
 * stream is not complete. *running_ms: when a live guest ran (else 0). */
static int take_complete(struct migrations *m, const char *name, char *state, char *disk,
			 size_t len, bool *live, int64_t *running_ms, struct op_error *e)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += LIVE_COMMIT_WAIT_MS / 1000;
	pthread_mutex_lock(&m->lock);
	struct slot *s = find_slot(m, name);
	/* A live source may see its side complete a moment before this
	 * side has loaded everything: woken by the receiver as it ends. */
	while (s && s->live && s->state == SLOT_RECEIVING && !s->ended &&
	       pthread_cond_timedwait(&m->changed, &m->lock, &until) == 0)
		s = find_slot(m, name);
	int rc = 0;
	if (!s)
		rc = op_fail(e, 404, "no migration of %s is coming in", name);
	else if (s->ended)
		rc = op_fail(e, 409, "the migration of %s failed on this side (see its "
			     "migration-discarded event)", name);
	else if (s->state != SLOT_COMPLETE && s->live)
		rc = op_fail(e, 503, "the migration of %s is still loading on this side", name);
	else if (s->state != SLOT_COMPLETE)
		rc = op_fail(e, 409, "the migration of %s has not arrived yet", name);
	if (rc == 0) {
		snprintf(state, len, "%s", s->state_path);
		snprintf(disk, len, "%s", s->has_disk && !s->live ? s->disk_path : "");
		*live = s->live;
		*running_ms = s->running_ms;
		s->state = SLOT_FREE;
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* Committed: the disks made for the copy are the guest's own now. */
static void keep_incoming_disk(struct kvzd *d, const char *name)
{
	json_t *g = store_guest_get(d->store, name);
	json_t *cfg = json_deep_copy(json_object_get(g, "config"));
	if (cfg && (json_object_get(cfg, "incoming_disk") || json_object_get(cfg, "incoming_disks"))) {
		json_object_del(cfg, "incoming_disk");
		json_object_del(cfg, "incoming_disks");
		store_guest_set_config(d->store, name, cfg);
	}
	json_decref(cfg);
	json_decref(g);
}

/* Offline, copied: disks 1.., received as DIR/diskN, into their places
 * (cfg); the caller removes them again on failure. */
static int move_extras(struct kvzd *d, const char *name, json_t *cfg, struct op_error *e)
{
	char dir[400];
	migration_dir(d, name, dir, sizeof(dir));
	json_t *disks = json_object_get(cfg, "disks");
	for (size_t i = 1; i < json_array_size(disks); i++) {
		char src[460];
		const char *dst = cfg_str(json_array_get(disks, i), "path");
		snprintf(src, sizeof(src), "%s/disk%zu", dir, i);
		if (!dst || rename(src, dst) < 0)
			return op_fail(e, 500, "cannot move disk %zu to %s: %s", i, dst ? dst : "?",
				       strerror(errno));
	}
	return 0;
}

static int commit_locked(struct kvzd *d, const char *name, json_t *body, int64_t *running_ms,
			 struct op_error *e)
{
	char state[450], disk[450], err[300];
	json_t *g = store_guest_get(d->store, name);
	if (!g || strcmp(cfg_str(g, "state"), "incoming")) {
		json_decref(g);
		return op_fail(e, 404, "no migration of %s is coming in", name);
	}
	bool live = false;
	if (take_complete(d->migs, name, state, disk, sizeof(state), &live, running_ms, e)) {
		json_decref(g);
		return -1;
	}
	const char *final = cfg_str(json_object_get(g, "config"), "disk_path");
	int rc = 0;
	/* The guest's history first: a malformed one refuses the commit. */
	if (mig_stats_import(d->store, name, body, kvzd_now_ms(),
			     err, sizeof(err)))
		rc = op_fail(e, 400, "%s", err);
	if (rc == 0 && disk[0] && rename(disk, final) < 0)
		rc = op_fail(e, 500, "cannot move the disk to %s: %s", final, strerror(errno));
	if (rc == 0 && disk[0])
		rc = move_extras(d, name, json_object_get(g, "config"), e);
	struct stat st;
	bool runs = live || (stat(state, &st) == 0 && st.st_size > 0);
	/* From "incoming" to "stopped": then to running like any start. */
	if (rc == 0)
		store_guest_set_state(d->store, name, "stopped");
	/* Live: the guest runs already; offline: it starts from the state. */
	if (rc == 0 && live)
		store_guest_set_state(d->store, name, "running");
	if (rc == 0)
		keep_incoming_disk(d, name);
	json_t *now = store_guest_get(d->store, name);
	if (rc == 0 && runs && !live) {
		rc = guest_driver_of(g)->migrate_start(d, now, state, e);
		*running_ms = rc == 0 ? kvzd_now_ms() : 0;
	}
	json_decref(now);
	if (rc) {
		struct op_error e2;
		if (disk[0])
			unlink(final);
		if (disk[0] && vm_disks_remove_extra(json_object_get(g, "config"), 1, &e2))
			kvz_warn("%s: %s", name, e2.msg);
		store_guest_set_state(d->store, name, "incoming");
		drop_incoming(d, name, e->msg);
	} else {
		/* A started VM maps its RAM from the state file: unlinking
		 * keeps the mapping and frees the space when it ends. */
		char dir[400];
		migration_dir(d, name, dir, sizeof(dir));
		remove_tree(dir);
		store_event_add(d->store, name, "migrated-in", runs ? "running" : "stopped");
	}
	json_decref(g);
	return rc;
}

int migration_commit(struct kvzd *d, const char *name, json_t *body, int64_t *running_ms,
		     struct op_error *e)
{
	*running_ms = 0;
	if (!kvz_valid_name(name))
		return op_fail(e, 400, "bad guest name");
	if (body && !json_is_object(body))
		return op_fail(e, 400, "a commit takes {\"samples\": [...]} or no body");
	guest_lock(d, name);
	int rc = commit_locked(d, name, body, running_ms, e);
	guest_unlock(d, name);
	return rc;
}

int migration_discard(struct kvzd *d, const char *name, struct op_error *e)
{
	if (!kvz_valid_name(name))
		return op_fail(e, 400, "bad guest name");
	struct migrations *m = d->migs;
	guest_lock(d, name);
	pthread_mutex_lock(&m->lock);
	struct slot *s = find_slot(m, name);
	bool receiving = s && s->state == SLOT_RECEIVING;
	if (receiving) {
		/* The receiver drops the guest as it ends. */
		s->stop = true;
		if (s->conn >= 0)
			shutdown(s->conn, SHUT_RDWR);
	} else if (s) {
		s->state = SLOT_FREE;
	}
	pthread_mutex_unlock(&m->lock);
	json_t *g = store_guest_get(d->store, name);
	int rc = 0;
	if (!g || strcmp(cfg_str(g, "state"), "incoming"))
		rc = op_fail(e, 404, "no migration of %s is coming in", name);
	else if (!receiving)
		drop_incoming(d, name, "discarded by the source");
	json_decref(g);
	guest_unlock(d, name);
	return rc;
}

void migration_recover_incoming(struct kvzd *d);
void migration_recover_incoming(struct kvzd *d)
{
	json_t *list = store_guest_list(d->store);
	size_t i;
	json_t *g;
	json_array_foreach(list, i, g)
		if (!strcmp(cfg_str(g, "state"), "incoming"))
			drop_incoming(d, cfg_str(g, "name"),
				      "kvzd restarted before the migration was committed");
	json_decref(list);
}
