/* Split virtqueue walker. The guest can rewrite its rings while we read
 * them, so each descriptor is copied once and only the copy is checked and
 * used; every address goes through guest_mem_ptr(); every index is bounded;
 * loops are caught by counting. */
#include "virtqueue.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The rings are shared with vCPUs running the driver: accesses to the
 * indices are atomic with the orderings the virtio spec asks for. */
static uint16_t load_acquire16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void store_release16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static int fail(struct virtq *vq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct virtq *vq, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vq->error, sizeof(vq->error), fmt, ap);
	va_end(ap);
	vq->broken = true;
	return -1;
}

void virtq_reset(struct virtq *vq, uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->size = max_size;
}

static bool is_pow2(uint16_t n)
{
	return n && !(n & (n - 1));
}

int virtq_enable(struct virtq *vq, const struct guest_mem *mem)
{
	uint64_t n = vq->size;

	vq->mem = mem;
	if (!is_pow2(vq->size) || vq->size > VIRTQ_MAX_SIZE)
		return fail(vq, "queue size %u is not a power of two <= %u", vq->size, VIRTQ_MAX_SIZE);
	if ((vq->desc_gpa & 15) || (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return fail(vq, "misaligned rings (desc %#llx avail %#llx used %#llx)",
			    (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
			    (unsigned long long)vq->used_gpa);
	vq->desc = guest_mem_ptr(mem, vq->desc_gpa, 16 * n);
	vq->avail = guest_mem_ptr(mem, vq->avail_gpa, 6 + 2 * n);
	vq->used = guest_mem_ptr(mem, vq->used_gpa, 6 + 8 * n);
	if (!vq->desc || !vq->avail || !vq->used)
		return fail(vq, "rings outside guest RAM (desc %#llx avail %#llx used %#llx)",
			    (unsigned long long)vq->desc_gpa, (unsigned long long)vq->avail_gpa,
			    (unsigned long long)vq->used_gpa);
	vq->enabled = true;
	return 0;
}

/* Walks state for one chain: the table being read (the queue's own, or one
 * indirect table) and how many entries of it we may still visit. */
struct walk {
	const struct virtq_desc *table;
	uint32_t tsize;
	uint32_t visited;
	bool in_indirect;
};

static int enter_indirect(struct virtq *vq, struct walk *w, const struct virtq_desc *d)
{
	if (!vq->indirect)
		return fail(vq, "indirect descriptor but VIRTIO_F_INDIRECT_DESC not negotiated");
	if (w->in_indirect)
		return fail(vq, "nested indirect descriptor");
	if (d->flags & VIRTQ_DESC_F_NEXT)
		return fail(vq, "indirect descriptor with NEXT set");
	if (d->len == 0 || d->len % sizeof(struct virtq_desc) ||
	    d->len / sizeof(struct virtq_desc) > VIRTQ_MAX_SEGS)
		return fail(vq, "indirect table length %u invalid", d->len);
	w->table = guest_mem_ptr(vq->mem, d->addr, d->len);
	if (!w->table)
		return fail(vq, "indirect table %#llx+%u outside guest RAM",
			    (unsigned long long)d->addr, d->len);
	w->tsize = d->len / sizeof(struct virtq_desc);
	w->visited = 0;
	w->in_indirect = true;
	return 0;
}

static int add_segment(struct virtq *vq, struct virtq_elem *e, const struct virtq_desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;

	if (!writable && e->nin)
		return fail(vq, "device-readable descriptor after a writable one");
	if (d->len == 0)
		return 0;  /* nothing to map; legal but useless */
	if (e->nout + e->nin >= VIRTQ_MAX_SEGS)
		return fail(vq, "chain has more than %u segments", VIRTQ_MAX_SEGS);
	void *p = guest_mem_ptr(vq->mem, d->addr, d->len);
	if (!p)
		return fail(vq, "buffer %#llx+%u outside guest RAM",
			    (unsigned long long)d->addr, d->len);
	e->iov[e->nout + e->nin] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	if (writable) {
		e->nin++;
		e->in_len += d->len;
	} else {
		e->nout++;
		e->out_len += d->len;
	}
	return 0;
}

static int walk_chain(struct virtq *vq, struct virtq_elem *e, uint16_t head)
{
	struct walk w = { .table = vq->desc, .tsize = vq->size };
	uint32_t idx = head;

	for (;;) {
		struct virtq_desc d;

		if (++w.visited > w.tsize)
			return fail(vq, "descriptor chain from head %u loops or exceeds the table", head);
		memcpy(&d, &w.table[idx], sizeof(d));  /* one read: the guest may change it */
		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			if (enter_indirect(vq, &w, &d) < 0)
				return -1;
			idx = 0;
			continue;
		}
		if (add_segment(vq, e, &d) < 0)
			return -1;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		idx = d.next;
		if (idx >= w.tsize)
			return fail(vq, "descriptor next index %u beyond table of %u", idx, w.tsize);
	}
}

int virtq_pop(struct virtq *vq, struct virtq_elem *e)
{
	if (vq->broken || !vq->enabled)
		return vq->broken ? -1 : 0;
	uint16_t avail_idx = load_acquire16(&vq->avail[1]);
	uint16_t pending = (uint16_t)(avail_idx - vq->last_avail);
	if (pending == 0)
		return 0;
	if (pending > vq->size)
		return fail(vq, "available index %u is %u ahead of consumed %u (queue size %u)",
			    avail_idx, pending, vq->last_avail, vq->size);
	uint16_t head = load16(&vq->avail[2 + vq->last_avail % vq->size]);
	if (head >= vq->size)
		return fail(vq, "available ring head %u beyond queue size %u", head, vq->size);
	e->head = head;
	e->nout = e->nin = 0;
	e->out_len = e->in_len = 0;
	if (walk_chain(vq, e, head) < 0)
		return -1;
	vq->last_avail++;
	return 1;
}

/* While a migration logs the VMM's writes: the used ring and the chain's
 * device-writable buffers (marked when the buffer is returned, i.e. after
 * the device wrote it, so no write escapes a pass). The chain is walked
 * again on a copy: a guest that rewrote it meanwhile only loses its own
 * data, and the real queue is not marked broken for it. */
static void mark_written(struct virtq *vq, uint16_t head)
{
	if (!__atomic_load_n(&vq->mem->vmm_dirty, __ATOMIC_RELAXED))
		return;
	guest_mem_mark_dirty_host(vq->mem, vq->used, 6 + 8 * (uint64_t)vq->size);
	struct virtq tmp = *vq;
	struct virtq_elem e;
	e.nout = e.nin = 0;
	e.out_len = e.in_len = 0;
	if (head >= vq->size || walk_chain(&tmp, &e, head) < 0)
		return;
	for (unsigned i = e.nout; i < (unsigned)e.nout + e.nin; i++)
		guest_mem_mark_dirty_host(vq->mem, e.iov[i].iov_base, e.iov[i].iov_len);
}

void virtq_push(struct virtq *vq, uint16_t head, uint32_t len)
{
	if (!vq->enabled)
		return;
	mark_written(vq, head);
	uint32_t *ring = (uint32_t *)(vq->used + 2);
	uint16_t slot = vq->used_idx % vq->size;

	__atomic_store_n(&ring[2 * slot], (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n(&ring[2 * slot + 1], len, __ATOMIC_RELAXED);
	vq->used_idx++;
	store_release16(&vq->used[1], vq->used_idx);
}

void virtq_push_batch(struct virtq *vq, const struct virtq_used *items, unsigned n)
{
	if (!vq->enabled)
		return;
	uint32_t *ring = (uint32_t *)(vq->used + 2);

	for (unsigned i = 0; i < n; i++)
		mark_written(vq, items[i].head);
	for (unsigned i = 0; i < n; i++) {
		uint16_t slot = (uint16_t)(vq->used_idx + i) % vq->size;
		__atomic_store_n(&ring[2 * slot], (uint32_t)items[i].head, __ATOMIC_RELAXED);
		__atomic_store_n(&ring[2 * slot + 1], items[i].len, __ATOMIC_RELAXED);
	}
	vq->used_idx += n;
	store_release16(&vq->used[1], vq->used_idx);
}

void virtq_unpop(struct virtq *vq, uint16_t n)
{
	vq->last_avail -= n;
}

bool virtq_has_avail(struct virtq *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	return load_acquire16(&vq->avail[1]) != vq->last_avail;
}

bool virtq_need_interrupt(struct virtq *vq)
{
	if (!vq->enabled)
		return false;
	/* Our used->idx store must be visible before we read the driver's
	 * suppression state, or both sides can wait for each other. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(load16(&vq->avail[0]) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	uint16_t event = load16(&vq->avail[2 + vq->size]);
	uint16_t new_idx = vq->used_idx;
	uint16_t old_idx = vq->signalled_used;
	bool valid = vq->signalled_valid;

	vq->signalled_used = new_idx;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old_idx);
}

bool virtq_rearm(struct virtq *vq)
{
	if (!vq->enabled || vq->broken)
		return false;
	if (vq->event_idx) {
		__atomic_store_n(&vq->used[2 + 4 * vq->size], vq->last_avail, __ATOMIC_RELAXED);
		guest_mem_mark_dirty_host(vq->mem, &vq->used[2 + 4 * vq->size], 2);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return load_acquire16(&vq->avail[1]) != vq->last_avail;
}

/* Copies len bytes between a buffer and the iovecs after their first skip
 * bytes: into `into` when it is not NULL, else out of `from`. Returns the
 * bytes copied. */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t skip, size_t len,
		       uint8_t *into, const uint8_t *from)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t chunk = iov[i].iov_len - skip;
		if (chunk > len - done)
			chunk = len - done;
		uint8_t *at = (uint8_t *)iov[i].iov_base + skip;
		if (into)
			memcpy(into + done, at, chunk);
		else
			memcpy(at, from + done, chunk);
		done += chunk;
		skip = 0;
	}
	return done;
}

size_t virtq_iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	return iov_copy(iov, n, skip, len, buf, NULL);
}

size_t virtq_buf_to_iov(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len)
{
	return iov_copy(iov, n, skip, len, NULL, buf);
}
