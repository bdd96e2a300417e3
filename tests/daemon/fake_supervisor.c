/* A stand-in for kvz-vmm and kvz-ct that speaks their command lines and QMP
 * contracts (docs in /work/prompts/contracts.md) without running a guest, so
 * that kvzd's own logic (records, adoption, crash detection, events, stats)
 * is tested on any machine. The tests copy it to a file named kvz-vmm or
 * kvz-ct; it acts as whichever its argv[0] names. Real-binary tests live in
 * test_real_guests.py.
 *
 * As kvz-vmm it also plays the snapshot contract (issue 10): getfd with a
 * descriptor (SCM_RIGHTS), migrate {"uri": "fd:snap"} only (a path would
 * mean kvzd let the VMM open files), query-migrate, migrate_cancel, cont,
 * MIGRATION events, and --incoming file:PATH; for live migration (issue 11)
 * --incoming defer and migrate-incoming {"uri": "fd:NAME"}, which reads a
 * saved state from the passed socket. Its "machine state" is one
 * value a test sets with x-fake-set and reads with x-fake-get, plus 4 MiB
 * of filler. The guest's --cmdline steers it: fake-migrate=fail fails the
 * save half-way, fake-migrate=slow takes about 3 s, fake-migrate=long
 * sends 64 MiB of filler in about 5 s (more than the sockets between two
 * hosts buffer: a cut link stalls it). Every snapshot command
 * is logged on stdout (the guest's log) for the tests to check the order.
 *
 * Its CD-ROM (--cdrom, "" for an empty drive) plays kvz-vmm's media
 * commands: query-block, eject and blockdev-change-medium with an fd:NAME
 * from getfd, checked as an ISO image; x-fake-cd-lock plays a guest that
 * locks the tray. Each change is logged with the file
 * the medium is. */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "iso_image.h"
#include "log.h"
#include "qmp_server.h"
#include "write_all.h"

/* Set from QMP handlers and signal handlers, read by main's wait loop:
 * SIGUSR1 plays a guest that shuts down cleanly, SIGUSR2 one that fails
 * (container init exiting with code 5). */
static volatile sig_atomic_t quit_requested, guest_end;

static void on_signal(int sig) { guest_end = sig; }
static long long balloon_actual = 256 << 20;
static char memory_setting[64] = "0:0";

static json_t *h_quit(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	quit_requested = 1;
	return NULL;
}

/* ---- the snapshot double (kvz-vmm only) ---- */

/* Test double state, one machine per process: the QMP thread and the
 * migration thread share it under snap_lock. */
static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct qmp_server *server;
static char run_status[16] = "running";
static char guest_value[128] = "initial";
static char mig_status[16] = "none", mig_error[128];
static long long mig_done, mig_total;
static atomic_bool mig_cancel;
static int named_fd = -1;        /* from getfd */
static char named_fd_name[32];
/* "fail", "fail-held" (fails in stop-and-copy after letting go of its
 * disk 0's lock, as kvz-vmm's save does; resumes only if it gets the lock
 * back, else stays paused, and cont is refused as kvz-vmm refuses it,
 * until the lock is free: flock, as kvz-vmm takes it), "slow", "long" or
 * "" */
static const char *migrate_mode = "";
/* fake-blockstats=hostile in --cmdline: query-blockstats names disk 1 with
 * what a compromised kvz-vmm could send to break /metrics' text. */
static bool hostile_blockstats;
static int disk_lock_fd = -1;   /* fail-held: disk 0's lock, once taken back */
#define FAKE_STATE_MAGIC "KVZFAKE-STATE 1\n"
#define FAKE_FILLER (4 << 20)
#define FAKE_LONG_FILLER (64 << 20)
/* Longer than kvzd's QMP timeout (5 s): slow, not dead. */
#define FAKE_HANG_S 7
/* incoming-stuck: no answer within any test's time. */
#define FAKE_STUCK_S 600

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_line(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Under snap_lock. */
static void set_mig_status(const char *st)
{
	snprintf(mig_status, sizeof(mig_status), "%s", st);
	qmp_server_emit(server, "MIGRATION", json_pack("{s:s}", "status", st));
	log_line("fake-vmm: migration %s", st);
}

/* The --disk options in order: block_resize on vda, vdb, ... grows a raw
 * one as kvz-vmm would grow it (grow only), a qcow2 one is only logged. */
#define FAKE_DISKS 16
static const char *vm_disks[FAKE_DISKS];
static int vm_ndisks;

/* fail-held: disk 0's lock (exclusive, not waiting); false when another
 * process holds it. Under snap_lock. */
static bool take_disk_lock(void)
{
	if (disk_lock_fd >= 0 || vm_ndisks == 0)
		return true;
	char path[600];
	snprintf(path, sizeof(path), "%.*s", (int)strcspn(vm_disks[0], ","), vm_disks[0]);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	disk_lock_fd = fd;
	return true;
}

static void *migration_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static char chunk[256 << 10];
	memset(chunk, 0x5a, sizeof(chunk));
	pthread_mutex_lock(&snap_lock);
	char head[256];
	int hl = snprintf(head, sizeof(head), FAKE_STATE_MAGIC "value %s\n", guest_value);
	long long filler = !strcmp(migrate_mode, "long") ? FAKE_LONG_FILLER : FAKE_FILLER;
	mig_total = filler + hl;
	set_mig_status("active");
	pthread_mutex_unlock(&snap_lock);
	const char *end = "completed";
	int step_ms = !strcmp(migrate_mode, "slow") ? 180 : 20;
	bool ok = kvz_write_all(fd, head, (size_t)hl) == 0;
	for (long long off = 0; ok && off < filler; off += (long long)sizeof(chunk)) {
		if (atomic_load(&mig_cancel)) {
			end = "cancelled";
			break;
		}
		if (!strncmp(migrate_mode, "fail", 4) && off >= FAKE_FILLER / 2) {
			snprintf(mig_error, sizeof(mig_error), "fake: guest memory read error");
			end = "failed";
			break;
		}
		ok = kvz_write_all(fd, chunk, sizeof(chunk)) == 0;
		pthread_mutex_lock(&snap_lock);
		mig_done = off + (long long)sizeof(chunk) + hl;
		pthread_mutex_unlock(&snap_lock);
		usleep((useconds_t)step_ms * 1000);
	}
	if (!ok) {
		snprintf(mig_error, sizeof(mig_error), "writing the state: %s", strerror(errno));
		end = "failed";
	}
	close(fd);
	pthread_mutex_lock(&snap_lock);
	if (!strcmp(end, "completed"))
		snprintf(run_status, sizeof(run_status), "postmigrate");
	else if (!strcmp(migrate_mode, "fail-held") && !take_disk_lock())
		snprintf(run_status, sizeof(run_status), "paused");
	set_mig_status(end);
	pthread_mutex_unlock(&snap_lock);
	return NULL;
}

static json_t *h_migrate(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	const char *uri = json_string_value(json_object_get(a, "uri"));
	log_line("fake-vmm: migrate %s%s", uri ? uri : "(none)",
		 json_is_true(json_object_get(a, "blk")) ? " blk" : "");
	if (!uri || strncmp(uri, "fd:", 3)) {
		qmp_set_error(e, "GenericError", "fake kvz-vmm takes only fd:NAME (kvzd passes the file)");
		return NULL;
	}
	pthread_mutex_lock(&snap_lock);
	int fd = !strcmp(named_fd_name, uri + 3) ? named_fd : -1;
	if (fd >= 0)
		named_fd = -1;
	pthread_mutex_unlock(&snap_lock);
	if (fd < 0) {
		qmp_set_error(e, "GenericError", "no descriptor named %s (getfd first)", uri + 3);
		return NULL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY) {
		close(fd);
		qmp_set_error(e, "GenericError", "the descriptor is not open for writing");
		return NULL;
	}
	pthread_mutex_lock(&snap_lock);
	bool busy = !strcmp(mig_status, "active") || strcmp(run_status, "running");
	if (!busy) {
		atomic_store(&mig_cancel, false);
		mig_done = 0;
		mig_error[0] = 0;
		set_mig_status("setup");
	}
	pthread_mutex_unlock(&snap_lock);
	pthread_t t;
	if (busy || pthread_create(&t, NULL, migration_main, (void *)(intptr_t)fd)) {
		close(fd);
		qmp_set_error(e, "GenericError", busy ? "the VM is not running or already saving"
						      : "cannot start the migration thread");
		return NULL;
	}
	pthread_detach(t);
	return NULL;
}

/* getfd: one named descriptor is all the contract needs. */
static json_t *h_getfd(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	const char *name = json_string_value(json_object_get(a, "fdname"));
	int fd = qmp_server_take_fd(server);
	log_line("fake-vmm: getfd %s%s", name ? name : "(none)", fd < 0 ? " without a descriptor" : "");
	if (!name || fd < 0) {
		if (fd >= 0)
			close(fd);
		qmp_set_error(e, "GenericError", "getfd needs fdname and a descriptor (SCM_RIGHTS)");
		return NULL;
	}
	pthread_mutex_lock(&snap_lock);
	if (named_fd >= 0)
		close(named_fd);
	named_fd = fd;
	snprintf(named_fd_name, sizeof(named_fd_name), "%.31s", name);
	pthread_mutex_unlock(&snap_lock);
	return NULL;
}

static json_t *h_query_migrate(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	pthread_mutex_lock(&snap_lock);
	json_t *r = json_pack("{s:s, s:{s:I, s:I, s:I}}", "status", mig_status, "ram",
			      "transferred", (json_int_t)mig_done, "total", (json_int_t)mig_total,
			      "remaining", (json_int_t)(mig_total - mig_done));
	if (!strcmp(mig_status, "failed"))
		json_object_set_new(r, "error-desc", json_string(mig_error));
	pthread_mutex_unlock(&snap_lock);
	return r;
}

static json_t *h_migrate_cancel(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	log_line("fake-vmm: migrate_cancel");
	atomic_store(&mig_cancel, true);
	return NULL;
}

static json_t *h_cont(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a;
	pthread_mutex_lock(&snap_lock);
	log_line("fake-vmm: cont (was %s)", run_status);
	if (!strcmp(migrate_mode, "fail-held") && !take_disk_lock()) {
		pthread_mutex_unlock(&snap_lock);
		qmp_set_error(e, "GenericError", "cannot resume: disk 0: in use by another "
			      "process; the machine stays paused");
		return NULL;
	}
	snprintf(run_status, sizeof(run_status), "running");
	pthread_mutex_unlock(&snap_lock);
	qmp_server_emit(server, "RESUME", NULL);
	return NULL;
}

static json_t *h_fake_set(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	const char *v = json_string_value(json_object_get(a, "value"));
	if (!v || strchr(v, '\n')) {
		qmp_set_error(e, "GenericError", "value missing");
		return NULL;
	}
	pthread_mutex_lock(&snap_lock);
	snprintf(guest_value, sizeof(guest_value), "%s", v);
	pthread_mutex_unlock(&snap_lock);
	return NULL;
}

static json_t *h_fake_get(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	pthread_mutex_lock(&snap_lock);
	json_t *r = json_pack("{s:s}", "value", guest_value);
	pthread_mutex_unlock(&snap_lock);
	return r;
}

/* --incoming file:PATH: the state a save wrote, or exit 1 with one line. */
static void load_incoming(const char *spec)
{
	if (strncmp(spec, "file:", 5))
		kvz_die("--incoming: only file:PATH (got %s)", spec);
	FILE *f = fopen(spec + 5, "r");
	char line[256];
	if (!f)
		kvz_die("--incoming: %s: %s", spec + 5, strerror(errno));
	if (!fgets(line, sizeof(line), f) || strcmp(line, FAKE_STATE_MAGIC))
		kvz_die("--incoming: %s: not a fake state file", spec + 5);
	if (!fgets(line, sizeof(line), f) || strncmp(line, "value ", 6))
		kvz_die("--incoming: %s: no value", spec + 5);
	line[strcspn(line, "\n")] = 0;
	snprintf(guest_value, sizeof(guest_value), "%.127s", line + 6);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fclose(f);
	if (size < FAKE_FILLER)
		kvz_die("--incoming: %s: truncated (%ld bytes)", spec + 5, size);
	log_line("fake-vmm: restored from %s: value %s", spec + 5, guest_value);
}

/* Reads a state from the stream, then runs: the live target's end. */
static void *incoming_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	FILE *f = fdopen(fd, "r");
	char line[256], value[128] = "";
	const char *why = NULL;
	if (!f || !fgets(line, sizeof(line), f) || strcmp(line, FAKE_STATE_MAGIC))
		why = "not a fake state stream";
	else if (!fgets(line, sizeof(line), f) || strncmp(line, "value ", 6))
		why = "no value";
	long long n = 0;
	if (!why && !strcmp(migrate_mode, "incoming-die"))
		why = "fake: a device record it cannot load";
	if (!why) {
		line[strcspn(line, "\n")] = 0;
		snprintf(value, sizeof(value), "%.127s", line + 6);
		char buf[65536];
		size_t r;
		while ((r = fread(buf, 1, sizeof(buf), f)) > 0)
			n += (long long)r;
		/* Its source has the same command line, so the same mode. */
		if (ferror(f))
			why = "the stream stalled or broke";
		else if (n < (!strcmp(migrate_mode, "long") ? FAKE_LONG_FILLER : FAKE_FILLER))
			why = "truncated";
	}
	if (f)
		fclose(f);
	if (why) {
		/* As kvz-vmm: a bad stream ends it with one line. */
		kvz_die("migrate-incoming: %s", why);
	}
	/* The whole stream read, its load takes long (a loaded host). */
	if (!strcmp(migrate_mode, "incoming-slow-load"))
		sleep(FAKE_HANG_S);
	pthread_mutex_lock(&snap_lock);
	snprintf(guest_value, sizeof(guest_value), "%s", value);
	snprintf(run_status, sizeof(run_status), "running");
	set_mig_status("completed");
	qmp_server_emit(server, "RESUME", json_object());
	pthread_mutex_unlock(&snap_lock);
	log_line("fake-vmm: incoming complete: value %s", value);
	return NULL;
}

/* migrate-set-parameters: logged for the tests to check what kvzd set. */
static json_t *h_set_params(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)e;
	char *txt = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
	log_line("fake-vmm: migrate-set-parameters %s", txt ? txt : "?");
	free(txt);
	return NULL;
}

static json_t *h_migrate_incoming(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	const char *uri = json_string_value(json_object_get(a, "uri"));
	log_line("fake-vmm: migrate-incoming %s", uri ? uri : "(none)");
	if (!strcmp(migrate_mode, "incoming-hang"))
		sleep(FAKE_HANG_S);
	if (!strcmp(migrate_mode, "incoming-stuck"))
		sleep(FAKE_STUCK_S);
	pthread_mutex_lock(&snap_lock);
	bool waiting = !strcmp(run_status, "inmigrate") && strcmp(mig_status, "active");
	int fd = uri && !strncmp(uri, "fd:", 3) && !strcmp(named_fd_name, uri + 3) ? named_fd : -1;
	if (fd >= 0 && waiting) {
		named_fd = -1;
		set_mig_status("active");
	}
	pthread_mutex_unlock(&snap_lock);
	pthread_t t;
	if (!waiting || fd < 0 ||
	    pthread_create(&t, NULL, incoming_main, (void *)(intptr_t)fd)) {
		qmp_set_error(e, "GenericError", !waiting ? "not started with --incoming defer"
					     : "no descriptor (getfd first)");
		return NULL;
	}
	pthread_detach(t);
	return NULL;
}

static json_t *h_status(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	pthread_mutex_lock(&snap_lock);
	json_t *r = json_pack("{s:s, s:b, s:b}", "status", run_status, "running",
			      !strcmp(run_status, "running"), "singlestep", 0);
	pthread_mutex_unlock(&snap_lock);
	return r;
}

static json_t *h_balloon(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	json_t *v = json_object_get(a, "value");
	if (!json_is_integer(v)) {
		qmp_set_error(e, "GenericError", "value missing");
		return NULL;
	}
	balloon_actual = json_integer_value(v);
	return NULL;
}

static json_t *h_query_balloon(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	return json_pack("{s:I}", "actual", (json_int_t)balloon_actual);
}

/* query-blockstats: kvz-vmm's shape, one entry per --disk in order, with
 * counters a test can tell apart: disk N has read (N+1) MiB and written
 * (N+1) * 3 MiB. */
static json_t *h_query_blockstats(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	json_t *list = json_array();
	for (int i = 0; i < vm_ndisks; i++) {
		char dev[32];
		snprintf(dev, sizeof(dev), "vd%c", 'a' + i);
		if (hostile_blockstats && i == 1)
			snprintf(dev, sizeof(dev), "%s", "x\"} 1\nkvz_evil{");
		json_int_t mib = (json_int_t)(i + 1) << 20;
		json_array_append_new(list, json_pack("{s:s, s:{s:I, s:I, s:i, s:i, s:i}}", "device",
						      dev, "stats", "rd_bytes", mib, "wr_bytes",
						      3 * mib, "rd_operations", 1, "wr_operations",
						      1, "flush_operations", 0));
	}
	return list;
}

static json_t *h_block_resize(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	json_t *v = json_object_get(a, "size");
	const char *dev = json_string_value(json_object_get(a, "device"));
	int idx = dev && strlen(dev) == 3 && !strncmp(dev, "vd", 2) ? dev[2] - 'a' : -1;
	if (idx < 0 || idx >= vm_ndisks) {
		qmp_set_error(e, "DeviceNotFound", "Cannot find device='%s'", dev ? dev : "");
		return NULL;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		qmp_set_error(e, "GenericError", "size missing");
		return NULL;
	}
	struct stat st;
	const char *disk = vm_disks[idx];
	off_t size = (off_t)json_integer_value(v);
	if (!strchr(disk, ',') && (stat(disk, &st) < 0 || st.st_size > size ||
				   truncate(disk, size) < 0)) {
		qmp_set_error(e, "GenericError", "disk %s: cannot grow to %lld", dev, (long long)size);
		return NULL;
	}
	log_line("fake-vmm: block_resize %s %lld", dev, (long long)size);
	return NULL;
}

static json_t *h_set(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	const char *m = json_string_value(json_object_get(a, "memory"));
	/* Like the real kvz-ct, refuse a limit below current usage (1M here). */
	if (m && atoll(strchr(m, ':') ? strchr(m, ':') + 1 : m) < (1 << 20)) {
		qmp_set_error(e, "GenericError", "memory limit below current usage");
		return NULL;
	}
	if (m)
		snprintf(memory_setting, sizeof(memory_setting), "%s", m);
	return NULL;
}

static json_t *h_stats(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	static long long cpu_ns;
	cpu_ns += 50 * 1000 * 1000;
	const char *hard = strchr(memory_setting, ':');
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "cpu-usage-ns", (json_int_t)cpu_ns, "memory-used", (json_int_t)(3 << 20),
			 "memory-soft", (json_int_t)atoll(memory_setting),
			 "memory-hard", (json_int_t)(hard ? atoll(hard + 1) : 0),
			 "pids-current", (json_int_t)2, "disk-used", (json_int_t)(5 << 20),
			 "disk-size", (json_int_t)(64 << 20), "net-rx-bytes", (json_int_t)1000,
			 "net-tx-bytes", (json_int_t)2000);
}

/* ---- the CD-ROM double (kvz-vmm only; QMP thread) ---- */

static bool cd_drive, cd_locked;
static char cd_medium[512];   /* the medium's file, "" for none */

static bool cd_named(json_t *a, struct qmp_error *e)
{
	const char *id = json_string_value(json_object_get(a, "id"));
	if (cd_drive && id && !strcmp(id, "cdrom0"))
		return true;
	qmp_set_error(e, "DeviceNotFound", "Device '%s' not found", id ? id : "");
	return false;
}

static bool cd_unlocked(struct qmp_error *e)
{
	if (!cd_locked)
		return true;
	qmp_set_error(e, "GenericError",
		      "Device 'cdrom0' is locked and force was not specified, wait for tray to open and try again");
	return false;
}

static json_t *h_query_block(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)a; (void)e;
	json_t *list = json_array();
	if (!cd_drive)
		return list;
	json_t *cd = json_pack("{s:s,s:b,s:b}", "device", "cdrom0", "locked", cd_locked,
			       "tray_open", !cd_medium[0]);
	if (cd_medium[0])
		json_object_set_new(cd, "inserted", json_pack("{s:s}", "file", cd_medium));
	json_array_append_new(list, cd);
	return list;
}

static json_t *h_eject(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	if (!cd_named(a, e) || (!json_is_true(json_object_get(a, "force")) && !cd_unlocked(e)))
		return NULL;
	cd_medium[0] = 0;
	log_line("fake-vmm: eject");
	return NULL;
}

static json_t *h_change_medium(void *o, json_t *a, struct qmp_error *e)
{
	(void)o;
	const char *file = json_string_value(json_object_get(a, "filename"));
	if (!cd_named(a, e) || !cd_unlocked(e))
		return NULL;
	pthread_mutex_lock(&snap_lock);
	bool ours = file && !strncmp(file, "fd:", 3) && !strcmp(named_fd_name, file + 3) && named_fd >= 0;
	int fd = ours ? named_fd : -1;
	if (ours)
		named_fd = -1;
	pthread_mutex_unlock(&snap_lock);
	char why[128], link[64];
	uint64_t size;
	if (fd < 0) {
		qmp_set_error(e, "GenericError", "filename must be fd:NAME of a getfd descriptor");
		return NULL;
	}
	if (iso_image_check(fd, &size, why, sizeof(why)) < 0) {
		close(fd);
		qmp_set_error(e, "GenericError", "Could not open '%s': %s", file, why);
		return NULL;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, cd_medium, sizeof(cd_medium) - 1);
	cd_medium[n > 0 ? n : 0] = 0;
	close(fd);
	log_line("fake-vmm: blockdev-change-medium %s", cd_medium);
	return NULL;
}

/* x-fake-cd-lock {"locked": B}: the guest's PREVENT ALLOW MEDIUM REMOVAL. */
static json_t *h_cd_lock(void *o, json_t *a, struct qmp_error *e)
{
	(void)o; (void)e;
	cd_locked = json_is_true(json_object_get(a, "locked"));
	return NULL;
}

/* The --cdrom argument: "" an empty drive, else the medium's file. */
static void cd_start(const char *cdrom)
{
	cd_drive = cdrom != NULL;
	if (!cdrom || !cdrom[0])
		return;
	ssize_t n = readlink(cdrom, cd_medium, sizeof(cd_medium) - 1);
	if (n < 0)
		snprintf(cd_medium, sizeof(cd_medium), "%s", cdrom);
	else
		cd_medium[n] = 0;
}

/* Serves the console: a greeting line, then echoes what a client types. */
static void *console_main(void *arg)
{
	const char *path = arg;
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 4) < 0)
		kvz_die("console %s: %s", path, strerror(errno));
	for (;;) {
		int c = accept(fd, NULL, NULL);
		if (c < 0)
			continue;
		static const char hello[] = "kvz-test-guest: idle\n";
		if (write(c, hello, sizeof(hello) - 1) < 0) {
			close(c);
			continue;
		}
		char buf[256];
		ssize_t n;
		while ((n = read(c, buf, sizeof(buf))) > 0)
			if (write(c, buf, (size_t)n) < 0)
				break;
		close(c);
	}
	return NULL;
}

/* ---- an HA guest's shared disk (cluster tests) ----
 * A container whose command is "fake-ha-disk DIR TAG" plays a guest on
 * shared storage: it takes DIR/disk.lock (flock, exclusive; a second
 * holder means the guest would run twice, so it refuses to start, as a
 * real guest's disk lock would) and appends "TAG CTROOT N" to DIR/counter
 * every 100 ms while it runs (CTROOT tells the nodes apart). */
static void *ha_disk_main(void *arg)
{
	char **a = arg;
	char path[600];
	for (long n = 0;; n++) {
		snprintf(path, sizeof(path), "%s/counter", a[0]);
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			char line[700];
			int len = snprintf(line, sizeof(line), "%s %s %ld\n", a[1], a[2], n);
			if (write(fd, line, (size_t)len) != len)
				kvz_warn("counter: short write");
			close(fd);
		}
		usleep(100 * 1000);
	}
	return NULL;
}

static int ha_disk_start(int argc, char **argv, const char *root)
{
	static char *a[3];
	a[2] = (char *)(root ? root : "-");
	for (int i = 1; i + 3 < argc; i++) {
		if (strcmp(argv[i], "--") || strcmp(argv[i + 1], "fake-ha-disk"))
			continue;
		a[0] = argv[i + 2];
		a[1] = argv[i + 3];
		char path[600];
		snprintf(path, sizeof(path), "%s/disk.lock", a[0]);
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
			fprintf(stderr, "kvz-ct: %s: disk locked by another guest\n", path);
			return -1;
		}
		pthread_t t;
		pthread_create(&t, NULL, ha_disk_main, a);
		return 0;
	}
	return 0;
}

static const char *opt_after(int argc, char **argv, const char *name)
{
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], name))
			return argv[i + 1];
	return NULL;
}

static int supervise(const char *qmp, const char *console, bool vm)
{
	static const struct qmp_command cmds[] = {
		{"query-status", h_status}, {"quit", h_quit}, {"stop", h_quit},
		{"balloon", h_balloon}, {"query-balloon", h_query_balloon},
		{"set", h_set}, {"query-stats", h_stats}, {"block_resize", h_block_resize},
		{"getfd", h_getfd}, {"migrate", h_migrate}, {"query-migrate", h_query_migrate},
		{"query-block", h_query_block}, {"query-blockstats", h_query_blockstats}, {"eject", h_eject},
		{"blockdev-change-medium", h_change_medium}, {"x-fake-cd-lock", h_cd_lock},
		{"migrate_cancel", h_migrate_cancel}, {"cont", h_cont},
		{"migrate-incoming", h_migrate_incoming},
		{"migrate-set-parameters", h_set_params},
		{"x-fake-set", h_fake_set}, {"x-fake-get", h_fake_get},
	};
	if (!qmp)
		kvz_die("--qmp missing");
	if (console) {
		pthread_t t;
		pthread_create(&t, NULL, console_main, (void *)console);
	}
	char err[256];
	struct qmp_server *s = qmp_server_start(qmp, vm ? "kvz-vmm" : "kvz-ct", cmds,
						sizeof(cmds) / sizeof(cmds[0]), NULL, err, sizeof(err));
	if (!s)
		kvz_die("%s", err);
	pthread_mutex_lock(&snap_lock);
	server = s;
	pthread_mutex_unlock(&snap_lock);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL); /* the guest reboots (kvz-vmm ends at a reset) */
	printf("fake supervisor up\n");
	fflush(stdout);
	while (!quit_requested && !guest_end)
		usleep(20 * 1000);
	int rc = 0;
	if (guest_end) {
		bool ok = guest_end == SIGUSR1 || guest_end == SIGHUP;
		qmp_server_emit(s, "SHUTDOWN", vm ? json_pack("{s:b, s:s}", "guest", 1, "reason",
							       guest_end == SIGHUP ? "guest-reset" :
							       ok ? "guest-shutdown" : "guest-panic")
						  : json_pack("{s:i}", "exit-code", ok ? 0 : 5));
		usleep(100 * 1000);
		if (guest_end == SIGHUP) /* as kvz-vmm's last line says it */
			printf("fake-vmm: stopped: guest reset\n");
		rc = ok ? 0 : 1;
	}
	qmp_server_stop(s);
	if (console)
		unlink(console);
	return rc;
}

/* Whether the test left the marker file NAME in the container's directory. */
static bool marker(const char *dir, const char *name)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* kvz-ct backup: the private area (here a small file) behind a header,
 * written in 64 KiB pieces up to 1 MiB so that progress shows; markers make
 * it slow (20 s: to be cancelled) or fail half-way. */
static int fake_backup(const char *dir, const char *out)
{
	char img[600], data[4096] = "";
	snprintf(img, sizeof(img), "%s/private.img", dir);
	FILE *in = fopen(img, "r");
	size_t n = in ? fread(data, 1, sizeof(data) - 1, in) : 0;
	if (in)
		fclose(in);
	FILE *f = fopen(out, "w");
	if (!f)
		kvz_die("cannot write %s: %s", out, strerror(errno));
	fprintf(f, "KVZFAKE %zu\n", n);
	fwrite(data, 1, n, f);
	static char pad[65536];
	for (int i = 0; i < 16; i++) {
		fwrite(pad, 1, sizeof(pad), f);
		fflush(f);
		if (i == 8 && marker(dir, "fake-backup-fail"))
			kvz_die("archive write failed (fake)");
		if (marker(dir, "fake-backup-slow"))
			usleep(1250 * 1000);
	}
	return fclose(f) == 0 ? 0 : 1;
}

/* kvz-ct restore: a new CTROOT/NAME with the backup's private area. */
static int fake_restore(const char *dir, const char *in)
{
	char img[600], data[4096];
	FILE *f = fopen(in, "r");
	size_t n;
	if (!f || fscanf(f, "KVZFAKE %zu\n", &n) != 1 || n >= sizeof(data) ||
	    fread(data, 1, n, f) != n)
		kvz_die("%s: not a backup", in);
	fclose(f);
	if (mkdir(dir, 0700) < 0)
		kvz_die("container already exists (%s)", dir);
	snprintf(img, sizeof(img), "%s/private.img", dir);
	f = fopen(img, "w");
	if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
		kvz_die("cannot write %s", img);
	return 0;
}

int main(int argc, char **argv)
{
	kvz_log_init(argv[0]);
	const char *base = strrchr(argv[0], '/');
	base = base ? base + 1 : argv[0];
	bool vm = !strcmp(base, "kvz-vmm");
	if (vm) {
		const char *cmdline = opt_after(argc, argv, "--cmdline");
		if (cmdline && strstr(cmdline, "fake-migrate=fail"))
			migrate_mode = strstr(cmdline, "fake-migrate=fail-held") ? "fail-held" : "fail";
		if (cmdline && strstr(cmdline, "fake-migrate=slow"))
			migrate_mode = "slow";
		if (cmdline && strstr(cmdline, "fake-migrate=long"))
			migrate_mode = "long";
		/* The target's stand-in: dies on the stream's first record,
		 * answers migrate-incoming later than kvzd's QMP timeout, or
		 * not at all, or loads 7 s after the stream ended. The
		 * source's (same command line) sends as usual. */
		if (cmdline && strstr(cmdline, "fake-migrate=incoming-die"))
			migrate_mode = "incoming-die";
		if (cmdline && strstr(cmdline, "fake-migrate=incoming-hang"))
			migrate_mode = "incoming-hang";
		if (cmdline && strstr(cmdline, "fake-migrate=incoming-stuck"))
			migrate_mode = "incoming-stuck";
		if (cmdline && strstr(cmdline, "fake-migrate=incoming-slow-load"))
			migrate_mode = "incoming-slow-load";
		hostile_blockstats = cmdline && strstr(cmdline, "fake-blockstats=hostile");
		for (int i = 1; i + 1 < argc && vm_ndisks < FAKE_DISKS; i++)
			if (!strcmp(argv[i], "--disk"))
				vm_disks[vm_ndisks++] = argv[i + 1];
		cd_start(opt_after(argc, argv, "--cdrom"));
		const char *incoming = opt_after(argc, argv, "--incoming");
		if (incoming && !strcmp(incoming, "defer"))
			snprintf(run_status, sizeof(run_status), "inmigrate");
		else if (incoming)
			load_incoming(incoming);
	}
	if (vm)
		return supervise(opt_after(argc, argv, "--qmp"),
				 opt_after(argc, argv, "--console-socket"), true);
	if (argc < 2)
		kvz_die("usage: kvz-ct create|run|destroy|exec ...");
	const char *name = opt_after(argc, argv, "--name");
	const char *root = opt_after(argc, argv, "--ct-root");
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/%s", root ? root : "/tmp", name ? name : "x");
	if (!strcmp(argv[1], "create")) {
		/* A name starting with "fail" makes creation fail half-way, to
		 * test that kvzd leaves nothing behind. */
		if (mkdir(dir, 0755) < 0)
			kvz_die("mkdir %s: %s", dir, strerror(errno));
		if (!strncmp(name, "fail", 4))
			kvz_die("template unpacking failed (fake)");
		/* "slow..." takes a while, like a debian template does. */
		if (!strncmp(name, "slow", 4))
			sleep(5);
		/* The id range kvz-ct create records; kvzd keeps it. */
		char idmap[600];
		snprintf(idmap, sizeof(idmap), "%s/idmap", dir);
		FILE *f = fopen(idmap, "w");
		if (!f || fputs("{\"uid\": 524288, \"gid\": 524288, \"count\": 65536}\n", f) < 0 ||
		    fclose(f) != 0)
			kvz_die("cannot write %s", idmap);
		/* The private area: a few bytes the backup tests change. */
		snprintf(idmap, sizeof(idmap), "%s/private.img", dir);
		f = fopen(idmap, "w");
		if (!f || fputs("created\n", f) < 0 || fclose(f) != 0)
			kvz_die("cannot write %s", idmap);
		return 0;
	}
	if (!strcmp(argv[1], "destroy")) {
		char idmap[600];
		const char *files[] = {"idmap", "private.img", "private.img.prev", "fake-backup-slow",
				       "fake-backup-fail"};
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
			snprintf(idmap, sizeof(idmap), "%s/%s", dir, files[i]);
			unlink(idmap);
		}
		rmdir(dir);
		return 0;
	}
	if (!strcmp(argv[1], "backup"))
		return fake_backup(dir, opt_after(argc, argv, "--output"));
	if (!strcmp(argv[1], "restore"))
		return fake_restore(dir, opt_after(argc, argv, "--input"));
	if (!strcmp(argv[1], "run")) {
		const char *mem = opt_after(argc, argv, "--memory");
		if (mem)
			snprintf(memory_setting, sizeof(memory_setting), "%s", mem);
		if (ha_disk_start(argc, argv, root))
			return 3;
		return supervise(opt_after(argc, argv, "--qmp"),
				 opt_after(argc, argv, "--console-socket"), false);
	}
	if (!strcmp(argv[1], "exec")) {
		for (int i = 2; i < argc; i++)
			if (!strcmp(argv[i], "--") && i + 1 < argc) {
				execvp(argv[i + 1], argv + i + 1);
				kvz_die("exec %s: %s", argv[i + 1], strerror(errno));
			}
		kvz_die("exec: no command");
	}
	kvz_die("unknown subcommand %s", argv[1]);
}
