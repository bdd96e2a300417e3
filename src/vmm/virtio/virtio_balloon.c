/* virtio-balloon. The host sets num_pages in config space; the guest
 * inflates by sending page frame numbers (4 KiB pages) on the inflate
 * queue, which we hand back to the host with guest_mem_discard() so the
 * VMM's RSS falls; deflated pages need no work (they fault back in as
 * zeros). The guest keeps one statistics buffer queued: we read it when it
 * arrives and give it back when we want fresher numbers. */
#include "virtio_balloon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest_mem.h"
#include "log.h"
#include "state/state_buf.h"
#include "qmp_server.h"

#define VIRTIO_BALLOON_F_MUST_TELL_HOST 0
#define VIRTIO_BALLOON_F_STATS_VQ       1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM 2

#define Q_INFLATE 0
#define Q_DEFLATE 1
#define Q_STATS   2

#define PAGE 4096u
#define QUEUE_SIZE 128
/* Linux sends at most 256 frame numbers per buffer and a dozen statistics;
 * a buffer claiming far more (up to all of guest RAM) would keep the I/O
 * thread busy for minutes, so the excess is ignored. */
#define MAX_PFNS_PER_BUFFER 65536
#define MAX_STATS_PER_BUFFER 64

/* QEMU's names for the statistics tags, by tag number. */
static const char *const stat_names[VIRTIO_BALLOON_NSTATS] = {
	"stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
	"stat-free-memory", "stat-total-memory", "stat-available-memory",
	"stat-disk-caches", "stat-htlb-pgalloc", "stat-htlb-pgfail",
};

static uint32_t get32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++, v >>= 8)
		p[i] = v;
}

static void discard_run(struct virtio_balloon *b, uint64_t pfn, uint64_t n)
{
	int r = guest_mem_discard(b->vp.ctx->mem, pfn * PAGE, n * PAGE);

	/* A PFN outside RAM is the guest's mistake; its page stays where it is. */
	if (r < 0)
		kvz_debug("virtio balloon: discard pfn %#llx+%llu: %s",
			  (unsigned long long)pfn, (unsigned long long)n, strerror(-r));
	else
		b->discarded_pages += n;
}

/* Gives back the pages named in the element, coalescing runs of
 * consecutive frames into one discard. */
static void inflate(struct virtio_balloon *b)
{
	struct virtq_elem *e = &b->elem;
	uint64_t run_start = 0, run_len = 0;
	uint32_t pfns[256];
	uint64_t len = e->out_len < MAX_PFNS_PER_BUFFER * 4 ? e->out_len : MAX_PFNS_PER_BUFFER * 4;

	for (uint64_t off = 0; off + 4 <= len; off += sizeof(pfns)) {
		size_t want = len - off < sizeof(pfns) ? len - off : sizeof(pfns);
		size_t got = virtq_iov_to_buf(e->iov, e->nout, off, pfns, want) / 4;
		for (size_t i = 0; i < got; i++) {
			uint64_t pfn = pfns[i];
			if (run_len && pfn == run_start + run_len) {
				run_len++;
				continue;
			}
			if (run_len)
				discard_run(b, run_start, run_len);
			run_start = pfn;
			run_len = 1;
		}
	}
	if (run_len)
		discard_run(b, run_start, run_len);
}

static void read_stats(struct virtio_balloon *b)
{
	struct virtq_elem *e = &b->elem;
	uint8_t rec[10];  /* le16 tag, le64 value, packed */

	uint64_t len = e->out_len < MAX_STATS_PER_BUFFER * sizeof(rec) ? e->out_len
								 : MAX_STATS_PER_BUFFER * sizeof(rec);

	for (uint64_t off = 0; off + sizeof(rec) <= len; off += sizeof(rec)) {
		virtq_iov_to_buf(e->iov, e->nout, off, rec, sizeof(rec));
		uint16_t tag = rec[0] | rec[1] << 8;
		uint64_t v = 0;
		for (int i = 9; i >= 2; i--)
			v = v << 8 | rec[i];
		if (tag >= VIRTIO_BALLOON_NSTATS)
			continue;  /* newer tags we do not know */
		b->stats[tag] = v;
		b->stats_valid |= 1u << tag;
	}
}

static void balloon_queue_notify(void *dev, struct virtio_pci *vp, unsigned q)
{
	struct virtio_balloon *b = dev;
	struct virtq *vq = &vp->vq[q];

	do {
		int r;
		while ((r = virtq_pop(vq, &b->elem)) > 0) {
			if (q == Q_STATS) {
				/* Held until we want new numbers; a second buffer
				 * while we hold one returns the older one. */
				if (b->stats_held)
					virtq_push(vq, b->stats_head, 0);
				read_stats(b);
				b->stats_head = b->elem.head;
				b->stats_held = true;
				continue;
			}
			if (q == Q_INFLATE)
				inflate(b);
			virtq_push(vq, b->elem.head, 0);
		}
		virtio_pci_queue_done(vp, q);
		if (r < 0) {
			virtio_pci_queue_broken(vp, q);
			return;
		}
	} while (virtq_rearm(vq));
}

static void balloon_config_written(void *dev, struct virtio_pci *vp, uint32_t off, unsigned len)
{
	struct virtio_balloon *b = dev;
	(void)vp;

	/* Only "actual" (bytes 4-7) is the driver's; num_pages is ours. */
	put32(b->config, b->target_pages);
	if (off + len <= 4)
		return;
	uint32_t actual = get32(b->config + 4);
	if (actual == b->actual_pages)
		return;
	b->actual_pages = actual;
	b->actual_changed = true;
}

/* BALLOON_CHANGE for the last "actual" the driver wrote, sent with the
 * device lock released (the lock order in docs/architecture.md). */
static void balloon_after_write(void *dev, struct virtio_pci *vp)
{
	struct virtio_balloon *b = dev;

	pthread_mutex_lock(&vp->lock);
	bool changed = b->actual_changed;
	uint64_t given = (uint64_t)b->actual_pages * PAGE;
	b->actual_changed = false;
	pthread_mutex_unlock(&vp->lock);
	struct qmp_server *qmp = __atomic_load_n(&b->qmp, __ATOMIC_ACQUIRE);
	if (!changed || !qmp)
		return;
	uint64_t ram = vp->ctx->mem->size;
	qmp_server_emit(qmp, "BALLOON_CHANGE",
			json_pack("{s:I}", "actual", (json_int_t)(given < ram ? ram - given : 0)));
}

static void balloon_reset(void *dev, struct virtio_pci *vp)
{
	struct virtio_balloon *b = dev;
	(void)vp;

	/* The target survives a reset (it is the host's wish); what the guest
	 * had given is gone with its driver. */
	b->actual_pages = 0;
	b->actual_changed = false;
	b->stats_held = false;
	b->stats_valid = 0;
	put32(b->config, b->target_pages);
	put32(b->config + 4, 0);
}

/* Snapshot state beyond the config bytes: the host's target, what the
 * guest gave, its last statistics and the statistics buffer we hold. */
static void balloon_save(void *dev, struct virtio_pci *vp, struct state_buf *out)
{
	struct virtio_balloon *b = dev;
	(void)vp;

	state_put_u32(out, b->target_pages);
	state_put_u32(out, b->actual_pages);
	for (unsigned i = 0; i < VIRTIO_BALLOON_NSTATS; i++)
		state_put_u64(out, b->stats[i]);
	state_put_u16(out, b->stats_valid);
	state_put_u8(out, b->stats_held);
	state_put_u16(out, b->stats_head);
	state_put_u64(out, b->discarded_pages);
}

static int balloon_load(void *dev, struct virtio_pci *vp, struct state_cursor *in,
			uint32_t version, char *err, size_t errlen)
{
	struct virtio_balloon *b = dev;
	(void)version;   /* one layout */

	uint32_t target = state_get_u32(in);
	uint32_t actual = state_get_u32(in);
	for (unsigned i = 0; i < VIRTIO_BALLOON_NSTATS; i++)
		b->stats[i] = state_get_u64(in);
	b->stats_valid = state_get_u16(in) & ((1u << VIRTIO_BALLOON_NSTATS) - 1);
	bool held = state_get_bool(in);
	uint16_t head = state_get_u16(in);
	b->discarded_pages = state_get_u64(in);
	uint64_t pages = vp->ctx->mem->size / 4096;
	if (target > pages || actual > pages || (held && head >= vp->vq[2].size)) {
		snprintf(err, errlen, "balloon: page counts or statistics buffer out of range");
		return -1;
	}
	b->target_pages = target;
	b->actual_pages = actual;
	b->stats_held = held;
	b->stats_head = head;
	return 0;
}

/* Machine pause: a query-balloon meanwhile must not write the used ring
 * (nothing touches guest RAM while paused, and a snapshot may be being
 * written); the buffer goes back at the first query after the resume. */
static void balloon_pause(void *dev, struct virtio_pci *vp)
{
	struct virtio_balloon *b = dev;
	(void)vp;
	b->paused = true;
}

static void balloon_resume(void *dev, struct virtio_pci *vp)
{
	struct virtio_balloon *b = dev;
	(void)vp;
	b->paused = false;
}

static const struct virtio_dev_ops balloon_ops = {
	.queue_notify = balloon_queue_notify,
	.config_written = balloon_config_written,
	.reset = balloon_reset,
	.after_write = balloon_after_write,
	.save = balloon_save,
	.load = balloon_load,
	.pause = balloon_pause,
	.resume = balloon_resume,
};

struct virtio_balloon *virtio_balloon_create(const struct vmm_context *ctx, bool deflate_on_oom,
					     char *err, size_t errlen)
{
	struct virtio_balloon *b = calloc(1, sizeof(*b));

	if (!b) {
		snprintf(err, errlen, "balloon: out of memory");
		return NULL;
	}
	struct virtio_pci_params p = {
		.device_id = VIRTIO_ID_BALLOON,
		.class_code = 0x050000,   /* memory controller, RAM */
		.features = 1ull << VIRTIO_BALLOON_F_STATS_VQ |
			    (uint64_t)deflate_on_oom << VIRTIO_BALLOON_F_DEFLATE_ON_OOM,
		.nqueues = 3,
		.queue_size = QUEUE_SIZE,
		.config = b->config,
		.config_len = sizeof(b->config),
		.ops = &balloon_ops,
		.dev = b,
	};
	if (virtio_pci_init(&b->vp, ctx, &p, "balloon", err, errlen) < 0) {
		free(b);
		return NULL;
	}
	return b;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	if (!b)
		return;
	virtio_pci_destroy(&b->vp);
	free(b);
}

void virtio_balloon_set_qmp(struct virtio_balloon *b, struct qmp_server *qmp)
{
	__atomic_store_n(&b->qmp, qmp, __ATOMIC_RELEASE);
}

int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t bytes, char *err, size_t errlen)
{
	uint64_t ram = b->vp.ctx->mem->size;

	if (bytes == 0) {
		snprintf(err, errlen, "Parameter 'value' expects a size above zero");
		return -1;
	}
	if (bytes > ram)
		bytes = ram;
	pthread_mutex_lock(&b->vp.lock);
	b->target_pages = (ram - bytes) / PAGE;
	put32(b->config, b->target_pages);
	virtio_pci_config_changed(&b->vp);
	pthread_mutex_unlock(&b->vp.lock);
	return 0;
}

json_t *virtio_balloon_query(struct virtio_balloon *b)
{
	uint64_t ram = b->vp.ctx->mem->size;

	pthread_mutex_lock(&b->vp.lock);
	uint64_t given = (uint64_t)b->actual_pages * PAGE;
	json_t *o = json_pack("{s:I}", "actual", (json_int_t)(given < ram ? ram - given : 0));
	for (unsigned t = 0; o && t < VIRTIO_BALLOON_NSTATS; t++)
		if (b->stats_valid >> t & 1)
			json_object_set_new(o, stat_names[t], json_integer((json_int_t)b->stats[t]));
	/* Hand the stats buffer back: the guest refills it and queues it again. */
	struct virtq *vq = &b->vp.vq[Q_STATS];
	if (b->stats_held && !b->paused && vq->enabled && !vq->broken) {
		b->stats_held = false;
		virtq_push(vq, b->stats_head, 0);
		virtio_pci_queue_done(&b->vp, Q_STATS);
	}
	pthread_mutex_unlock(&b->vp.lock);
	return o;
}
