/* virtio-blk: request parsing and completion (see virtio_blk.h). The data
 * moves in the block layer; this file turns descriptor chains into
 * struct blk_req and completions back into used-ring entries.
 *
 * Locks: vp.lock (the transport's) before a queue's lock before the
 * backend's. A queue's lock is held by its I/O thread while it pops,
 * submits and reaps (none of which waits for a disk with io_uring: raw's
 * writes, done inline, are copies into the page cache), and
 * by the control path (reset, pause, destroy, under vp.lock) while it stops
 * the queue and drains what is in flight. The queue thread never takes
 * vp.lock while holding its own. */
#include "virtio_blk.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "io_thread.h"
#include "log.h"

#define VIRTIO_BLK_F_SEG_MAX      2
#define VIRTIO_BLK_F_RO           5
#define VIRTIO_BLK_F_BLK_SIZE     6
#define VIRTIO_BLK_F_FLUSH        9
#define VIRTIO_BLK_F_MQ           12
#define VIRTIO_BLK_F_DISCARD      13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VIRTIO_BLK_T_IN           0
#define VIRTIO_BLK_T_OUT          1
#define VIRTIO_BLK_T_FLUSH        4
#define VIRTIO_BLK_T_GET_ID       8
#define VIRTIO_BLK_T_DISCARD      11
#define VIRTIO_BLK_T_WRITE_ZEROES 13

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define SECTOR 512u
#define QUEUE_SIZE 256
#define SEG_MAX (QUEUE_SIZE - 2)
#define SLOT_SEGS (SEG_MAX + 2)     /* data segments one request may carry */
#define MAX_DISCARD_SECTORS (1u << 22)
#define MAX_DISCARD_SEG 16

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct blk_discard_seg {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};

/* One request in flight. */
struct blk_slot {
	struct blk_req req;
	struct blk_queue *q;
	uint16_t head;
	uint32_t type;
	uint8_t *status;            /* the chain's last device-writable byte */
	struct blk_discard_seg segs[MAX_DISCARD_SEG];
	unsigned nsegs, seg;        /* discard/write-zeroes: done one by one */
	struct iovec iov[SLOT_SEGS];
	struct blk_slot *next_free;
};

struct blk_queue {
	struct virtio_blk *b;
	unsigned index;
	struct io_thread *thread;
	struct blk_aio *aio;
	/* Guards everything below and the queue's virtq while it is served. */
	pthread_mutex_t lock;
	bool running;               /* pops new requests */
	bool report_broken;         /* malformed chain: tell the transport */
	int kick_fd;                /* watched by thread; -1 when not offloaded */
	atomic_int call_fd;         /* interrupt eventfd (transport's choice) */
	unsigned inflight;
	unsigned completed;         /* pushed since the last interrupt decision */
	struct blk_slot *free;
	struct blk_slot *slots;     /* QUEUE_SIZE of them */
	struct virtio_blk_stats stats;
	struct virtq_elem elem;     /* the chain being parsed */
};

static struct virtq *vq_of(struct blk_queue *q)
{
	return &q->b->vp.vq[q->index];
}

/* Builds in dst (room for max) the part [skip, skip + len) of src.
 * Returns the count, or -1 when it needs more than max segments. */
static int iov_slice(const struct iovec *src, unsigned n, uint64_t skip, uint64_t len,
		     struct iovec *dst, unsigned max)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len; i++) {
		if (skip >= src[i].iov_len) {
			skip -= src[i].iov_len;
			continue;
		}
		if (k == max)
			return -1;
		size_t chunk = src[i].iov_len - skip;
		if (chunk > len)
			chunk = len;
		dst[k++] = (struct iovec){ (uint8_t *)src[i].iov_base + skip, chunk };
		len -= chunk;
		skip = 0;
	}
	return (int)k;
}

static uint8_t *status_byte(const struct virtq_elem *e)
{
	for (unsigned i = e->nout + e->nin; i-- > e->nout;)
		if (e->iov[i].iov_len)
			return (uint8_t *)e->iov[i].iov_base + e->iov[i].iov_len - 1;
	return NULL;
}

static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t nsec = bytes / SECTOR + (bytes % SECTOR != 0);

	return sector <= b->sectors && nsec <= b->sectors - sector;
}

/* ---- completion (queue lock held) ---- */

static void signal_if_needed(struct blk_queue *q)
{
	if (!q->completed)
		return;
	q->completed = 0;
	if (!virtq_need_interrupt(vq_of(q)))
		return;
	int fd = atomic_load(&q->call_fd);
	q->stats.interrupts++;
	if (fd >= 0 && eventfd_write(fd, 1) < 0)
		kvz_warn("virtio %s: queue %u: interrupt: %s", q->b->name, q->index, strerror(errno));
}

static void count(struct blk_queue *q, const struct blk_slot *s, uint8_t status)
{
	if (status != VIRTIO_BLK_S_OK)
		return;
	switch (s->type) {
	case VIRTIO_BLK_T_IN:
		q->stats.rd_bytes += s->req.len;
		q->stats.rd_ops++;
		break;
	case VIRTIO_BLK_T_OUT:
		q->stats.wr_bytes += s->req.len;
		q->stats.wr_ops++;
		break;
	case VIRTIO_BLK_T_FLUSH:
		q->stats.flush_ops++;
		break;
	}
}

/* written: bytes put into the chain's data buffers (reads, GET_ID). */
static void finish(struct blk_slot *s, uint8_t status, uint32_t written)
{
	struct blk_queue *q = s->q;

	*s->status = status;
	count(q, s, status);
	virtq_push(vq_of(q), s->head, written + 1);
	s->next_free = q->free;
	q->free = s;
	q->inflight--;
	q->completed++;
	q->stats.requests++;
}

static void rw_done(struct blk_req *req, int result)
{
	struct blk_slot *s = req->opaque;

	if (result < 0) {
		kvz_warn("virtio %s: %s at byte %llu: %s", s->q->b->name,
			 s->type == VIRTIO_BLK_T_FLUSH ? "flush" : s->type == VIRTIO_BLK_T_IN ? "read" : "write",
			 (unsigned long long)req->offset, strerror(-result));
		finish(s, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	finish(s, VIRTIO_BLK_S_OK, s->type == VIRTIO_BLK_T_IN ? (uint32_t)req->len : 0);
}

static void next_zero_seg(struct blk_slot *s);

static void zero_done(struct blk_req *req, int result)
{
	struct blk_slot *s = req->opaque;
	bool zeroes = s->type == VIRTIO_BLK_T_WRITE_ZEROES;

	if (result < 0) {
		kvz_warn("virtio %s: %s: %s", s->q->b->name, zeroes ? "write-zeroes" : "discard",
			 strerror(-result));
		finish(s, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	s->seg++;
	next_zero_seg(s);
}

static void next_zero_seg(struct blk_slot *s)
{
	if (s->seg == s->nsegs) {
		finish(s, VIRTIO_BLK_S_OK, 0);
		return;
	}
	const struct blk_discard_seg *g = &s->segs[s->seg];
	s->req = (struct blk_req){
		.op = s->type == VIRTIO_BLK_T_WRITE_ZEROES ? BLK_OP_WRITE_ZEROES : BLK_OP_DISCARD,
		.flags = g->flags & 1 ? BLK_REQ_UNMAP : 0,
		.offset = g->sector * SECTOR, .len = (uint64_t)g->num_sectors * SECTOR,
		.aio = s->q->aio, .done = zero_done, .opaque = s,
	};
	blk_submit(s->q->b->backend, &s->req);
}

/* ---- parsing (queue lock held) ---- */

static void start_rw(struct blk_slot *s, const struct blk_req_hdr *h)
{
	struct blk_queue *q = s->q;
	struct virtq_elem *e = &q->elem;
	bool write = h->type == VIRTIO_BLK_T_OUT;
	uint64_t len = write ? e->out_len - sizeof(*h) : e->in_len - 1;
	int n = write ? iov_slice(e->iov, e->nout, sizeof(*h), len, s->iov, SLOT_SEGS)
		      : iov_slice(e->iov + e->nout, e->nin, 0, len, s->iov, SLOT_SEGS);

	if (n < 0 || (write && q->b->readonly) || !in_range(q->b, h->sector, len)) {
		finish(s, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	s->req = (struct blk_req){
		.op = write ? BLK_OP_WRITE : BLK_OP_READ, .offset = h->sector * SECTOR, .len = len,
		.iov = s->iov, .niov = (unsigned)n, .aio = q->aio, .done = rw_done, .opaque = s,
	};
	blk_submit(q->b->backend, &s->req);
}

static void start_flush(struct blk_slot *s)
{
	s->req = (struct blk_req){ .op = BLK_OP_FLUSH, .aio = s->q->aio, .done = rw_done, .opaque = s };
	blk_submit(s->q->b->backend, &s->req);
}

static void start_zero(struct blk_slot *s)
{
	struct blk_queue *q = s->q;
	struct virtq_elem *e = &q->elem;
	uint64_t len = e->out_len - sizeof(struct blk_req_hdr);
	bool zeroes = s->type == VIRTIO_BLK_T_WRITE_ZEROES;

	if (q->b->readonly) {
		finish(s, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	if (len == 0 || len % sizeof(s->segs[0]) || len / sizeof(s->segs[0]) > MAX_DISCARD_SEG) {
		finish(s, VIRTIO_BLK_S_UNSUPP, 0);
		return;
	}
	s->nsegs = (unsigned)(len / sizeof(s->segs[0]));
	s->seg = 0;
	virtq_iov_to_buf(e->iov, e->nout, sizeof(struct blk_req_hdr), s->segs, len);
	for (unsigned i = 0; i < s->nsegs; i++) {
		const struct blk_discard_seg *g = &s->segs[i];
		if (g->num_sectors > MAX_DISCARD_SECTORS ||
		    !in_range(q->b, g->sector, (uint64_t)g->num_sectors * SECTOR) ||
		    (g->flags & ~1u) || (!zeroes && g->flags)) {
			finish(s, VIRTIO_BLK_S_UNSUPP, 0);
			return;
		}
	}
	next_zero_seg(s);
}

/* Starts q->elem. Returns -1 for a chain too malformed to answer (no
 * header or no status byte). */
static int start_request(struct blk_queue *q)
{
	struct virtq_elem *e = &q->elem;
	struct blk_req_hdr h;
	uint8_t *status = status_byte(e);

	if (e->out_len < sizeof(h) || e->in_len < 1 || !status)
		return -1;
	virtq_iov_to_buf(e->iov, e->nout, 0, &h, sizeof(h));
	struct blk_slot *s = q->free;
	q->free = s->next_free;
	if (++q->inflight > q->stats.max_inflight)
		q->stats.max_inflight = q->inflight;
	s->head = e->head;
	s->type = h.type;
	s->status = status;
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		start_rw(s, &h);
		break;
	case VIRTIO_BLK_T_FLUSH:
		start_flush(s);
		break;
	case VIRTIO_BLK_T_GET_ID: {
		size_t room = e->in_len - 1 < sizeof(q->b->serial) ? e->in_len - 1 : sizeof(q->b->serial);
		size_t n = virtq_buf_to_iov(e->iov + e->nout, e->nin, 0, q->b->serial, room);
		finish(s, VIRTIO_BLK_S_OK, (uint32_t)n);
		break;
	}
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		start_zero(s);
		break;
	default:
		finish(s, VIRTIO_BLK_S_UNSUPP, 0);
		break;
	}
	return 0;
}

/* Pops and starts requests while slots are free. Returns false when the
 * queue broke. */
static bool pop_all(struct blk_queue *q)
{
	struct virtq *vq = vq_of(q);

	do {
		while (q->free) {
			int r = virtq_pop(vq, &q->elem);
			if (r == 0)
				break;
			if (r < 0)
				return false;
			if (start_request(q) < 0) {
				snprintf(vq->error, sizeof(vq->error), "request without header or status byte");
				vq->broken = true;
				return false;
			}
		}
		blk_aio_flush_submissions(q->aio);
		/* A full table is served again as completions free slots. */
	} while (q->free && virtq_rearm(vq));
	return true;
}

/* ---- the queue's I/O thread ---- */

static void serve(struct blk_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->stats.passes++;
	blk_aio_poll(q->aio, false);
	if (q->running && !vq_of(q)->broken && !pop_all(q))
		q->report_broken = true;
	/* Requests served from the page cache completed inside the submit:
	 * pushed now, in this pass's one interrupt, not after a wake-up. */
	blk_aio_poll(q->aio, false);
	signal_if_needed(q);
	bool report = q->report_broken;
	q->report_broken = false;
	pthread_mutex_unlock(&q->lock);
	if (!report)
		return;
	/* Lock order: the transport's lock is never taken under ours. */
	struct virtio_pci *vp = &q->b->vp;
	pthread_mutex_lock(&vp->lock);
	if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && vq_of(q)->broken)
		virtio_pci_queue_broken(vp, q->index);
	pthread_mutex_unlock(&vp->lock);
}

static void on_kick(void *opaque, int fd, uint32_t events)
{
	eventfd_t v;

	(void)events;
	if (eventfd_read(fd, &v) < 0 && errno != EAGAIN)
		return;
	serve(opaque);
}

static void on_completion(void *opaque, int fd, uint32_t events)
{
	(void)fd;
	(void)events;
	serve(opaque);   /* blk_aio_poll clears the eventfd */
}

/* ---- control path (vp.lock held) ---- */

/* Stops popping and waits for everything in flight: afterwards the queue's
 * ring state is final (what a snapshot saves, what a reset discards). */
static void queue_hold(struct blk_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->running = false;
	while (q->inflight && blk_aio_in_flight(q->aio))
		blk_aio_poll(q->aio, true);
	if (q->inflight)
		kvz_warn("virtio %s: queue %u: %u requests lost by the backend", q->b->name, q->index,
			 q->inflight);
	signal_if_needed(q);
	pthread_mutex_unlock(&q->lock);
}

static void queue_release(struct blk_queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->running = q->kick_fd >= 0 && !q->b->paused;
	int fd = q->kick_fd;
	pthread_mutex_unlock(&q->lock);
	if (fd >= 0 && eventfd_write(fd, 1) < 0)   /* serve what arrived meanwhile */
		kvz_warn("virtio %s: queue %u: kick: %s", q->b->name, q->index, strerror(errno));
}

static void queue_start(struct virtio_blk *b, struct blk_queue *q)
{
	struct virtio_pci *vp = &b->vp;
	struct virtq *vq = vq_of(q);
	int kick_fd, call_fd;

	if (!vq->enabled || vq->broken || q->kick_fd >= 0)
		return;
	virtio_pci_offload_queue(vp, q->index, &kick_fd, &call_fd);
	atomic_store(&q->call_fd, call_fd);
	int r = io_thread_add(q->thread, kick_fd, EPOLLIN, on_kick, q);
	if (r < 0) {
		kvz_warn("virtio %s: queue %u: I/O thread: %s", b->name, q->index, strerror(-r));
		virtio_pci_unoffload_queue(vp, q->index);
		return;
	}
	pthread_mutex_lock(&q->lock);
	q->kick_fd = kick_fd;
	pthread_mutex_unlock(&q->lock);
	queue_release(q);
}

static void queue_stop(struct blk_queue *q)
{
	if (q->kick_fd < 0)
		return;
	queue_hold(q);
	io_thread_del(q->thread, q->kick_fd);
	pthread_mutex_lock(&q->lock);
	q->kick_fd = -1;
	pthread_mutex_unlock(&q->lock);
	atomic_store(&q->call_fd, -1);
}

static void blk_driver_ok(void *dev, struct virtio_pci *vp)
{
	struct virtio_blk *b = dev;

	(void)vp;
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_start(b, b->q[i]);
}

static void blk_reset(void *dev, struct virtio_pci *vp)
{
	struct virtio_blk *b = dev;

	(void)vp;
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_stop(b->q[i]);
}

static void blk_pause(void *dev, struct virtio_pci *vp)
{
	struct virtio_blk *b = dev;

	(void)vp;
	b->paused = true;
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_hold(b->q[i]);
	/* Drained: what the backend caches (qcow2 metadata) goes to the file,
	 * so that a paused VM's disk image is whole for kvzd to copy. */
	int r = blk_quiesce(b->backend);
	if (r < 0)
		kvz_warn("virtio %s: writing the image's metadata at pause: %s", b->name,
			 strerror(-r));
}

static void blk_resume(void *dev, struct virtio_pci *vp)
{
	struct virtio_blk *b = dev;
	char err[300];

	(void)vp;
	/* Dropped by a save (below): the machine writes again. */
	if (blk_lock(b->backend, true, b->name, err, sizeof(err)) < 0)
		kvz_warn("virtio %s: the image's lock at resume: %s", b->name, err);
	b->paused = false;
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_release(b->q[i]);
}

static void blk_call_fd_changed(void *dev, struct virtio_pci *vp, unsigned q, int fd)
{
	struct virtio_blk *b = dev;

	(void)vp;
	if (q < b->nqueues)
		atomic_store(&b->q[q]->call_fd, fd);
}

/* Every enabled queue is offloaded at DRIVER_OK; a kick the machine's I/O
 * thread still sees (a queue the driver never enabled) has nothing to do. */
static void blk_queue_notify(void *dev, struct virtio_pci *vp, unsigned q)
{
	(void)dev;
	(void)vp;
	(void)q;
}

/* The machine paused and its state saved (a migration's stop-and-copy, a
 * snapshot): its last write is in the image, so the lock goes, as QEMU
 * inactivates images, and the target on shared storage can take it at its
 * load. A resume (failure, cancel, cont) takes it back. */
static void blk_save(void *dev, struct virtio_pci *vp, struct state_buf *out)
{
	struct virtio_blk *b = dev;
	char err[300];

	(void)vp;
	(void)out;   /* nothing beyond the transport's */
	if (blk_lock(b->backend, false, b->name, err, sizeof(err)) < 0)
		kvz_warn("virtio %s: %s", b->name, err);
}

/* After the transport loaded the config bytes: the capacity the guest was
 * told (a block_resize before the save included) is the device's again,
 * provided the image holds it. The image's lock, deferred by an incoming
 * migration (virtio_blk_opts.lock_later), is taken now: the source dropped
 * it with its save; held elsewhere, the load fails. */
static int blk_load(void *dev, struct virtio_pci *vp, struct state_cursor *in,
		    uint32_t version, char *err, size_t errlen)
{
	struct virtio_blk *b = dev;
	(void)vp;
	(void)in;
	(void)version;   /* one layout */
	uint64_t sectors;
	memcpy(&sectors, b->config, sizeof(sectors));   /* capacity, offset 0 */
	sectors = le64toh(sectors);
	if (sectors > b->backend->size / SECTOR) {
		snprintf(err, errlen, "disk %s: the saved capacity (%llu sectors) is beyond the image's %llu bytes",
			 b->name, (unsigned long long)sectors, (unsigned long long)b->backend->size);
		return -1;
	}
	b->sectors = sectors;
	return blk_lock(b->backend, true, b->name, err, errlen);
}

static const struct virtio_dev_ops blk_ops = {
	.queue_notify = blk_queue_notify,
	.save = blk_save,
	.load = blk_load,
	.driver_ok = blk_driver_ok,
	.reset = blk_reset,
	.pause = blk_pause,
	.resume = blk_resume,
	.call_fd_changed = blk_call_fd_changed,
};

/* ---- creation ---- */

static void put_le(uint8_t *p, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static void build_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;

	put_le(c + 0x00, b->sectors, 8);
	put_le(c + 0x0c, SEG_MAX, 4);
	put_le(c + 0x14, SECTOR, 4);
	put_le(c + 0x22, b->nqueues, 2);          /* num_queues */
	put_le(c + 0x24, MAX_DISCARD_SECTORS, 4);
	put_le(c + 0x28, MAX_DISCARD_SEG, 4);
	put_le(c + 0x2c, 8, 4);                   /* discard alignment: 4 KiB */
	put_le(c + 0x30, MAX_DISCARD_SECTORS, 4);
	put_le(c + 0x34, MAX_DISCARD_SEG, 4);
	c[0x38] = 1;                              /* write_zeroes_may_unmap */
}

static void queue_free(struct blk_queue *q)
{
	if (!q)
		return;
	if (q->thread) {
		io_thread_stop(q->thread);   /* joined: no handler runs any more */
		if (q->aio && blk_aio_event_fd(q->aio) >= 0)
			io_thread_del(q->thread, blk_aio_event_fd(q->aio));
		io_thread_destroy(q->thread);
	}
	blk_aio_destroy(q->aio);
	pthread_mutex_destroy(&q->lock);
	free(q->slots);
	free(q);
}

static struct blk_queue *queue_new(struct virtio_blk *b, unsigned index, bool aio_sync,
				   char *err, size_t errlen)
{
	struct blk_queue *q = calloc(1, sizeof(*q));

	if (!q || pthread_mutex_init(&q->lock, NULL)) {
		free(q);
		snprintf(err, errlen, "disk %s: out of memory", b->name);
		return NULL;
	}
	q->b = b;
	q->index = index;
	q->kick_fd = -1;
	atomic_init(&q->call_fd, -1);
	q->slots = calloc(QUEUE_SIZE, sizeof(*q->slots));
	q->aio = blk_aio_create(QUEUE_SIZE, aio_sync, err, errlen);
	q->thread = io_thread_create();
	if (!q->slots || !q->aio || !q->thread) {
		if (q->aio && (!q->slots || !q->thread))
			snprintf(err, errlen, "disk %s: cannot create queue %u", b->name, index);
		queue_free(q);
		return NULL;
	}
	for (unsigned i = 0; i < QUEUE_SIZE; i++) {
		q->slots[i].q = q;
		q->slots[i].next_free = q->free;
		q->free = &q->slots[i];
	}
	int efd = blk_aio_event_fd(q->aio);
	int r = efd >= 0 ? io_thread_add(q->thread, efd, EPOLLIN, on_completion, q) : 0;
	if (r == 0)
		r = io_thread_start(q->thread);
	if (r < 0) {
		snprintf(err, errlen, "disk %s: queue %u thread: %s", b->name, index, strerror(-r));
		queue_free(q);
		return NULL;
	}
	return q;
}

static void blk_free(struct virtio_blk *b)
{
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_free(b->q[i]);
	blk_close(b->backend);
	free(b);
}

static int register_device(struct virtio_blk *b, const struct vmm_context *ctx, char *err, size_t errlen)
{
	uint64_t features = 1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
			    1ull << VIRTIO_BLK_F_FLUSH;
	if (b->readonly)
		features |= 1ull << VIRTIO_BLK_F_RO;
	else if (b->backend->ops->caps & BLK_CAP_DISCARD)
		features |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
	if (b->nqueues > 1)
		features |= 1ull << VIRTIO_BLK_F_MQ;
	struct virtio_pci_params p = {
		.device_id = VIRTIO_ID_BLOCK,
		.class_code = 0x018000,   /* mass storage, other */
		.features = features,
		.nqueues = b->nqueues,
		.queue_size = QUEUE_SIZE,
		.config = b->config,
		.config_len = sizeof(b->config),
		.ops = &blk_ops,
		.dev = b,
	};
	return virtio_pci_init(&b->vp, ctx, &p, b->name, err, errlen);
}

struct virtio_blk *virtio_blk_create_opts(const struct vmm_context *ctx, const struct virtio_blk_opts *o,
					  unsigned index, char *err, size_t errlen)
{
	if (o->num_queues > VIRTIO_PCI_MAX_QUEUES) {
		snprintf(err, errlen, "disk %s: num-queues %u: at most %d", o->path, o->num_queues,
			 VIRTIO_PCI_MAX_QUEUES);
		blk_close(o->backend);
		return NULL;
	}
	struct virtio_blk *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "disk %s: out of memory", o->path);
		blk_close(o->backend);
		return NULL;
	}
	b->readonly = o->readonly || (o->backend && o->backend->readonly);
	snprintf(b->name, sizeof(b->name), "vd%c", 'a' + (index % 26));
	snprintf(b->serial, sizeof(b->serial), "kvz-%s", b->name);
	struct blk_open_opts bo = { .path = o->path, .format = o->format ? o->format : "raw",
				    .readonly = o->readonly, .lock_later = o->lock_later };
	if (o->backend) {
		b->backend = o->backend;
	} else if (blk_open(&bo, &b->backend, err, errlen) < 0) {
		free(b);
		return NULL;
	}
	b->sectors = b->backend->size / SECTOR;
	unsigned want = o->num_queues ? o->num_queues : 1;
	for (; b->nqueues < want; b->nqueues++) {
		b->q[b->nqueues] = queue_new(b, b->nqueues, o->aio_sync, err, errlen);
		if (!b->q[b->nqueues])
			goto fail;
	}
	build_config(b);
	if (register_device(b, ctx, err, errlen) < 0)
		goto fail;
	return b;
fail:
	blk_free(b);
	return NULL;
}

struct virtio_blk *virtio_blk_create(const struct vmm_context *ctx, const char *path,
				     bool readonly, unsigned index, char *err, size_t errlen)
{
	struct virtio_blk_opts o = { .path = path, .readonly = readonly };
	return virtio_blk_create_opts(ctx, &o, index, err, errlen);
}

/* What a bench run needs to tell a slow disk path from a slow guest:
 * requests per interrupt and per wake-up, and the depth reached. */
static void log_profile(struct virtio_blk *b)
{
	struct virtio_blk_stats s;

	virtio_blk_get_stats(b, &s);
	kvz_debug("virtio %s: %llu requests, %llu wake-ups, %llu interrupts, at most %llu in flight (%s)",
		  b->name, (unsigned long long)s.requests, (unsigned long long)s.passes,
		  (unsigned long long)s.interrupts, (unsigned long long)s.max_inflight,
		  virtio_blk_engine(b) == BLK_AIO_IO_URING ? "io_uring" : "sync");
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->vp.lock);
	blk_reset(b, &b->vp);
	pthread_mutex_unlock(&b->vp.lock);
	log_profile(b);
	virtio_pci_destroy(&b->vp);
	blk_free(b);
}

int virtio_blk_resize(struct virtio_blk *b, uint64_t bytes, char *err, size_t errlen)
{
	char why[256] = "";
	if (b->readonly) {
		snprintf(err, errlen, "disk %s is read-only", b->name);
		return -EROFS;
	}
	pthread_mutex_lock(&b->vp.lock);
	/* Nothing in flight while the image and the bounds checks change. */
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_hold(b->q[i]);
	int r = blk_grow(b->backend, bytes, why, sizeof(why));
	if (r == 0 && bytes / SECTOR != b->sectors) {
		b->sectors = bytes / SECTOR;
		put_le(b->config, b->sectors, 8);
		virtio_pci_config_changed(&b->vp);   /* generation, ISR bit 1, config vector */
	}
	for (unsigned i = 0; i < b->nqueues; i++)
		queue_release(b->q[i]);
	pthread_mutex_unlock(&b->vp.lock);
	if (r < 0)
		snprintf(err, errlen, "disk %s: %s", b->name, why);
	return r;
}

void virtio_blk_get_stats(struct virtio_blk *b, struct virtio_blk_stats *out)
{
	*out = (struct virtio_blk_stats){ 0 };
	for (unsigned i = 0; i < b->nqueues; i++) {
		struct blk_queue *q = b->q[i];
		pthread_mutex_lock(&q->lock);
		out->rd_bytes += q->stats.rd_bytes;
		out->wr_bytes += q->stats.wr_bytes;
		out->rd_ops += q->stats.rd_ops;
		out->wr_ops += q->stats.wr_ops;
		out->flush_ops += q->stats.flush_ops;
		out->requests += q->stats.requests;
		out->passes += q->stats.passes;
		out->interrupts += q->stats.interrupts;
		if (q->stats.max_inflight > out->max_inflight)
			out->max_inflight = q->stats.max_inflight;
		pthread_mutex_unlock(&q->lock);
	}
}

enum blk_aio_kind virtio_blk_engine(const struct virtio_blk *b)
{
	return blk_aio_kind(b->q[0]->aio);
}
