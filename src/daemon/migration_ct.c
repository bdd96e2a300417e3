/* The container's part of a migration (guest_driver.h migrate_*; the
 * stream is ct_stream.h). Source: the private image is copied while the
 * container runs, then `kvz-ct checkpoint --page-server-fd --hold` sends
 * its memory over the same socket to the target's `kvz-ct page-server`
 * (K pre-dumps while it runs, then the final dump) and leaves it frozen;
 * the final dump's other images and what changed in the private image
 * follow; the target restores it (`kvz-ct run --restore`) and confirms.
 * Only after the commit does the source end its frozen copy (a stop);
 * any failure before resumes it (`kvz-ct release --resume`). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "argv_build.h"
#include "ct_stream.h"
#include "file_copy.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "guest_locks.h"
#include "log.h"
#include "mig_stream.h"
#include "migration.h"
#include "store.h"
#include "write_all.h"

/* The target restores before it confirms: minutes for a large container
 * under emulation. */
#define RESTORE_CONFIRM_MS (10 * 60 * 1000)
#define DEFAULT_PRE_DUMPS 2
/* The migration port's read timeout (migration_target.c's 30 s) while
 * CRIU's page server reads: a pre-dump of a large container sends its
 * first page only after it has seized and scanned every task. */
#define PAGES_READ_TIMEOUT_S 600
#define STREAM_READ_TIMEOUT_S 30
/* A cancelled helper gets this long after SIGTERM before SIGKILL. */
#define HELPER_KILL_GRACE_MS 30000

static void ct_dir(const struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/ct/%s", d->state_dir, name);
}

static void images_dir(const struct kvzd *d, const char *name, char *buf, size_t len)
{
	migration_dir(d, name, buf, len);
	snprintf(buf + strlen(buf), len - strlen(buf), "/images");
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- running kvz-ct with the migration socket ---- */

struct helper {
	bool (*stop)(void *);
	void *arg;
	char out[2048]; /* what it printed (stdout and stderr), the last part */
	size_t n;
};

static void collect(struct helper *h, int fd)
{
	char buf[512];
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		size_t k = (size_t)r;
		if (h->n + k >= sizeof(h->out)) {
			size_t drop = h->n + k - (sizeof(h->out) - 1);
			drop = drop > h->n ? h->n : drop;
			memmove(h->out, h->out + drop, h->n - drop);
			h->n -= drop;
			k = k > sizeof(h->out) - 1 - h->n ? sizeof(h->out) - 1 - h->n : k;
		}
		memcpy(h->out + h->n, buf, k);
		h->n += k;
		h->out[h->n] = 0;
	}
}

static void child_exec(char *const argv[], int sock, int out)
{
	/* kvzd's threads block the signals its signalfd takes: the helper
	 * must see the SIGTERM that cancels it. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int null = open("/dev/null", O_RDONLY);
	if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0 ||
	    (sock >= 0 && fcntl(sock, F_SETFD, 0) < 0))
		_exit(126);
	execv(argv[0], argv);
	dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

/* Runs argv with sock inherited under its number until it ends; once
 * h->stop(h->arg) says so it is asked to end (SIGTERM), then killed.
 * Returns its exit code, -1 when it could not run or was killed. */
static int run_helper(char *const argv[], int sock, struct helper *h)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0)
		child_exec(argv, sock, p[1]);
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -1;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	int status = 0;
	int64_t term_at = 0;
	while (waitpid(pid, &status, WNOHANG) != pid) {
		struct pollfd pf = {.fd = p[0], .events = POLLIN};
		poll(&pf, 1, 100);
		collect(h, p[0]);
		if (!term_at && h->stop && h->stop(h->arg)) {
			term_at = mono_ms();
			kill(pid, SIGTERM);
		} else if (term_at && mono_ms() - term_at > HELPER_KILL_GRACE_MS) {
			kill(pid, SIGKILL);
		}
	}
	collect(h, p[0]);
	close(p[0]);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The helper's last line: its error. */
static const char *last_line(struct helper *h)
{
	while (h->n && h->out[h->n - 1] == '\n')
		h->out[--h->n] = 0;
	const char *nl = strrchr(h->out, '\n');
	return nl ? nl + 1 : h->out[0] ? h->out : "no message";
}

/* ---- source ---- */

struct ct_out {
	struct kvzd *d;
	struct job *j;
	const char *name;
	int sock;
	uint64_t sent;
	int64_t dump_ms;   /* how long the final dump's criu ran */
	int64_t frozen_at; /* the hold's freeze (CLOCK_MONOTONIC ms), 0: unknown */
	int64_t settle_ms; /* the hold's settling after criu */
};

static bool disk_progress(void *arg, uint64_t done)
{
	struct ct_out *o = arg;
	job_progress(o->j, "copying the private area", done, 0);
	return !job_cancelled(o->j);
}

static bool job_stop(void *arg)
{
	return job_cancelled(arg);
}

/* The helper's lines "STEP: N bytes of memory sent, M ms", the final
 * dump's with ", frozen at T, settled in S ms" (a hold). */
static void read_steps(struct ct_out *o, const char *text)
{
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		char step[32];
		unsigned long long bytes, ms, at = 0, settle = 0;
		int n = sscanf(l, "%31[^:]: %llu bytes of memory sent, %llu ms, frozen at %llu, "
			       "settled in %llu ms", step, &bytes, &ms, &at, &settle);
		if (n < 3)
			continue;
		o->sent += bytes;
		if (strcmp(step, "dump"))
			continue;
		o->dump_ms = (int64_t)ms;
		o->frozen_at = n == 5 ? (int64_t)at : 0;
		o->settle_ms = n == 5 ? (int64_t)settle : 0;
	}
}

static int checkpoint(struct ct_out *o, const char *dir, int pre, struct op_error *e)
{
	char run[300];
	snprintf(run, sizeof(run), "%s/ct", o->d->run_dir);
	unsigned char k = (unsigned char)pre;
	if (mig_send_header(o->sock, 'C', 1) || kvz_write_all(o->sock, &k, 1))
		return op_fail(e, 502, "%s: sending the checkpoint: %s", o->name, mig_io_why());
	struct argv a = {0};
	arg(&a, "%s", o->d->ct_bin);
	arg(&a, "checkpoint");
	arg(&a, "--name");
	arg(&a, "%s", o->name);
	arg(&a, "--run-dir");
	arg(&a, "%s", run);
	arg(&a, "--dir");
	arg(&a, "%s", dir);
	arg(&a, "--pre-dumps");
	arg(&a, "%d", pre);
	arg(&a, "--page-server-fd");
	arg(&a, "%d", o->sock);
	arg(&a, "--hold");
	char phase[64];
	snprintf(phase, sizeof(phase), "checkpoint: %d pre-dumps, then the final dump", pre);
	job_progress(o->j, phase, o->sent, 0);
	struct helper h = {.stop = job_stop, .arg = o->j};
	int rc = run_helper(a.v, o->sock, &h);
	argv_free(&a);
	if (rc != 0)
		return op_fail(e, job_cancelled(o->j) ? 409 : 502, "%s",
			       job_cancelled(o->j) ? "cancelled" : last_line(&h));
	read_steps(o, h.out);
	return 0;
}

/* While frozen: the final dump's images, then the private image's delta. */
static int send_frozen_part(struct ct_out *o, const char *dir, int disk,
			    struct ct_disk_sums *sums, struct op_error *e)
{
	char err[400];
	uint64_t n = 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return op_fail(e, 500, "%s: %s", dir, strerror(errno));
	job_progress(o->j, "sending the final images", o->sent, 0);
	int rc = ct_send_images(o->sock, dfd, &n, err, sizeof(err));
	close(dfd);
	o->sent += n;
	n = 0;
	if (rc == 0) {
		job_progress(o->j, "sending the private area's changes", o->sent, 0);
		rc = ct_send_disk_delta(o->sock, disk, sums, &n, err, sizeof(err));
		o->sent += n;
	}
	return rc ? op_fail(e, 502, "%s: %s", o->name, err) : 0;
}

/* The target's account after its K (ct_migrate_receive): ms from the
 * stream's end to the restored tasks running, and from then to the K.
 * Zeros when it sent none (an older target) within the wait. */
#define TARGET_TIMES_WAIT_MS 2000
static void read_target_times(int sock, uint32_t *restore_ms, uint32_t *tail_ms)
{
	unsigned char b[8];
	struct pollfd p = {.fd = sock, .events = POLLIN};
	*restore_ms = *tail_ms = 0;
	if (poll(&p, 1, TARGET_TIMES_WAIT_MS) != 1 || mig_read_all(sock, b, sizeof(b)))
		return;
	*restore_ms = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	*tail_ms = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
}

/* Downtime: from the hold's freeze on this host to the restored tasks
 * running on the target, i.e. the K's arrival less what the target did
 * after the thaw (its kernfs relock, network, QMP, kvzd's wait for it),
 * each side timed by its own clock. Its parts go to the job's phases. */
static int64_t account_downtime(struct ct_out *o, int64_t frozen_at, int64_t dumped_at,
				int64_t sent_at, int64_t confirmed_at)
{
	uint32_t restore_ms, tail_ms;
	read_target_times(o->sock, &restore_ms, &tail_ms);
	/* The target's word, bounded by what this side saw: its after-thaw
	 * part lies within the wait for its K. */
	if (tail_ms > confirmed_at - sent_at)
		tail_ms = 0;
	int64_t down = confirmed_at - frozen_at - tail_ms;
	char phase[256];
	snprintf(phase, sizeof(phase),
		 "restored on the target: downtime %lld ms = final dump %lld (criu %lld, settle %lld) "
		 "+ images and disk changes %lld + target to thaw %lld (its restore %u); "
		 "thaw to confirmation %u ms, not counted",
		 (long long)down, (long long)(dumped_at - frozen_at), (long long)o->dump_ms,
		 (long long)o->settle_ms, (long long)(sent_at - dumped_at),
		 (long long)(confirmed_at - sent_at - tail_ms), restore_ms, tail_ms);
	job_progress(o->j, phase, o->sent, o->sent);
	kvz_info("%s: %s", o->name, phase);
	/* This host's clock, to line a move up with the target's and the
	 * workload's (one machine in the lab). */
	kvz_debug("%s: moved out: frozen at %lld, dumped at %lld, sent at %lld, confirmed at %lld "
		  "(CLOCK_MONOTONIC ms)", o->name, (long long)frozen_at, (long long)dumped_at,
		  (long long)sent_at, (long long)confirmed_at);
	return down;
}

static int send_all(struct ct_out *o, json_t *params, int64_t *downtime, struct op_error *e)
{
	char dir[400], disk_path[400], err[400], top[300], mine[400];
	snprintf(top, sizeof(top), "%s/migrations", o->d->state_dir);
	migration_dir(o->d, o->name, mine, sizeof(mine));
	images_dir(o->d, o->name, dir, sizeof(dir));
	remove_tree(dir);
	if ((mkdir(top, 0700) < 0 && errno != EEXIST) || (mkdir(mine, 0700) < 0 && errno != EEXIST) ||
	    mkdir(dir, 0700) < 0)
		return op_fail(e, 500, "cannot create %s: %s", dir, strerror(errno));
	guest_ct_driver.disk_file(o->d, o->name, disk_path, sizeof(disk_path));
	int disk = open(disk_path, O_RDONLY | O_CLOEXEC);
	if (disk < 0)
		return op_fail(e, 500, "%s: %s", disk_path, strerror(errno));
	struct ct_disk_sums sums = {0};
	uint64_t n = 0;
	int rc = ct_send_disk(o->sock, disk, &sums, disk_progress, o, &n, err, sizeof(err));
	o->sent += n;
	if (rc)
		rc = op_fail(e, strcmp(err, "cancelled") ? 502 : 409, "%s", err);
	json_t *pre = json_object_get(params, "pre_dumps");
	if (rc == 0)
		rc = checkpoint(o, dir, pre ? (int)json_integer_value(pre) : DEFAULT_PRE_DUMPS, e);
	/* A kvz-ct that does not say when it froze: the dump's start. */
	int64_t dumped_at = mono_ms(), frozen_at = 0, sent_at = 0;
	if (rc == 0) {
		frozen_at = o->frozen_at ? o->frozen_at : dumped_at - o->dump_ms;
		rc = send_frozen_part(o, dir, disk, &sums, e);
		sent_at = mono_ms();
	}
	ct_disk_sums_free(&sums);
	close(disk);
	if (rc == 0) {
		job_progress(o->j, "restoring on the target", o->sent, o->sent);
		if (mig_send_end(o->sock, RESTORE_CONFIRM_MS, err, sizeof(err)))
			rc = op_fail(e, 502, "%s: %s", o->name, err);
	}
	if (rc == 0)
		*downtime = account_downtime(o, frozen_at, dumped_at, sent_at, mono_ms());
	else if (frozen_at)
		*downtime = mono_ms() - frozen_at;
	return rc;
}

int ct_migrate_send(struct kvzd *d, struct job *j, json_t *g, int sock, json_t *params,
		    int64_t *downtime_ms, uint64_t *sent, struct op_error *e)
{
	struct ct_out o = {.d = d, .j = j, .name = cfg_str(g, "name"), .sock = sock};
	*downtime_ms = 0;
	int rc = send_all(&o, params, downtime_ms, e);
	*sent = o.sent;
	char dir[400];
	images_dir(d, o.name, dir, sizeof(dir));
	remove_tree(dir);
	return rc;
}

/* A failed migration: the frozen container runs on. Not held (the
 * failure came before the final dump): nothing to do. */
int ct_migrate_resume(struct kvzd *d, json_t *g, char *err, size_t errlen)
{
	char run[300];
	snprintf(run, sizeof(run), "%s/ct", d->run_dir);
	struct argv a = {0};
	arg(&a, "%s", d->ct_bin);
	arg(&a, "release");
	arg(&a, "--name");
	arg(&a, "%s", cfg_str(g, "name"));
	arg(&a, "--run-dir");
	arg(&a, "%s", run);
	arg(&a, "--resume");
	struct helper h = {0};
	int rc = run_helper(a.v, -1, &h);
	argv_free(&a);
	if (rc == 0 || strstr(h.out, "is not held"))
		return 0;
	kvz_warn("%s: resuming after the failed migration: %s", cfg_str(g, "name"), last_line(&h));
	snprintf(err, errlen, "it stays frozen: %s", last_line(&h));
	return -1;
}

/* ---- target ---- */

int ct_migrate_listen(struct kvzd *d, json_t *g, struct op_error *e)
{
	(void)d;
	(void)g;
	(void)e;
	return 0; /* the supervisor starts once everything is here */
}

struct ct_in {
	struct kvzd *d;
	const char *name;
	const char *images;
	bool (*stopped)(void *);
	void *arg;
	int go_fd; /* a staged restore's go pipe (write end), or -1 */
};

/* The target's supervisor, started as the memory begins to arrive (`kvz-ct
 * run --restore DIR --restore-go-fd N`): it sets up its id range, cgroup
 * with limits, bridge and console, then waits for 'g' (restore) or EOF
 * (called off), so that none of that is in the frozen window. A failure
 * here costs only that: restore() starts one afresh. */
static void stage_restore(struct ct_in *in)
{
	struct kvzd *d = in->d;
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		kvz_warn("%s: staging the restore: pipe: %s", in->name, strerror(errno));
		return;
	}
	char fd[16];
	snprintf(fd, sizeof(fd), "%d", p[0]);
	const char *extra[] = {"--restore", in->images, "--restore-go-fd", fd, NULL};
	struct op_error e = {0};
	guest_lock(d, in->name);
	store_guest_set_state(d->store, in->name, "stopped");
	json_t *g = store_guest_get(d->store, in->name);
	int rc = g ? guest_spawn_locked(d, g, extra, p[0], &e)
		   : op_fail(&e, 500, "%s is gone", in->name);
	store_guest_set_state(d->store, in->name, "incoming");
	json_decref(g);
	guest_unlock(d, in->name);
	close(p[0]);
	if (rc) {
		kvz_warn("%s: staging the restore: %s (it starts once all is here)", in->name, e.msg);
		close(p[1]);
		return;
	}
	in->go_fd = p[1];
}

static int receive_pages(void *opaque, int sock, int pre, char *err, size_t len)
{
	struct ct_in *in = opaque;
	if (in->go_fd < 0 && !in->stopped(in->arg))
		stage_restore(in);
	struct argv a = {0};
	arg(&a, "%s", in->d->ct_bin);
	arg(&a, "page-server");
	arg(&a, "--dir");
	arg(&a, "%s", in->images);
	arg(&a, "--fd");
	arg(&a, "%d", sock);
	arg(&a, "--pre-dumps");
	arg(&a, "%d", pre);
	struct helper h = {.stop = in->stopped, .arg = in->arg};
	struct timeval slow = {.tv_sec = PAGES_READ_TIMEOUT_S}, usual = {.tv_sec = STREAM_READ_TIMEOUT_S};
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &slow, sizeof(slow));
	int rc = run_helper(a.v, sock, &h);
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &usual, sizeof(usual));
	argv_free(&a);
	if (rc != 0)
		snprintf(err, len, "receiving the memory: %s", last_line(&h));
	return rc ? -1 : 0;
}

/* The private area as kvz-ct create leaves it: the id range (as the
 * source recorded it) and an empty image to fill. */
static int make_private(struct kvzd *d, json_t *g, int *disk, char *err, size_t len)
{
	char dir[400], path[450];
	const char *name = cfg_str(g, "name");
	ct_dir(d, name, dir, sizeof(dir));
	json_t *idmap = json_object_get(json_object_get(g, "config"), "idmap");
	if (mkdir(dir, 0755) < 0) {
		snprintf(err, len, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "%s/idmap", dir);
	if (json_is_object(idmap) && json_dump_file(idmap, path, 0) < 0) {
		snprintf(err, len, "cannot write %s", path);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/private.img", dir);
	*disk = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (*disk < 0) {
		snprintf(err, len, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* The supervisor restores the checkpoint: the staged one once told to go
 * (its images and private area are complete now), else one started now;
 * the record stays "incoming" until the commit. */
static int restore(struct kvzd *d, struct ct_in *in, char *err, size_t len)
{
	struct op_error e = {0};
	const char *name = in->name;
	guest_lock(d, name);
	int rc;
	if (in->go_fd >= 0) {
		/* A supervisor gone meanwhile reads nothing: the wait says why. */
		if (write(in->go_fd, "g", 1) != 1)
			kvz_warn("%s: telling the staged restore to go: %s", name, strerror(errno));
		close(in->go_fd);
		in->go_fd = -1;
		store_guest_set_state(d->store, name, "starting");
		rc = guest_finish_start_locked(d, name, &e);
	} else {
		store_guest_set_state(d->store, name, "stopped");
		json_t *g = store_guest_get(d->store, name);
		const char *extra[] = {"--restore", in->images, NULL};
		rc = g ? guest_start_locked(d, g, extra, &e) : op_fail(&e, 500, "%s is gone", name);
		json_decref(g);
	}
	store_guest_set_state(d->store, name, "incoming");
	guest_unlock(d, name);
	if (rc)
		snprintf(err, len, "restoring %s: %s", name, e.msg);
	return rc;
}

/* Whether the record has a supervisor (the restore started one). */
static bool restored(struct kvzd *d, const char *name)
{
	json_t *g = store_guest_get(d->store, name);
	bool has = g && json_integer_value(json_object_get(g, "pid")) > 0;
	json_decref(g);
	return has;
}

/* When the supervisor's restore had the tasks running (its NAME.json's
 * "thawed-at-ms", CLOCK_MONOTONIC of this host), or now if it says none. */
static int64_t thawed_at(struct kvzd *d, const char *name)
{
	char path[400];
	snprintf(path, sizeof(path), "%s/ct/%s.json", d->run_dir, name);
	json_t *st = json_load_file(path, 0, NULL);
	int64_t at = (int64_t)json_integer_value(json_object_get(st, "thawed-at-ms"));
	json_decref(st);
	int64_t now = mono_ms();
	return at > 0 && at <= now ? at : now;
}

static void put_u32(unsigned char *b, int64_t v)
{
	uint32_t u = v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
	for (int i = 0; i < 4; i++)
		b[i] = (unsigned char)(u >> (8 * i));
}

/* After the K: ms from the stream's end to the thaw, and from the thaw
 * to the K (read_target_times), so that the source's downtime ends at
 * the thaw. A source that reads none loses nothing. */
static void send_target_times(int sock, int64_t received_at, int64_t thawed, int64_t acked_at)
{
	unsigned char b[8];
	put_u32(b, thawed - received_at);
	put_u32(b + 4, acked_at - thawed);
	if (kvz_write_all(sock, b, sizeof(b)))
		kvz_warn("cannot send the restore's times to the source: %s", strerror(errno));
}

int ct_migrate_receive(struct kvzd *d, json_t *g, int sock, bool (*stopped)(void *), void *arg,
		       char *err, size_t errlen)
{
	const char *name = cfg_str(g, "name");
	char images[400], cdir[400];
	images_dir(d, name, images, sizeof(images));
	ct_dir(d, name, cdir, sizeof(cdir));
	int disk = -1, rc = -1;
	struct ct_in in = {.go_fd = -1};
	int dfd = mkdir(images, 0700) == 0 ? open(images, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd < 0)
		snprintf(err, errlen, "cannot create %s: %s", images, strerror(errno));
	else if (make_private(d, g, &disk, err, errlen) == 0) {
		in = (struct ct_in){.d = d, .name = name, .images = images, .stopped = stopped,
				    .arg = arg, .go_fd = -1};
		json_int_t max = json_integer_value(json_object_get(json_object_get(g, "config"),
								    "disk_size"));
		struct ct_sink s = {.images_fd = dfd, .disk_fd = disk,
				    .max_disk = max > 0 ? (uint64_t)max : 0,
				    .pages = receive_pages, .arg = &in};
		rc = ct_stream_receive(sock, &s, err, errlen);
	}
	bool made = disk >= 0;
	if (disk >= 0)
		close(disk);
	if (dfd >= 0)
		close(dfd);
	if (rc == 0 && stopped(arg)) {
		snprintf(err, errlen, "discarded");
		rc = -1;
	}
	int64_t received_at = mono_ms(), thawed = 0;
	if (rc == 0)
		rc = restore(d, &in, err, errlen);
	/* Called off (EOF): a staged supervisor tears down and exits; the
	 * caller's clean-up stops it should it not have yet. */
	if (in.go_fd >= 0)
		close(in.go_fd);
	if (rc == 0)
		thawed = thawed_at(d, name);
	if (rc == 0 && mig_ack(sock)) {
		snprintf(err, errlen, "the source went away before the confirmation");
		rc = -1;
	}
	if (rc == 0) {
		int64_t acked_at = mono_ms();
		send_target_times(sock, received_at, thawed, acked_at);
		kvz_debug("%s: moved in: stream ended at %lld, thawed at %lld, confirmed at %lld "
			  "(CLOCK_MONOTONIC ms)", name, (long long)received_at, (long long)thawed,
			  (long long)acked_at);
	}
	/* A restored one is stopped by the caller's clean-up first, which
	 * then calls ct_migrate_discard. */
	if (rc && made && json_integer_value(json_object_get(g, "pid")) <= 0 && !restored(d, name))
		remove_tree(cdir);
	return rc;
}

/* What an incoming migration that restored but did not commit left (its
 * supervisor stopped already): the private area. */
void ct_migrate_discard(struct kvzd *d, json_t *g)
{
	char dir[400];
	ct_dir(d, cfg_str(g, "name"), dir, sizeof(dir));
	remove_tree(dir);
}
