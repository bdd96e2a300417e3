#include "migration_live.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dirty_log.h"
#include "migration.h"
#include "migration_disk.h"
#include "snapshot.h"
#include "state/migration_stream.h"
#include "state/state_registry.h"
#include "vm_internal.h"

#define MAX_PASSES 30           /* then stop-and-copy whatever is left */
#define THROTTLE_MAX 99
/* Pages per KVM_CLEAR_DIRTY_LOG (16 MiB, a multiple of 64): small enough
 * that the write-protection faults a clear causes are spread over the
 * pass instead of all RAM's at once, large enough that a pass over a few
 * GiB makes only hundreds of ioctls. */
#define CLEAR_CHUNK_PAGES 4096u

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

#define STAT_SET(m, field, v) __atomic_store_n(&(m)->stats.field, (v), __ATOMIC_RELAXED)
#define PARAM(m, field) __atomic_load_n(&(m)->params.field, __ATOMIC_RELAXED)

struct live {
	struct migration *m;
	struct mig_disks *disks;   /* NULL: the disks stay (shared storage) */
	uint64_t start_ms;
	uint64_t throttle_at_ms;   /* next duty-cycle pause */
	bool vm_paused;            /* stop-and-copy: no throttling */
	bool final;                /* stop-and-copy: no bandwidth limit */
};

/* Auto-converge: the vCPUs lose pct% of their time, as pauses of pct ms
 * every 100 ms, so that the guest dirties slower than the link sends. */
static void throttle(struct live *l)
{
	uint64_t pct = __atomic_load_n(&l->m->stats.throttle_pct, __ATOMIC_RELAXED);
	uint64_t now = now_ms();
	/* Never on a machine someone else paused: resuming it would undo that. */
	if (!pct || l->vm_paused || now < l->throttle_at_ms || vm_run_state(l->m->vm) != VM_RUNNING)
		return;
	if (vm_pause(l->m->vm)) {
		sleep_ms(pct);
		vm_resume(l->m->vm);
	}
	l->throttle_at_ms = now_ms() + (100 - pct);
}

static int tick(void *opaque, const struct mig_counts *c)
{
	struct live *l = opaque;
	struct migration *m = l->m;
	STAT_SET(m, transferred, c->bytes);
	STAT_SET(m, normal, c->normal);
	STAT_SET(m, duplicate, c->duplicate);
	STAT_SET(m, disk_transferred, c->disk_bytes);
	__atomic_store_n(&m->progress.done, c->bytes, __ATOMIC_RELAXED);
	uint64_t elapsed = now_ms() - l->start_ms;
	if (elapsed)
		STAT_SET(m, mbps, c->bytes * 8 / 1000 / elapsed);
	/* max-bandwidth: never ahead of bytes / bw. Re-read every 50 ms so that
	 * a migrate-set-parameters (or a cancel) takes effect at once, as in
	 * QEMU, rather than after a wait computed from the old limit. Not in
	 * stop-and-copy: the guest is paused, every wait is downtime (QEMU's
	 * final RAM pass ignores the limit too). */
	while (!l->final) {
		uint64_t bw = PARAM(m, max_bandwidth);
		if (!bw || __atomic_load_n(&m->progress.cancel, __ATOMIC_RELAXED))
			break;
		uint64_t due_ms = c->bytes * 1000 / bw;
		elapsed = now_ms() - l->start_ms;
		if (due_ms <= elapsed)
			break;
		sleep_ms(due_ms - elapsed > 50 ? 50 : due_ms - elapsed);
	}
	throttle(l);
	return __atomic_load_n(&m->progress.cancel, __ATOMIC_RELAXED);
}

static uint64_t count_bits(const uint64_t *b, uint64_t words)
{
	uint64_t n = 0;
	for (uint64_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(b[i]);
	return n;
}

static int stream_section(void *w, const struct state_entry *e, const void *data, size_t len,
			  char *err, size_t errlen)
{
	return mig_writer_section(w, e, data, len, err, errlen);
}

/* Whether to stop and copy now. Fitting downtime-limit is the condition
 * and the limit a ceiling, not a target: while a pass still halves what is
 * dirty, one more is cheap and shortens the pause; once it no longer does
 * (the guest dirties as fast as the link sends), or the pause would be a
 * few milliseconds anyway, more passes only send the same pages again. */
static bool enough(uint64_t expected_ms, uint64_t limit_ms, uint64_t dirty, uint64_t prev_dirty)
{
	if (expected_ms > limit_ms)
		return false;
	return expected_ms <= limit_ms / 16 || dirty > prev_dirty / 2;
}

/* The pages set in bitmap, chunk by chunk; with clear, each chunk's dirty
 * bits in KVM cleared (manual mode) right before its pages are read.
 * Correctness: a page the guest writes after its chunk's clear is marked
 * dirty again and shows up in the next sync, so a page is never sent older
 * than its last write without being sent again; clearing before the read
 * (not after) is what guarantees that, and clearing only the bits in
 * bitmap keeps those of pages dirtied since the sync that are not sent now.
 * In the pause (stop-and-copy) nothing needs clearing. */
static int send_pages(struct vm *vm, struct mig_writer *w, const uint64_t *bitmap, bool clear,
		      char *err, size_t errlen)
{
	uint64_t pages = vm->mem.size / 4096;
	for (uint64_t first = 0; first < pages; first += CLEAR_CHUNK_PAGES) {
		uint64_t n = pages - first < CLEAR_CHUNK_PAGES ? pages - first : CLEAR_CHUNK_PAGES;
		if (clear && dirty_log_clear(vm, bitmap, first, n, err, errlen) < 0)
			return -1;
		if (mig_writer_page_range(w, vm->mem.host, first, n, bitmap, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* One pre-copy pass: bitmap's pages (cleared chunk by chunk), the disks'
 * dirty chunks, and a flush, so that the pass is on the wire before the
 * next sync: otherwise a small guest's whole first pass would wait in the
 * buffer for stop-and-copy (downtime) and the pass's measured bandwidth
 * would be nil. */
static int send_pass(struct live *l, struct mig_writer *w, const uint64_t *bitmap, char *err,
		     size_t errlen)
{
	if (send_pages(l->m->vm, w, bitmap, true, err, errlen) < 0 ||
	    (l->disks && mig_disks_send(l->disks, w, err, errlen) < 0))
		return -1;
	return mig_writer_flush(w, err, errlen);
}

/* Every page of RAM: the first pass's bitmap. */
static void set_all(uint64_t *bitmap, uint64_t pages)
{
	memset(bitmap, 0xff, pages / 64 * sizeof(uint64_t));
	if (pages % 64)
		bitmap[pages / 64] = (UINT64_C(1) << (pages % 64)) - 1;
}

/* Pre-copy passes: the first sends all RAM, each later one what the last
 * dirtied, until enough() (or MAX_PASSES). Leaves the unsent dirty pages
 * in bitmap. */
static int precopy(struct live *l, struct mig_writer *w, uint64_t *bitmap, char *err, size_t errlen)
{
	struct migration *m = l->m;
	struct vm *vm = m->vm;
	uint64_t words = guest_mem_bitmap_words(&vm->mem);
	uint64_t t = now_ms(), sent = w->counts.bytes;
	set_all(bitmap, vm->mem.size / 4096);
	if (send_pass(l, w, bitmap, err, errlen) < 0)
		return -1;
	uint64_t prev_dirty = UINT64_MAX;
	for (unsigned pass = 1;; pass++) {
		uint64_t pass_ms = now_ms() - t + 1, pass_bytes = w->counts.bytes - sent;
		uint64_t bw = pass_bytes * 1000 / pass_ms + 1;   /* bytes/s */
		memset(bitmap, 0, words * sizeof(uint64_t));
		if (dirty_log_sync(vm, bitmap, err, errlen) < 0)
			return -1;
		uint64_t dirty = count_bits(bitmap, words) * 4096;
		STAT_SET(m, dirty_sync_count, pass);
		STAT_SET(m, remaining, dirty);
		if (l->disks) {   /* the disk's dirty chunks go in the same pause */
			mig_disks_collect(l->disks);
			uint64_t disk_dirty = mig_disks_remaining(l->disks);
			STAT_SET(m, disk_remaining, disk_dirty);
			dirty += disk_dirty;
		}
		STAT_SET(m, dirty_pages_rate, dirty / 4096 * 1000 / pass_ms);
		uint64_t expected = dirty * 1000 / bw;
		STAT_SET(m, expected_downtime, expected);
		__atomic_store_n(&m->progress.total, w->counts.bytes + dirty, __ATOMIC_RELAXED);
		if (pass >= MAX_PASSES || enough(expected, PARAM(m, downtime_limit_ms), dirty, prev_dirty))
			return 0;
		if (PARAM(m, auto_converge) && pass >= 2 && dirty >= prev_dirty / 2) {
			uint64_t pct = m->stats.throttle_pct ? m->stats.throttle_pct + PARAM(m, throttle_increment)
							     : PARAM(m, throttle_initial);
			STAT_SET(m, throttle_pct, pct > THROTTLE_MAX ? THROTTLE_MAX : pct);
		}
		prev_dirty = dirty;
		t = now_ms();
		sent = w->counts.bytes;
		if (send_pass(l, w, bitmap, err, errlen) < 0)
			return -1;
	}
}

/* Stop-and-copy: the machine paused, the last dirty pages, every device's
 * state, the end record. */
static int stop_and_copy(struct live *l, struct mig_writer *w, uint64_t *bitmap, bool was_running,
			 char *err, size_t errlen)
{
	struct migration *m = l->m;
	struct vm *vm = m->vm;
	uint64_t t = now_ms();
	if (was_running) {
		if (!vm_pause(vm)) {
			snprintf(err, errlen, "the machine is shutting down");
			return -1;
		}
		l->vm_paused = true;
		migration_emit(m, "STOP");
	}
	migration_set_status(m, MIG_DEVICE, NULL);
	l->final = true;
	uint64_t paused_at = w->counts.bytes;
	STAT_SET(m, precopy_bytes, paused_at);
	/* The state as it paused: the target's kvmclock and TSCs continue from
	 * here, not from after the last pages went out. */
	struct state_buf cap;
	state_buf_init(&cap);
	int rc = snapshot_capture(vm, &cap, err, errlen);
	if (rc == 0)
		rc = dirty_log_sync(vm, bitmap, err, errlen);
	if (rc == 0)
		rc = send_pages(vm, w, bitmap, false, err, errlen);
	/* Paused: the disks' queues are drained and quiesced, so what is
	 * dirty now is all there is. */
	if (rc == 0 && l->disks) {
		mig_disks_collect(l->disks);
		rc = mig_disks_send(l->disks, w, err, errlen);
		STAT_SET(m, disk_remaining, 0);
	}
	if (rc == 0)
		rc = snapshot_replay(&cap, stream_section, w, err, errlen);
	state_buf_free(&cap);
	if (rc == 0)
		rc = mig_writer_end(w, err, errlen);
	STAT_SET(m, downtime, now_ms() - t);
	STAT_SET(m, downtime_bytes, w->counts.bytes - paused_at);
	STAT_SET(m, remaining, 0);
	STAT_SET(m, disk_transferred, w->counts.disk_bytes);
	__atomic_store_n(&m->progress.total, w->counts.bytes, __ATOMIC_RELAXED);
	return rc;
}

/* Tracking the disks' writes from before their first pass. */
static int start_disks(struct migration *m, struct mig_disks *disks, char *err, size_t errlen)
{
	struct blk_backend *b[MIG_DISK_MAX];
	unsigned n = migration_get_disks(m, b);
	if (mig_disks_start(disks, b, n, err, errlen) < 0)
		return -1;
	STAT_SET(m, disk_total, disks->total);
	STAT_SET(m, disk_remaining, disks->total);
	return 0;
}

void *live_job(struct migration *m)
{
	char err[512] = "";
	struct vm *vm = m->vm;
	struct live l = { .m = m, .start_ms = now_ms() };
	STAT_SET(m, live, true);
	bool was_running = vm_run_state(vm) == VM_RUNNING;
	uint64_t *bitmap = calloc(guest_mem_bitmap_words(&vm->mem), sizeof(uint64_t));
	struct mig_writer w;
	struct mig_disks disks = {0};
	int rc = bitmap ? 0 : -1;
	if (!bitmap)
		snprintf(err, sizeof(err), "out of memory");
	if (rc == 0)
		rc = dirty_log_start(vm, err, sizeof(err));
	bool logging = rc == 0;
	if (rc == 0 && m->copy_storage)
		rc = start_disks(m, &disks, err, sizeof(err));
	if (rc == 0 && m->copy_storage)
		l.disks = &disks;
	if (rc == 0)
		rc = mig_writer_begin(&w, m->fd, vm->mem.size, tick, &l, err, sizeof(err));
	if (rc == 0 && l.disks)
		rc = mig_disks_declare(l.disks, &w, err, sizeof(err));
	if (rc == 0) {
		__atomic_store_n(&m->progress.total, vm->mem.size + disks.total, __ATOMIC_RELAXED);
		STAT_SET(m, setup_time, now_ms() - l.start_ms);
		migration_set_status(m, MIG_ACTIVE, NULL);
		rc = precopy(&l, &w, bitmap, err, sizeof(err));
		if (rc == 0)
			rc = stop_and_copy(&l, &w, bitmap, was_running, err, sizeof(err));
		mig_writer_free(&w);
	}
	if (logging)
		dirty_log_stop(vm);
	mig_disks_stop(&disks);
	free(bitmap);
	STAT_SET(m, throttle_pct, 0);
	STAT_SET(m, total_time, now_ms() - l.start_ms);
	/* Resume on failure only if this job paused the machine. */
	return migration_job_end(m, rc, l.vm_paused, err);
}

int live_incoming(struct vm *vm, struct migration *m, int fd, char *err, size_t errlen)
{
	uint64_t t = now_ms();
	STAT_SET(m, live, true);
	migration_set_status(m, MIG_ACTIVE, NULL);
	struct snap_sections s = {0};
	char why[400] = "";
	struct mig_disk_sink sink;
	struct blk_backend *b[MIG_DISK_MAX];
	unsigned n = migration_get_disks(m, b);
	int rc = mig_disk_sink_init(&sink, b, n, why, sizeof(why));
	if (rc == 0)
		rc = mig_read_stream(fd, vm->mem.host, vm->mem.size, &sink, &s, &m->progress.done, why,
				     sizeof(why));
	mig_disk_sink_free(&sink);
	if (rc == 0)
		rc = snap_sections_apply(&s, vm->registry, why, sizeof(why));
	snap_sections_free(&s);
	STAT_SET(m, total_time, now_ms() - t);
	STAT_SET(m, transferred, __atomic_load_n(&m->progress.done, __ATOMIC_RELAXED));
	if (rc < 0) {
		snprintf(err, errlen, "incoming migration: %s", why);
		migration_set_status(m, MIG_FAILED, err);
		return -1;
	}
	migration_set_status(m, MIG_COMPLETED, NULL);
	migration_clear_postmigrate(m);   /* the target runs: not a source's pause */
	return 0;
}
