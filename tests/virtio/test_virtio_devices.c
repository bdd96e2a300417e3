/* Device tests without KVM: a small "guest driver" in this file programs
 * the virtio-pci transport through its BAR and config-space callbacks,
 * exactly like Linux's virtio_pci_modern, and submits requests to
 * virtio-blk, virtio-rng, virtio-balloon and virtio-scsi on a fake guest
 * RAM. The fake
 * VMM runs the I/O-thread handlers when the test asks. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_guest_mem.h"
#include "fake_vmm.h"
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>

#include "log.h"
#include "netlink.h"
#include "virtio_balloon.h"
#include "virtio_net.h"
#include "virtio_blk.h"
#include "virtio_devices.h"
#include "virtio_rng.h"
#include "virtio_scsi.h"
#include "qcow2.h"
#include "qmp_client.h"
#include "qmp_server.h"
#include "state/state_registry.h"

#define RAM (4u << 20)
#define QS 16
#define RING_BASE 0x10000u
#define BUF 0x100000u

static struct guest_mem mem;
static struct vmm_context ctx;

/* ---- the guest driver ---- */

struct drv {
	struct virtio_pci *vp;
	uint32_t common, notify, isr, device, notify_mult;
	unsigned msix_cap;
	uint16_t next_desc[4];
	uint16_t avail_idx[4];
	uint64_t feat;   /* what drv_init negotiated */
};

static uint64_t rd(struct drv *d, uint64_t off, unsigned len)
{
	uint64_t v = 0;
	d->vp->pci.ops->bar_read(&d->vp->pci, 0, off, &v, len);
	return v;
}

static void wr(struct drv *d, uint64_t off, uint64_t v, unsigned len)
{
	d->vp->pci.ops->bar_write(&d->vp->pci, 0, off, &v, len);
}

static uint32_t cfg32(const struct pci_device *p, unsigned off)
{
	uint32_t v;
	memcpy(&v, p->config + off, 4);
	return v;
}

/* Walks the capability list the way Linux does. */
static void find_caps(struct drv *d)
{
	const struct pci_device *p = &d->vp->pci;
	unsigned found = 0;

	assert_int_equal(p->config[0] | p->config[1] << 8, 0x1af4);
	assert_true(p->config[6] & 0x10);
	for (unsigned at = p->config[0x34], n = 0; at && n < 16; at = p->config[at + 1], n++) {
		if (p->config[at] == 0x11) {
			d->msix_cap = at;
			continue;
		}
		assert_int_equal(p->config[at], 0x09);
		assert_int_equal(p->config[at + 4], 0);   /* BAR 0 */
		uint32_t off = cfg32(p, at + 8);
		switch (p->config[at + 3]) {
		case 1: d->common = off; found |= 1; break;
		case 2: d->notify = off; d->notify_mult = cfg32(p, at + 16); found |= 2; break;
		case 3: d->isr = off; found |= 4; break;
		case 4: d->device = off; found |= 8; break;
		}
	}
	assert_true((found & 7) == 7);
	assert_true(d->msix_cap != 0);
}

static void msix_enable(struct drv *d, bool on)
{
	struct pci_device *p = &d->vp->pci;
	/* Through the write mask, like the bus does. */
	p->config[d->msix_cap + 3] = (p->config[d->msix_cap + 3] & ~0xc0) |
				     ((on ? 0x80 : 0) & p->config_wmask[d->msix_cap + 3]);
	p->ops->config_written(p, d->msix_cap + 2, 2);
}

static void msix_program(struct drv *d, unsigned v, bool masked)
{
	uint32_t table = cfg32(&d->vp->pci, d->msix_cap + 4);
	wr(d, table + 16 * v, 0xfee00000, 4);
	wr(d, table + 16 * v + 4, 0, 4);
	wr(d, table + 16 * v + 8, 0x40 + v, 4);
	wr(d, table + 16 * v + 12, masked, 4);
}

static uint64_t ring(unsigned q, unsigned part)
{
	return RING_BASE + q * 0x4000 + part * 0x1000;
}

/* Linux's probe sequence. Returns the negotiated features. */
static uint64_t drv_init(struct drv *d, struct virtio_pci *vp, uint64_t want, unsigned nq)
{
	memset(d, 0, sizeof(*d));
	d->vp = vp;
	find_caps(d);
	uint32_t c = d->common;
	wr(d, c + 0x14, 0, 1);
	assert_int_equal(rd(d, c + 0x14, 1), 0);
	wr(d, c + 0x14, 1, 1);
	wr(d, c + 0x14, 3, 1);
	wr(d, c + 0x00, 0, 4);
	uint64_t dev = rd(d, c + 0x04, 4);
	wr(d, c + 0x00, 1, 4);
	dev |= rd(d, c + 0x04, 4) << 32;
	assert_true(dev >> 32 & 1);  /* VERSION_1 */
	uint64_t feat = (dev & want) | 1ull << 32;
	wr(d, c + 0x08, 0, 4);
	wr(d, c + 0x0c, (uint32_t)feat, 4);
	wr(d, c + 0x08, 1, 4);
	wr(d, c + 0x0c, feat >> 32, 4);
	wr(d, c + 0x14, 0xb, 1);
	assert_int_equal(rd(d, c + 0x14, 1), 0xb);
	msix_enable(d, true);
	for (unsigned v = 0; v <= nq; v++)
		msix_program(d, v, false);
	wr(d, c + 0x10, 0, 2);
	assert_int_equal(rd(d, c + 0x10, 2), 0);
	assert_int_equal(rd(d, c + 0x12, 2), nq);
	for (unsigned q = 0; q < nq; q++) {
		memset(mem.host + ring(q, 0), 0, 0x4000);
		wr(d, c + 0x16, q, 2);
		assert_true(rd(d, c + 0x18, 2) >= QS);
		wr(d, c + 0x18, QS, 2);
		wr(d, c + 0x20, ring(q, 0), 4);          /* 64-bit fields in two halves */
		wr(d, c + 0x24, 0, 4);
		wr(d, c + 0x28, ring(q, 1), 8);
		wr(d, c + 0x30, ring(q, 2), 8);
		wr(d, c + 0x1a, q + 1, 2);
		assert_int_equal(rd(d, c + 0x1a, 2), q + 1);
		assert_int_equal(rd(d, c + 0x1e, 2), q);
		wr(d, c + 0x1c, 1, 2);
	}
	wr(d, c + 0x14, 0xf, 1);
	d->feat = feat;
	return feat;
}

static struct virtq_desc *dtab(unsigned q)
{
	return (struct virtq_desc *)(mem.host + ring(q, 0));
}

static uint16_t *avail(unsigned q)
{
	return (uint16_t *)(mem.host + ring(q, 1));
}

static uint16_t *used(unsigned q)
{
	return (uint16_t *)(mem.host + ring(q, 2));
}

static uint32_t used_len(unsigned q, uint16_t i)
{
	return ((uint32_t *)(used(q) + 2))[2 * (i % QS) + 1];
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write;
};

/* Queues a chain on q without kicking. */
static uint16_t queue_chain(struct drv *d, unsigned q, const struct seg *s, unsigned n)
{
	uint16_t head = d->next_desc[q] % QS;
	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (head + i) % QS;
		dtab(q)[idx] = (struct virtq_desc){
			s[i].gpa, s[i].len,
			(uint16_t)((s[i].write ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			(uint16_t)((idx + 1) % QS) };
	}
	d->next_desc[q] += n;
	avail(q)[2 + d->avail_idx[q] % QS] = head;
	d->avail_idx[q]++;
	__atomic_store_n(&avail(q)[1], d->avail_idx[q], __ATOMIC_RELEASE);
	return head;
}

/* Queues one chain of segments and kicks. */
static uint16_t submit(struct drv *d, unsigned q, const struct seg *s, unsigned n)
{
	uint16_t head = queue_chain(d, q, s, n);
	wr(d, d->notify + q * d->notify_mult, q, 2);
	fake_io_run();
	return head;
}

static uint64_t irq_count(struct drv *d, unsigned vector)
{
	eventfd_t v = 0;
	if (eventfd_read(d->vp->irq_fd[vector], &v) < 0)
		return 0;
	return v;
}

/* ---- fixtures ---- */

static char img_path[64];

static int setup(void **state)
{
	(void)state;
	fake_vmm_reset();
	assert_int_equal(fake_guest_mem_init(&mem, RAM, 0), 0);
	ctx = (struct vmm_context){ .vm = NULL, .mem = &mem, .pci = NULL, .io = NULL };
	snprintf(img_path, sizeof(img_path), "/tmp/kvz-test-blk-XXXXXX");
	int fd = mkstemp(img_path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 1 << 20), 0);
	close(fd);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(img_path);
	fake_guest_mem_destroy(&mem);
	return 0;
}

/* The set-up most device tests start with: the device made (its error
 * shown when it is not) and probed by d as Linux does, every feature
 * wanted. */
static struct virtio_blk *blk_up_opts(struct drv *d, const struct virtio_blk_opts *o, unsigned nq)
{
	char err[256];
	struct virtio_blk *b = virtio_blk_create_opts(&ctx, o, 0, err, sizeof(err));
	if (!b)
		fail_msg("virtio_blk_create_opts: %s", err);
	drv_init(d, &b->vp, ~0ull, nq);
	return b;
}

/* virtio_blk_create's disk (img_path), one queue. */
static struct virtio_blk *blk_up(struct drv *d, bool readonly, unsigned index)
{
	char err[256];
	struct virtio_blk *b = virtio_blk_create(&ctx, img_path, readonly, index, err, sizeof(err));
	if (!b)
		fail_msg("virtio_blk_create: %s", err);
	drv_init(d, &b->vp, ~0ull, 1);
	return b;
}

static struct virtio_rng *rng_up(struct drv *d)
{
	char err[256];
	struct virtio_rng *r = virtio_rng_create(&ctx, err, sizeof(err));
	if (!r)
		fail_msg("virtio_rng_create: %s", err);
	drv_init(d, &r->vp, ~0ull, 1);
	return r;
}

/* Its three queues: inflate, deflate, statistics. */
static struct virtio_balloon *balloon_up(struct drv *d, bool deflate_on_oom)
{
	char err[256];
	struct virtio_balloon *b = virtio_balloon_create(&ctx, deflate_on_oom, err, sizeof(err));
	if (!b)
		fail_msg("virtio_balloon_create: %s", err);
	drv_init(d, &b->vp, ~0ull, 3);
	return b;
}

/* ---- virtio-blk ---- */

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

/* Serves the fake I/O threads until queue q's used index reaches idx:
 * io_uring completes in the kernel's time, not the test's. */
static bool wait_used(unsigned q, uint16_t idx)
{
	for (int i = 0; i < 5000; i++) {
		fake_io_run();
		if (__atomic_load_n(&used(q)[1], __ATOMIC_ACQUIRE) == idx)
			return true;
		usleep(1000);
	}
	return false;
}

static uint8_t blk_req(struct drv *d, uint32_t type, uint64_t sector, uint64_t data_gpa,
		       uint32_t data_len, bool data_write, uint32_t *len_out)
{
	struct blk_hdr h = { type, 0, sector };
	memcpy(mem.host + BUF, &h, sizeof(h));
	mem.host[BUF + 0x100] = 0xff;
	struct seg s[3] = { { BUF, sizeof(h), false } };
	unsigned n = 1;
	if (data_len)
		s[n++] = (struct seg){ data_gpa, data_len, data_write };
	s[n++] = (struct seg){ BUF + 0x100, 1, true };
	uint16_t before = used(0)[1];
	submit(d, 0, s, n);
	assert_true(wait_used(0, (uint16_t)(before + 1)));
	if (len_out)
		*len_out = used_len(0, before);
	return mem.host[BUF + 0x100];
}

static void check_blk_rw(bool aio_sync)
{
	struct virtio_blk_opts o = { .path = img_path, .aio_sync = aio_sync };
	struct drv d;
	struct virtio_blk *b = blk_up_opts(&d, &o, 1);
	if (aio_sync)
		assert_int_equal(virtio_blk_engine(b), BLK_AIO_SYNC);
	uint64_t cap = rd(&d, d.device, 8);
	assert_int_equal(cap, (1 << 20) / 512);

	for (int i = 0; i < 4096; i++)
		mem.host[BUF + 0x1000 + i] = (uint8_t)(i * 7 + 3);
	uint32_t len;
	assert_int_equal(blk_req(&d, 1, 8, BUF + 0x1000, 4096, false, &len), 0);
	assert_int_equal(len, 1);
	assert_true(irq_count(&d, 1) >= 1);

	/* The bytes are in the image, where the guest put them. */
	uint8_t file[4096];
	int fd = open(img_path, O_RDONLY);
	assert_int_equal(pread(fd, file, sizeof(file), 8 * 512), 4096);
	close(fd);
	assert_memory_equal(file, mem.host + BUF + 0x1000, 4096);

	memset(mem.host + BUF + 0x3000, 0, 4096);
	assert_int_equal(blk_req(&d, 0, 8, BUF + 0x3000, 4096, true, &len), 0);
	assert_int_equal(len, 4097);
	assert_memory_equal(mem.host + BUF + 0x3000, file, 4096);

	assert_int_equal(blk_req(&d, 4, 0, 0, 0, false, NULL), 0);   /* flush */
	assert_int_equal(blk_req(&d, 8, 0, BUF + 0x3000, 20, true, &len), 0);
	assert_string_equal((char *)mem.host + BUF + 0x3000, "kvz-vda");

	/* Past the end: an I/O error, not a short read. */
	assert_int_equal(blk_req(&d, 0, cap - 1, BUF + 0x3000, 1024, true, NULL), 1);
	assert_int_equal(blk_req(&d, 0, UINT64_MAX, BUF + 0x3000, 512, true, NULL), 1);
	assert_int_equal(blk_req(&d, 77, 0, BUF + 0x3000, 512, true, NULL), 2);  /* unsupported */

	struct virtio_blk_stats st;
	virtio_blk_get_stats(b, &st);
	assert_int_equal(st.wr_bytes, 4096);
	assert_int_equal(st.wr_ops, 1);
	assert_int_equal(st.rd_bytes, 4096);
	assert_int_equal(st.rd_ops, 1);
	assert_int_equal(st.flush_ops, 1);
	virtio_blk_destroy(b);
	assert_int_equal(fake_vmm.routes, 0);
	assert_int_equal(fake_vmm.irqfds, 0);
	assert_int_equal(fake_vmm.ioeventfds, 0);
	assert_int_equal(fake_io_count(), 0);
}

static void test_blk_rw(void **state)
{
	(void)state;
	check_blk_rw(false);
}

/* The fallback where io_uring is refused serves the same requests. */
static void test_blk_rw_sync_engine(void **state)
{
	(void)state;
	check_blk_rw(true);
}

static uint32_t used_id(unsigned q, uint16_t i)
{
	return ((uint32_t *)(used(q) + 2))[2 * (i % QS)];
}

#define NMANY 8   /* two descriptors each: the 16-entry table full */

/* Requests at offsets i*4K: a write chain is header+data (device-readable)
 * then status; a read chain is header then data+status in one
 * device-writable buffer (the status is the chain's last byte). */
static void queue_rw(struct drv *d, unsigned q, unsigned i, bool write, uint16_t *heads)
{
	uint64_t req = BUF + 0x10000 + i * 0x2000;
	struct blk_hdr h = { write ? 1 : 0, 0, i * 8u };
	memcpy(mem.host + req, &h, sizeof(h));
	mem.host[req + 0x1f00] = 0xff;
	struct seg s[2];
	if (write) {
		memset(mem.host + req + 16, (int)(0x40 + i), 4096);
		s[0] = (struct seg){ req, 16 + 4096, false };
		s[1] = (struct seg){ req + 0x1f00, 1, true };
	} else {
		memset(mem.host + req + 0x800, 0, 4097);
		s[0] = (struct seg){ req, 16, false };
		s[1] = (struct seg){ req + 0x800, 4097, true };
	}
	heads[i] = queue_chain(d, q, s, 2);
}

static uint8_t rw_status(unsigned i, bool write)
{
	uint64_t req = BUF + 0x10000 + i * 0x2000;
	return mem.host[write ? req + 0x1f00 : req + 0x800 + 4096];
}

/* A batch of requests in flight at once on one queue: each completes with
 * its own head and length, the data lands where it belongs, and the batch
 * costs fewer interrupts than requests. */
static void check_many_in_flight(unsigned nq, unsigned q)
{
	struct virtio_blk_opts o = { .path = img_path, .num_queues = nq };
	struct drv d;
	struct virtio_blk *b = blk_up_opts(&d, &o, nq);
	assert_int_equal(d.feat >> 12 & 1, nq > 1);              /* VIRTIO_BLK_F_MQ */
	assert_int_equal(rd(&d, d.device + 0x22, 2), nq);      /* num_queues */
	irq_count(&d, q + 1);
	uint16_t heads[NMANY];
	for (int pass = 0; pass < 2; pass++) {
		bool write = pass == 0;
		uint16_t before = used(q)[1];
		avail(q)[2 + QS] = before;   /* used_event: interrupt from the first on */
		for (unsigned i = 0; i < NMANY; i++)
			queue_rw(&d, q, i, write, heads);
		wr(&d, d.notify + q * d.notify_mult, q, 2);
		assert_true(wait_used(q, (uint16_t)(before + NMANY)));
		bool seen[NMANY] = { false };
		for (unsigned k = 0; k < NMANY; k++) {
			uint32_t id = used_id(q, (uint16_t)(before + k));
			unsigned i = 0;
			while (i < NMANY && heads[i] != id)
				i++;
			assert_true(i < NMANY);
			assert_false(seen[i]);
			seen[i] = true;
			assert_int_equal(used_len(q, (uint16_t)(before + k)), write ? 1 : 4097);
			assert_int_equal(rw_status(i, write), 0);
		}
		uint64_t irqs = irq_count(&d, q + 1);
		assert_true(irqs >= 1);
		assert_true(irqs <= NMANY);
	}
	for (unsigned i = 0; i < NMANY; i++) {
		uint64_t req = BUF + 0x10000 + i * 0x2000;
		for (unsigned k = 0; k < 4096; k += 512)
			assert_int_equal(mem.host[req + 0x800 + k], 0x40 + i);
	}
	virtio_blk_destroy(b);
	assert_int_equal(fake_io_count(), 0);
}

static void test_blk_many_in_flight(void **state)
{
	(void)state;
	check_many_in_flight(1, 0);
}

/* num-queues=2: the second queue serves on its own vector. */
static void test_blk_multiqueue(void **state)
{
	(void)state;
	check_many_in_flight(2, 1);
	char err[256];
	struct virtio_blk_opts o = { .path = img_path, .num_queues = VIRTIO_PCI_MAX_QUEUES + 1 };
	assert_null(virtio_blk_create_opts(&ctx, &o, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "num-queues"));
}

/* A backend whose requests stay in flight until the test lets them go:
 * each one is an engine read of one byte from a pipe. */
struct gate {
	struct blk_backend b;
	int pipe[2];
	uint8_t sink[64];
	struct iovec iov[64];
	unsigned next;              /* sink/iov slot of the next request */
};

static void gate_op_done(struct blk_aio_op *op, int result)
{
	struct blk_req *req = op->opaque;
	req->done(req, result);
}

static void gate_submit(struct blk_backend *bk, struct blk_req *req)
{
	struct gate *g = bk->priv;
	unsigned i = g->next++ % 64;
	g->iov[i] = (struct iovec){ &g->sink[i], 1 };
	req->sub = (struct blk_aio_op){ .op = BLK_OP_READ, .fd = g->pipe[0], .len = 1,
					.iov = &g->iov[i], .niov = 1, .done = gate_op_done, .opaque = req };
	blk_aio_submit(req->aio, &req->sub);
}

static void gate_close(struct blk_backend *bk)
{
	struct gate *g = bk->priv;
	close(g->pipe[0]);
	close(g->pipe[1]);
	pthread_mutex_destroy(&bk->lock);
	free(g);
}

static const struct blk_driver_ops gate_ops = { .caps = BLK_CAP_THREADSAFE,
						.submit = gate_submit, .close = gate_close };

static struct gate *gate_new(void)
{
	struct gate *g = calloc(1, sizeof(*g));
	assert_non_null(g);
	assert_int_equal(pipe(g->pipe), 0);
	g->b = (struct blk_backend){ .ops = &gate_ops, .size = 1 << 20, .priv = g };
	pthread_mutex_init(&g->b.lock, NULL);
	return g;
}

/* A one-queue disk on a new gate, the driver up; skips the test where
 * io_uring is unavailable (requests then never stay in flight). */
static struct virtio_blk *gate_device(struct gate **gp, struct drv *d)
{
	char err[256];
	struct gate *g = gate_new();
	struct virtio_blk_opts o = { .path = "gate", .backend = &g->b };
	struct virtio_blk *b = virtio_blk_create_opts(&ctx, &o, 0, err, sizeof(err));
	assert_non_null(b);
	if (virtio_blk_engine(b) != BLK_AIO_IO_URING) {
		virtio_blk_destroy(b);
		print_message("io_uring unavailable: no request stays in flight; skipped\n");
		skip();
	}
	drv_init(d, &b->vp, ~0ull, 1);
	*gp = g;
	return b;
}

struct opener {
	int fd;
	unsigned n;
	atomic_bool opened;
};

static void *open_gate_later(void *arg)
{
	struct opener *o = arg;
	usleep(50000);
	o->opened = true;
	char bytes[64] = { 0 };
	if (write(o->fd, bytes, o->n) != (ssize_t)o->n)
		abort();
	return NULL;
}

/* Pause (snapshots, migration) returns only once nothing is in flight and
 * serves nothing new until resume; a reset with requests in flight
 * completes them first. */
static void test_blk_pause_drains(void **state)
{
	(void)state;
	struct gate *g;
	struct drv d;
	struct virtio_blk *b = gate_device(&g, &d);
	uint16_t heads[NMANY];
	for (unsigned i = 0; i < NMANY; i++)
		queue_rw(&d, 0, i, true, heads);
	wr(&d, d.notify, 0, 2);
	fake_io_run();
	assert_int_equal(used(0)[1], 0);   /* all in flight, held by the gate */

	/* Pause waits for them: it returns after the gate opened, with every
	 * request completed. */
	struct opener op = { .fd = g->pipe[1], .n = NMANY };
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, open_gate_later, &op), 0);
	pthread_mutex_lock(&b->vp.lock);
	b->vp.p.ops->pause(b, &b->vp);
	pthread_mutex_unlock(&b->vp.lock);
	assert_true(op.opened);
	assert_int_equal(used(0)[1], NMANY);
	for (unsigned i = 0; i < NMANY; i++)
		assert_int_equal(rw_status(i, true), 0);
	pthread_join(t, NULL);

	/* While paused, a kick is not served. */
	assert_int_equal(write(g->pipe[1], "x", 1), 1);
	queue_rw(&d, 0, 0, false, heads);
	wr(&d, d.notify, 0, 2);
	fake_io_run();
	usleep(10000);
	fake_io_run();
	assert_int_equal(used(0)[1], NMANY);
	pthread_mutex_lock(&b->vp.lock);
	b->vp.p.ops->resume(b, &b->vp);
	pthread_mutex_unlock(&b->vp.lock);
	assert_true(wait_used(0, NMANY + 1));
	assert_int_equal(rw_status(0, false), 0);

	/* Reset (status 0) with requests in flight: it waits for them too. */
	for (unsigned i = 1; i < NMANY; i++)
		queue_rw(&d, 0, i, false, heads);
	wr(&d, d.notify, 0, 2);
	fake_io_run();
	assert_int_equal(used(0)[1], NMANY + 1);
	op = (struct opener){ .fd = g->pipe[1], .n = NMANY - 1 };
	assert_int_equal(pthread_create(&t, NULL, open_gate_later, &op), 0);
	wr(&d, d.common + 0x14, 0, 1);
	assert_true(op.opened);
	assert_int_equal(rd(&d, d.common + 0x14, 1), 0);
	for (unsigned i = 1; i < NMANY; i++)
		assert_int_equal(rw_status(i, false), 0);
	pthread_join(t, NULL);
	virtio_blk_destroy(b);
}

/* One kick with a batch queued puts the whole batch in flight in one
 * wake-up of the queue thread; completions found together go back to the
 * guest with one interrupt (the stats the bench's profile reads). */
static void test_blk_batch_one_interrupt(void **state)
{
	(void)state;
	struct gate *g;
	struct drv d;
	struct virtio_blk *b = gate_device(&g, &d);
	avail(0)[2 + QS] = 0;   /* used_event: an interrupt from the first */
	irq_count(&d, 1);
	uint16_t heads[NMANY];
	for (unsigned i = 0; i < NMANY; i++)
		queue_rw(&d, 0, i, false, heads);
	wr(&d, d.notify, 0, 2);
	fake_io_run();
	struct virtio_blk_stats st;
	virtio_blk_get_stats(b, &st);
	assert_int_equal(used(0)[1], 0);
	assert_int_equal(st.max_inflight, NMANY);
	assert_int_equal(st.passes, 1);
	assert_int_equal(st.interrupts, 0);

	/* All released at once (the completions are posted while write
	 * returns, on this thread, which submitted them). */
	char bytes[NMANY] = { 0 };
	assert_int_equal(write(g->pipe[1], bytes, NMANY), NMANY);
	assert_true(wait_used(0, NMANY));
	virtio_blk_get_stats(b, &st);
	assert_int_equal(st.requests, NMANY);
	assert_int_equal(st.interrupts, 1);
	assert_int_equal(irq_count(&d, 1), 1);
	virtio_blk_destroy(b);
}

/* Hostile requests: lengths beyond the disk, sectors that overflow, a
 * data buffer that is the whole of RAM, a read-only disk written: each
 * answered with an error status, the queue still working afterwards. */
static void test_blk_hostile_requests(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk *b = blk_up(&d, false, 0);
	/* 2 MiB read from a 1 MiB disk: within RAM, beyond the disk. */
	assert_int_equal(blk_req(&d, 0, 0, BUF + 0x10000, 2u << 20, true, NULL), 1);
	/* sector * 512 would wrap to a small offset. */
	assert_int_equal(blk_req(&d, 1, (1ull << 55) + 1, BUF + 0x10000, 512, false, NULL), 1);
	/* Discard segments beyond the disk or with unknown flags. */
	struct dseg { uint64_t sector; uint32_t n, flags; } seg = { UINT64_MAX - 1, 8, 0 };
	memcpy(mem.host + BUF + 0x2000, &seg, sizeof(seg));
	assert_int_equal(blk_req(&d, 11, 0, BUF + 0x2000, sizeof(seg), false, NULL), 2);
	seg = (struct dseg){ 0, 8, 0x80 };
	memcpy(mem.host + BUF + 0x2000, &seg, sizeof(seg));
	assert_int_equal(blk_req(&d, 13, 0, BUF + 0x2000, sizeof(seg), false, NULL), 2);
	/* Still serving. */
	assert_int_equal(blk_req(&d, 0, 0, BUF + 0x3000, 512, true, NULL), 0);
	assert_false(rd(&d, d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
	virtio_blk_destroy(b);

	/* Read-only: every kind of write refused, the image unchanged. */
	struct virtio_blk_opts o = { .path = img_path, .readonly = true, .num_queues = 2 };
	b = blk_up_opts(&d, &o, 2);
	assert_true(d.feat >> 5 & 1);                /* VIRTIO_BLK_F_RO */
	assert_false(d.feat >> 13 & 1);              /* no DISCARD */
	memset(mem.host + BUF + 0x1000, 0xab, 512);
	assert_int_equal(blk_req(&d, 1, 0, BUF + 0x1000, 512, false, NULL), 1);
	seg = (struct dseg){ 0, 8, 0 };
	memcpy(mem.host + BUF + 0x2000, &seg, sizeof(seg));
	assert_int_equal(blk_req(&d, 13, 0, BUF + 0x2000, sizeof(seg), false, NULL), 1);
	assert_int_equal(blk_req(&d, 11, 0, BUF + 0x2000, sizeof(seg), false, NULL), 1);
	assert_int_equal(blk_req(&d, 4, 0, 0, 0, false, NULL), 0);   /* flush: nothing to do */
	virtio_blk_destroy(b);
	uint8_t file[512];
	int fd = open(img_path, O_RDONLY);
	assert_int_equal(pread(fd, file, sizeof(file), 0), 512);
	close(fd);
	for (unsigned i = 0; i < sizeof(file); i++)
		assert_int_equal(file[i], 0);
}

static void test_blk_write_zeroes_discard(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk *b = blk_up(&d, false, 0);
	memset(mem.host + BUF + 0x1000, 0x5a, 8192);
	assert_int_equal(blk_req(&d, 1, 0, BUF + 0x1000, 8192, false, NULL), 0);

	struct dseg { uint64_t sector; uint32_t n, flags; } seg = { 8, 8, 0 };
	memcpy(mem.host + BUF + 0x2000, &seg, sizeof(seg));
	assert_int_equal(blk_req(&d, 13, 0, BUF + 0x2000, sizeof(seg), false, NULL), 0);
	uint8_t file[8192];
	int fd = open(img_path, O_RDONLY);
	assert_int_equal(pread(fd, file, sizeof(file), 0), 8192);
	assert_int_equal(file[0], 0x5a);
	assert_int_equal(file[4095], 0x5a);
	for (int i = 4096; i < 8192; i++)
		assert_int_equal(file[i], 0);

	seg = (struct dseg){ 0, 8, 0 };
	memcpy(mem.host + BUF + 0x2000, &seg, sizeof(seg));
	assert_int_equal(blk_req(&d, 11, 0, BUF + 0x2000, sizeof(seg), false, NULL), 0);
	/* A discard past the end is refused. */
	seg = (struct dseg){ 2040, 16, 0 };
	memcpy(mem.host + BUF + 0x2000, &seg, sizeof(seg));
	assert_int_equal(blk_req(&d, 11, 0, BUF + 0x2000, sizeof(seg), false, NULL), 2);
	close(fd);
	virtio_blk_destroy(b);
}

static void test_blk_readonly(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk *b = blk_up(&d, true, 1);
	assert_true(d.feat >> 5 & 1);               /* VIRTIO_BLK_F_RO */
	assert_false(d.feat >> 13 & 1);             /* no discard */
	assert_int_equal(blk_req(&d, 1, 0, BUF + 0x1000, 512, false, NULL), 1);
	assert_int_equal(blk_req(&d, 8, 0, BUF + 0x3000, 20, true, NULL), 0);
	assert_string_equal((char *)mem.host + BUF + 0x3000, "kvz-vdb");
	virtio_blk_destroy(b);
}

static void test_blk_exclusive_lock(void **state)
{
	(void)state;
	char err[256];
	struct virtio_blk *a = virtio_blk_create(&ctx, img_path, false, 0, err, sizeof(err));
	assert_non_null(a);
	struct virtio_blk *b = virtio_blk_create(&ctx, img_path, false, 1, err, sizeof(err));
	assert_null(b);
	assert_non_null(strstr(err, "in use"));
	virtio_blk_destroy(a);
}

/* qemu-img check's exit status on path (0: clean, 3: leaks, 2:
 * corruption), or -1 when qemu-img is not installed. */
static int qemu_img_check(const char *path)
{
	if (system("command -v qemu-img >/dev/null 2>&1") != 0)
		return -1;
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "qemu-img check -q -U %s >/dev/null 2>&1", path);
	int st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

/* The guest's writes to a qcow2 disk, read back by another reader of the
 * file: whether all NQ2 blocks hold what the guest wrote. */
#define NQ2 24
static bool q2_file_has_writes(const char *path)
{
	char err[300];
	struct qcow2 *q;
	assert_int_equal(qcow2_open(path, -1, 0, &q, err, sizeof(err)), 0);
	struct qcow2_check c;
	assert_int_equal(qcow2_check(q, &c), 0);
	assert_int_equal(c.corruptions, 0);   /* at every moment, even unpaused */
	bool all = true;
	uint8_t got[4096];
	for (unsigned i = 0; i < NQ2 && all; i++) {
		assert_int_equal(qcow2_read(q, got, i * 300000ull / 4096 * 4096, sizeof(got)), 0);
		all = got[0] == (uint8_t)(i + 1) && got[4095] == (uint8_t)(i + 1);
	}
	qcow2_close(q);
	return all;
}

/* A paused VM's qcow2 disk is a whole image without any flush from the
 * guest: the backend keeps new L2 entries cached after each write (no
 * metadata write per request), and pause writes them out, so that kvzd's
 * copy of the paused VM's disk holds every completed write and passes
 * qemu-img check without even a leak. */
static void test_blk_qcow2_pause_commits(void **state)
{
	(void)state;
	char err[300];
	unlink(img_path);
	struct qcow2_create_opts co = { 8u << 20, 16, NULL, NULL };
	assert_int_equal(qcow2_create(img_path, &co, err, sizeof(err)), 0);
	struct virtio_blk_opts o = { .path = img_path, .format = "qcow2" };
	struct drv d;
	struct virtio_blk *b = blk_up_opts(&d, &o, 1);
	for (unsigned i = 0; i < NQ2; i++) {   /* each allocates a cluster */
		memset(mem.host + BUF + 0x1000, (int)(i + 1), 4096);
		uint64_t sector = i * 300000ull / 4096 * 8;
		assert_int_equal(blk_req(&d, 1, sector, BUF + 0x1000, 4096, false, NULL), 0);
	}
	/* Completed, not flushed: the L2 entries are still only in the cache,
	 * and the file is consistent all the same (what a kill -9 leaves). */
	assert_false(q2_file_has_writes(img_path));
	pthread_mutex_lock(&b->vp.lock);
	b->vp.p.ops->pause(b, &b->vp);
	pthread_mutex_unlock(&b->vp.lock);
	assert_true(q2_file_has_writes(img_path));
	int rc = qemu_img_check(img_path);
	if (rc < 0)
		print_message("qemu-img not installed: checked with kvz's own check only\n");
	else
		assert_int_equal(rc, 0);
	pthread_mutex_lock(&b->vp.lock);
	b->vp.p.ops->resume(b, &b->vp);
	pthread_mutex_unlock(&b->vp.lock);
	virtio_blk_destroy(b);
}

/* ---- block_resize ---- */

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

/* qemu-img's view of the image's guest size; 0 without qemu-img. */
static uint64_t qemu_img_virtual_size(const char *path)
{
	if (system("command -v qemu-img >/dev/null 2>&1") != 0)
		return 0;
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "qemu-img info -U --output=json %s", path);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	json_error_t je;
	json_t *info = json_loadf(f, 0, &je);
	assert_int_equal(pclose(f), 0);
	assert_non_null(info);
	uint64_t v = (uint64_t)json_integer_value(json_object_get(info, "virtual-size"));
	json_decref(info);
	return v;
}

/* One 4 KiB write then read back at sector, through the rings. */
static void blk_roundtrip(struct drv *d, uint64_t sector, uint8_t fill)
{
	memset(mem.host + BUF + 0x1000, fill, 4096);
	assert_int_equal(blk_req(d, 1, sector, BUF + 0x1000, 4096, false, NULL), 0);
	memset(mem.host + BUF + 0x3000, 0, 4096);
	assert_int_equal(blk_req(d, 0, sector, BUF + 0x3000, 4096, true, NULL), 0);
	assert_memory_equal(mem.host + BUF + 0x3000, mem.host + BUF + 0x1000, 4096);
}

/* What the guest sees of a refused resize: nothing at all. */
static void refused(struct virtio_blk *b, struct drv *d, uint64_t bytes, int want, const char *why)
{
	char err[320] = "";
	uint64_t cap = rd(d, d->device, 8);
	uint8_t gen = (uint8_t)rd(d, d->common + 0x15, 1);
	assert_int_equal(virtio_blk_resize(b, bytes, err, sizeof(err)), want);
	assert_non_null(strstr(err, why));
	assert_null(strchr(err, '\n'));
	assert_int_equal(rd(d, d->device, 8), cap);
	assert_int_equal(rd(d, d->common + 0x15, 1), gen);
	assert_int_equal(irq_count(d, 0), 0);
}

/* A raw disk grows under a running driver: the file, the capacity in
 * config space, the generation, and one config interrupt (MSI-X vector 0,
 * where drv_init put msix_config; ISR bit 1 with INTx); I/O past the old
 * end works at once. Shrinking and bad sizes leave everything as it was. */
static void test_blk_resize_raw(void **state)
{
	(void)state;
	char err[320];
	struct drv d;
	struct virtio_blk *b = blk_up(&d, false, 0);
	irq_count(&d, 0);
	assert_int_equal(rd(&d, d.device, 8), 2048);
	blk_roundtrip(&d, 8, 0x5a);
	/* Beyond the end: an I/O error before the grow. */
	assert_int_equal(blk_req(&d, 1, 3000, BUF + 0x1000, 4096, false, NULL), 1);
	uint8_t gen = (uint8_t)rd(&d, d.common + 0x15, 1);

	assert_int_equal(virtio_blk_resize(b, 2u << 20, err, sizeof(err)), 0);
	assert_int_equal(file_size(img_path), 2u << 20);
	assert_int_equal(rd(&d, d.device, 8), 4096);
	assert_int_not_equal(rd(&d, d.common + 0x15, 1), gen);
	assert_int_equal(irq_count(&d, 0), 1);
	blk_roundtrip(&d, 3000, 0xa5);
	uint8_t old[4096];
	int fd = open(img_path, O_RDONLY);
	assert_int_equal(pread(fd, old, sizeof(old), 8 * 512), 4096);
	close(fd);
	assert_int_equal(old[0], 0x5a);                      /* data intact */

	refused(b, &d, 1u << 20, -ENOTSUP, "shrinking");
	refused(b, &d, (2u << 20) + 1, -EINVAL, "multiple of 512");
	refused(b, &d, BLK_MAX_SIZE + 512, -EFBIG, "limit");
	refused(b, &d, UINT64_MAX & ~511ull, -EFBIG, "limit");
	assert_int_equal(file_size(img_path), 2u << 20);
	/* The same size: nothing to tell the guest. */
	assert_int_equal(virtio_blk_resize(b, 2u << 20, err, sizeof(err)), 0);
	assert_int_equal(irq_count(&d, 0), 0);

	/* Without MSI-X: INTx with ISR bit 1 (config change). */
	msix_enable(&d, false);
	assert_int_equal(virtio_blk_resize(b, 3u << 20, err, sizeof(err)), 0);
	assert_int_equal(fake_vmm.irq_level[b->vp.pci.irq_line], 1);
	assert_int_equal(rd(&d, d.isr, 1), 2);
	assert_int_equal(fake_vmm.irq_level[b->vp.pci.irq_line], 0);
	assert_int_equal(rd(&d, d.device, 8), 6144);
	virtio_blk_destroy(b);
}

static void test_blk_resize_readonly(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk *b = blk_up(&d, true, 0);
	irq_count(&d, 0);
	refused(b, &d, 2u << 20, -EROFS, "read-only");
	assert_int_equal(file_size(img_path), 1u << 20);
	virtio_blk_destroy(b);
}

/* A qcow2 disk grows past what its L1 table maps (512 MiB per entry with
 * 64 KiB clusters): a new L1 table, then the header; the image passes
 * qemu-img check, qemu-img info shows the new size, data before the old
 * end is intact and data past it lands. */
static void test_blk_resize_qcow2(void **state)
{
	(void)state;
	char err[320];
	unlink(img_path);
	struct qcow2_create_opts co = { 8u << 20, 16, NULL, NULL };
	assert_int_equal(qcow2_create(img_path, &co, err, sizeof(err)), 0);
	struct virtio_blk_opts o = { .path = img_path, .format = "qcow2" };
	struct drv d;
	struct virtio_blk *b = blk_up_opts(&d, &o, 1);
	irq_count(&d, 0);
	blk_roundtrip(&d, 16, 0x11);
	uint64_t big = 3ull << 30;
	assert_int_equal(virtio_blk_resize(b, big, err, sizeof(err)), 0);
	assert_int_equal(rd(&d, d.device, 8), big / 512);
	assert_int_equal(irq_count(&d, 0), 1);
	blk_roundtrip(&d, big / 512 - 8, 0x22);
	refused(b, &d, 1ull << 30, -ENOTSUP, "shrinking");
	refused(b, &d, (1ull << 56) + 512, -EFBIG, "limit");
	pthread_mutex_lock(&b->vp.lock);
	b->vp.p.ops->pause(b, &b->vp);                        /* cached L2s to the file */
	pthread_mutex_unlock(&b->vp.lock);

	struct qcow2 *q;
	assert_int_equal(qcow2_open(img_path, -1, 0, &q, err, sizeof(err)), 0);
	assert_int_equal(qcow2_size(q), big);
	uint8_t got[4096];
	assert_int_equal(qcow2_read(q, got, 16 * 512, sizeof(got)), 0);
	assert_int_equal(got[0], 0x11);
	assert_int_equal(got[4095], 0x11);
	assert_int_equal(qcow2_read(q, got, big - 4096, sizeof(got)), 0);
	assert_int_equal(got[0], 0x22);
	qcow2_close(q);
	int rc = qemu_img_check(img_path);
	uint64_t vs = qemu_img_virtual_size(img_path);
	if (rc < 0)
		print_message("qemu-img not installed: checked with kvz's own reader only\n");
	else {
		assert_int_equal(rc, 0);
		assert_int_equal(vs, big);
	}
	pthread_mutex_lock(&b->vp.lock);
	b->vp.p.ops->resume(b, &b->vp);
	pthread_mutex_unlock(&b->vp.lock);
	virtio_blk_destroy(b);
}

/* Snapshots: the grown capacity is part of the saved config bytes and is
 * the device's again after a load; a saved capacity beyond the image (a
 * stale image or a hostile file) is refused with nothing loaded. */
static void test_blk_resize_state(void **state)
{
	(void)state;
	char err[320];
	ctx.state = state_registry_create();
	struct drv d;
	struct virtio_blk *b = blk_up(&d, false, 0);
	const struct state_entry *e = state_registry_find(ctx.state, "virtio-blk", 0);
	assert_non_null(e);
	assert_int_equal(virtio_blk_resize(b, 2u << 20, err, sizeof(err)), 0);
	struct state_buf sb;
	state_buf_init(&sb);
	assert_int_equal(e->ops->save(e->opaque, &sb, err, sizeof(err)), 0);
	/* Another device state in between: capacity back at the old size. */
	b->sectors = 2048;
	struct state_cursor c;
	state_cursor_init(&c, sb.data, sb.len);
	assert_int_equal(e->ops->load(e->opaque, &c, e->version, err, sizeof(err)), 0);
	assert_int_equal(b->sectors, 4096);
	assert_int_equal(rd(&d, d.device, 8), 4096);
	blk_roundtrip(&d, 3000, 0x33);

	/* The config bytes end the section (virtio-blk saves nothing else). */
	uint8_t *cap = sb.data + sb.len - VIRTIO_BLK_CONFIG_LEN;
	uint64_t huge = htole64(1ull << 40);
	memcpy(cap, &huge, 8);
	state_cursor_init(&c, sb.data, sb.len);
	assert_int_equal(e->ops->load(e->opaque, &c, e->version, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "beyond the image"));
	assert_int_equal(b->sectors, 4096);
	assert_int_equal(rd(&d, d.common + 0x14, 1), 0);      /* nothing half-loaded */
	state_buf_free(&sb);
	virtio_blk_destroy(b);
	state_registry_destroy(ctx.state);
	ctx.state = NULL;
}

/* A hostile chain: the device stops, says it needs a reset, tells the
 * driver (config interrupt), and a reset brings it back. */
static void test_malformed_chain_needs_reset(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk *b = blk_up(&d, false, 0);
	irq_count(&d, 0);
	dtab(0)[0] = (struct virtq_desc){ BUF, 16, VIRTQ_DESC_F_NEXT, 1 };
	dtab(0)[1] = (struct virtq_desc){ BUF, 16, VIRTQ_DESC_F_NEXT, 0 };
	avail(0)[2] = 0;
	avail(0)[1] = 1;
	wr(&d, d.notify, 0, 2);
	fake_io_run();
	assert_true(rd(&d, d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used(0)[1], 0);
	assert_int_equal(irq_count(&d, 0), 1);      /* config vector */
	uint8_t gen = rd(&d, d.common + 0x15, 1);
	assert_true(gen > 0);

	/* Buffers descriptors outside RAM on a fresh device: same outcome. */
	drv_init(&d, &b->vp, ~0ull, 1);
	assert_false(rd(&d, d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
	uint8_t st = blk_req(&d, 4, 0, 0, 0, false, NULL);
	assert_int_equal(st, 0);
	struct seg bad[2] = { { RAM - 8, 16, false }, { BUF + 0x100, 1, true } };
	submit(&d, 0, bad, 2);
	assert_true(rd(&d, d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);

	/* A request without a status byte is malformed too. */
	drv_init(&d, &b->vp, ~0ull, 1);
	struct seg nostatus[1] = { { BUF, 16, false } };
	submit(&d, 0, nostatus, 1);
	assert_true(rd(&d, d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);
	virtio_blk_destroy(b);
}

static void test_feature_negotiation(void **state)
{
	(void)state;
	char err[256];
	struct virtio_blk *b = virtio_blk_create(&ctx, img_path, false, 0, err, sizeof(err));
	assert_non_null(b);
	struct drv d = { .vp = &b->vp };
	find_caps(&d);
	uint32_t c = d.common;
	wr(&d, c + 0x14, 3, 1);
	/* Without VERSION_1 a modern device refuses FEATURES_OK. */
	wr(&d, c + 0x08, 0, 4);
	wr(&d, c + 0x0c, 1u << 9, 4);
	wr(&d, c + 0x14, 0xb, 1);
	assert_int_equal(rd(&d, c + 0x14, 1), 3);
	/* Nor a feature it never offered. */
	wr(&d, c + 0x08, 1, 4);
	wr(&d, c + 0x0c, 1 | 1u << 20, 4);
	wr(&d, c + 0x14, 0xb, 1);
	assert_int_equal(rd(&d, c + 0x14, 1), 3);
	/* Queue selector out of range reads size 0 and ignores writes. */
	wr(&d, c + 0x16, 5, 2);
	assert_int_equal(rd(&d, c + 0x18, 2), 0);
	wr(&d, c + 0x1c, 1, 2);
	/* Unknown MSI-X vector reads back as NO_VECTOR. */
	wr(&d, c + 0x10, 99, 2);
	assert_int_equal(rd(&d, c + 0x10, 2), 0xffff);
	/* Out-of-range BAR accesses are harmless. */
	wr(&d, 0x7ffe, 0xffff, 4);
	assert_int_equal(rd(&d, 0x9000, 4), 0);
	virtio_blk_destroy(b);
}

static void test_msix_mask_and_intx(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk *b = blk_up(&d, false, 0);
	irq_count(&d, 1);
	msix_program(&d, 1, true);
	blk_req(&d, 4, 0, 0, 0, false, NULL);
	assert_int_equal(irq_count(&d, 1), 0);      /* masked: held pending */
	uint32_t pba = cfg32(&d.vp->pci, d.msix_cap + 8);
	assert_int_equal(rd(&d, pba, 8) & 2, 2);
	msix_program(&d, 1, false);
	assert_int_equal(irq_count(&d, 1), 1);      /* delivered on unmask */
	assert_int_equal(rd(&d, pba, 8) & 2, 0);
	assert_int_equal(fake_vmm.route_addr[b->vp.irq_gsi[1]], 0xfee00000);
	assert_int_equal(fake_vmm.route_data[b->vp.irq_gsi[1]], 0x41);

	/* Without MSI-X: INTx, acknowledged by reading ISR. */
	msix_enable(&d, false);
	avail(0)[2 + QS] = used(0)[1];   /* used_event: the next one */
	blk_req(&d, 4, 0, 0, 0, false, NULL);
	assert_int_equal(fake_vmm.irq_level[b->vp.pci.irq_line], 1);
	assert_int_equal(rd(&d, d.isr, 1), 1);
	assert_int_equal(fake_vmm.irq_level[b->vp.pci.irq_line], 0);
	assert_int_equal(rd(&d, d.isr, 1), 0);
	virtio_blk_destroy(b);
}

static void test_event_idx_suppression(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_blk *b = blk_up(&d, false, 0);
	assert_true(d.feat >> VIRTIO_F_EVENT_IDX & 1);
	irq_count(&d, 1);
	avail(0)[2 + QS] = 5;   /* used_event: interrupt once entry 5 is used */
	blk_req(&d, 4, 0, 0, 0, false, NULL);
	assert_int_equal(irq_count(&d, 1), 1);      /* the first always */
	blk_req(&d, 4, 0, 0, 0, false, NULL);
	assert_int_equal(irq_count(&d, 1), 0);      /* suppressed */
	/* avail_event tells the driver to kick for the next entry. */
	assert_int_equal(used(0)[2 + 4 * QS], 2);
	virtio_blk_destroy(b);
}

/* ---- virtio-rng ---- */

static void test_rng(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_rng *r = rng_up(&d);
	memset(mem.host + BUF, 0, 256);
	struct seg s[2] = { { BUF, 100, true }, { BUF + 128, 28, true } };
	submit(&d, 0, s, 2);
	assert_int_equal(used(0)[1], 1);
	assert_int_equal(used_len(0, 0), 128);
	unsigned nonzero = 0;
	for (int i = 0; i < 100; i++)
		nonzero += mem.host[BUF + i] != 0;
	assert_true(nonzero > 50);
	virtio_rng_destroy(r);
}

/* A firmware moves BAR 0 and turns memory decoding on and off: the queue's
 * notify ioeventfd follows the BAR and is unbound while it does not decode
 * (pci.c calls config_written after each config write). */
static void test_notify_follows_bar(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_rng *r = rng_up(&d);
	struct pci_device *p = &r->vp.pci;
	assert_int_equal(fake_vmm.ioeventfds, 1);
	assert_int_equal(fake_vmm.ioeventfd_addr, p->bars[0].addr + d.notify);
	p->config[4] |= 0x2;                       /* memory decoding on */
	p->ops->config_written(p, 4, 2);
	assert_int_equal(fake_vmm.ioeventfds, 1);
	p->bars[0].addr = 0xE0000000;              /* what pci.c does on a BAR write */
	p->ops->config_written(p, 0x10, 4);
	assert_int_equal(fake_vmm.ioeventfds, 1);
	assert_int_equal(fake_vmm.ioeventfd_addr, 0xE0000000 + d.notify);
	p->bars[0].addr = (uint32_t)~(p->bars[0].size - 1);   /* sizing: the mask */
	p->ops->config_written(p, 0x10, 4);
	assert_int_equal(fake_vmm.ioeventfds, 0);
	p->bars[0].addr = 0xE0004000;
	p->ops->config_written(p, 0x10, 4);
	assert_int_equal(fake_vmm.ioeventfd_addr, 0xE0004000 + d.notify);
	p->config[4] &= (uint8_t)~0x2;             /* decoding off: unbound */
	p->ops->config_written(p, 4, 2);
	assert_int_equal(fake_vmm.ioeventfds, 0);
	p->config[4] |= 0x2;
	p->ops->config_written(p, 4, 2);
	assert_int_equal(fake_vmm.ioeventfds, 1);
	virtio_rng_destroy(r);
	assert_int_equal(fake_vmm.ioeventfds, 0);
}

/* ---- snapshot state (state registry entry of the transport) ---- */

/* A driven device's state saved, the device reset by its driver, the state
 * loaded: registers, queues and MSI-X read back as before, and the device
 * serves the next request on the same rings. Then hostile variants of the
 * saved bytes are refused without changing anything. */
static void test_state_save_load(void **state)
{
	(void)state;
	char err[256];
	ctx.state = state_registry_create();
	struct drv d;
	struct virtio_rng *r = rng_up(&d);
	const struct state_entry *e = state_registry_find(ctx.state, "virtio-rng", 0);
	assert_non_null(e);
	struct seg s[1] = { { BUF, 64, true } };
	submit(&d, 0, s, 1);
	assert_int_equal(used(0)[1], 1);

	struct state_buf b;
	state_buf_init(&b);
	assert_int_equal(e->ops->save(e->opaque, &b, err, sizeof(err)), 0);
	wr(&d, d.common + 0x14, 0, 1);                        /* driver reset */
	assert_int_equal(rd(&d, d.common + 0x14, 1), 0);
	struct state_cursor c;
	state_cursor_init(&c, b.data, b.len);
	assert_int_equal(e->ops->load(e->opaque, &c, e->version, err, sizeof(err)), 0);
	assert_int_equal(rd(&d, d.common + 0x14, 1), 0xf);   /* DRIVER_OK again */
	wr(&d, d.common + 0x16, 0, 2);
	assert_int_equal(rd(&d, d.common + 0x18, 2), QS);
	assert_int_equal(rd(&d, d.common + 0x20, 8), ring(0, 0));
	assert_int_equal(rd(&d, d.common + 0x1c, 2), 1);
	assert_int_equal(rd(&d, d.common + 0x1a, 2), 1);
	fake_io_run();                                        /* the kick after load */
	submit(&d, 0, s, 1);
	assert_int_equal(used(0)[1], 2);                      /* same rings, next entry */

	/* Truncated, a queue size the device does not offer, trailing bytes. */
	struct state_buf bad;
	state_buf_init(&bad);
	state_buf_free(&b);
	assert_int_equal(e->ops->save(e->opaque, &b, err, sizeof(err)), 0);
	state_cursor_init(&c, b.data, b.len - 1);
	assert_int_equal(e->ops->load(e->opaque, &c, e->version, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "truncated"));
	state_put_bytes(&bad, b.data, b.len);
	state_put_u8(&bad, 0);
	state_cursor_init(&c, bad.data, bad.len);
	assert_int_equal(e->ops->load(e->opaque, &c, e->version, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "trailing"));
	/* queue size: after counts (12), features (8), selectors (8), status,
	 * generation (2), queue select, config vector (4), ISR, INTx (2),
	 * pending (8), 2 MSI-X entries (32), vector and enable (4) */
	size_t qsize_at = 12 + 8 + 8 + 2 + 4 + 2 + 8 + 32 + 4;
	memcpy(bad.data, b.data, b.len);
	bad.data[qsize_at] = 3;
	bad.data[qsize_at + 1] = 0;
	bad.len = b.len;
	state_cursor_init(&c, bad.data, bad.len);
	assert_int_equal(e->ops->load(e->opaque, &c, e->version, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "size 3"));
	assert_int_equal(rd(&d, d.common + 0x14, 1), 0);      /* nothing half-loaded */
	state_buf_free(&b);
	state_buf_free(&bad);
	virtio_rng_destroy(r);
	state_registry_destroy(ctx.state);
	ctx.state = NULL;
}

/* ---- virtio-scsi: the CD-ROM's medium changed by the host ---- */

#define SCSI_REQ 51
#define SCSI_RESP 108

/* An ISO 9660-looking image of blocks 2048-byte blocks, each filled with
 * fill except the volume descriptor's signature. */
static int make_iso(const char *path, unsigned blocks, uint8_t fill, bool signature)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	uint8_t blk[2048];
	memset(blk, fill, sizeof(blk));
	for (unsigned i = 0; i < blocks; i++)
		assert_int_equal(pwrite(fd, blk, sizeof(blk), (off_t)i * 2048), 2048);
	if (signature)
		assert_int_equal(pwrite(fd, "\001CD001", 6, 16 * 2048), 6);
	return fd;
}

/* One command to target 0, LUN 0 with 4 KiB of data-in room; returns the
 * SCSI status, the sense key/ASC in *sense (0 when GOOD). */
static uint8_t scsi_cmd(struct drv *d, const uint8_t *cdb, unsigned cdb_len, uint32_t *sense)
{
	uint8_t req[SCSI_REQ] = {1};
	memcpy(req + 19, cdb, cdb_len);
	memcpy(mem.host + BUF, req, sizeof(req));
	memset(mem.host + BUF + 0x100, 0xEE, SCSI_RESP + 4096);
	struct seg s[3] = { { BUF, SCSI_REQ, false }, { BUF + 0x100, SCSI_RESP, true },
			    { BUF + 0x100 + SCSI_RESP, 4096, true } };
	uint16_t before = used(2)[1];
	submit(d, 2, s, 3);
	assert_int_equal(used(2)[1], (uint16_t)(before + 1));
	const uint8_t *resp = mem.host + BUF + 0x100;
	assert_int_equal(resp[11], 0);                 /* VIRTIO_SCSI_S_OK */
	*sense = resp[10] ? (uint32_t)resp[12 + 2] << 16 | (uint32_t)resp[12 + 12] << 8 | resp[12 + 13] : 0;
	return resp[10];
}

static uint32_t scsi_tur(struct drv *d)
{
	uint8_t cdb[6] = {0};
	uint32_t sense;
	scsi_cmd(d, cdb, 6, &sense);
	return sense;
}

/* READ(10) of block lba: its first byte, or -1 with the sense in *sense. */
static int scsi_read_byte(struct drv *d, uint32_t lba, uint32_t *sense)
{
	uint8_t cdb[10] = {0x28, 0, (uint8_t)(lba >> 24), (uint8_t)(lba >> 16), (uint8_t)(lba >> 8),
			   (uint8_t)lba, 0, 0, 1};
	if (scsi_cmd(d, cdb, 10, sense))
		return -1;
	return mem.host[BUF + 0x100 + SCSI_RESP];
}

static void test_scsi_change_medium(void **state)
{
	(void)state;
	char err[256], a[] = "/tmp/kvz-test-cd-a-XXXXXX", b[] = "/tmp/kvz-test-cd-b-XXXXXX";
	close(mkstemp(a));
	close(mkstemp(b));
	close(make_iso(a, 20, 0xA1, true));
	int bfd = make_iso(b, 40, 0xB2, true);
	ctx.state = state_registry_create();
	struct virtio_scsi *cd = virtio_scsi_create(&ctx, a, err, sizeof(err));
	assert_non_null(cd);
	struct drv d;
	drv_init(&d, &cd->vp, ~0ull, 3);
	uint32_t sense;
	assert_int_equal(scsi_tur(&d), 0);
	assert_int_equal(scsi_read_byte(&d, 3, &sense), 0xA1);

	/* Hostile media: not an ISO, a directory, too small. Each is refused,
	 * its descriptor closed, the drive unchanged. */
	struct virtio_scsi_tray t;
	int bad = make_iso(img_path, 20, 0, false);
	assert_int_equal(virtio_scsi_change(cd, bad, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "no CD001"));
	assert_int_equal(fcntl(bad, F_GETFD), -1);
	int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(virtio_scsi_change(cd, dir, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
	bad = make_iso(img_path, 2, 0, false);
	assert_int_equal(virtio_scsi_change(cd, bad, &t, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too small"));
	assert_false(t.opened || t.closed);
	assert_int_equal(scsi_read_byte(&d, 3, &sense), 0xA1);

	/* The change: unit attention once, then the new medium's data. */
	assert_int_equal(virtio_scsi_change(cd, bfd, &t, err, sizeof(err)), 0);
	assert_true(t.opened && t.closed);
	assert_int_equal(scsi_tur(&d), 0x062800);
	assert_int_equal(scsi_tur(&d), 0);
	assert_int_equal(scsi_read_byte(&d, 39, &sense), 0xB2);

	/* The guest locks the tray: eject refused, then forced. */
	uint8_t prevent[6] = {0x1E, 0, 0, 0, 1};
	assert_int_equal(scsi_cmd(&d, prevent, 6, &sense), 0);
	assert_int_equal(virtio_scsi_eject(cd, false, &t, err, sizeof(err)), -1);
	assert_false(t.opened);
	bad = make_iso(img_path, 20, 0xC3, true);
	assert_int_equal(virtio_scsi_change(cd, bad, &t, err, sizeof(err)), -1);
	assert_string_equal(err, "locked");
	assert_int_equal(scsi_read_byte(&d, 39, &sense), 0xB2);
	assert_int_equal(virtio_scsi_eject(cd, true, &t, err, sizeof(err)), 0);
	assert_true(t.opened);
	assert_int_equal(scsi_tur(&d), 0x023A00);
	assert_int_equal(scsi_read_byte(&d, 0, &sense), -1);
	assert_int_equal(sense, 0x023A00);
	assert_int_equal(virtio_scsi_eject(cd, false, &t, err, sizeof(err)), 0);   /* again: no-op */
	assert_false(t.opened);

	/* The guest's own tray moves (START STOP UNIT, LoEj) are announced
	 * with DEVICE_TRAY_MOVED to the QMP server set on the device. */
	char qdir[] = "/tmp/kvz-test-cd-qmp-XXXXXX", sock[64];
	assert_non_null(mkdtemp(qdir));
	snprintf(sock, sizeof(sock), "%s/qmp", qdir);
	struct qmp_server *srv = qmp_server_start(sock, "test", NULL, 0, NULL, err, sizeof(err));
	assert_non_null(srv);
	struct qmp_client *cl = qmp_client_connect(sock, 5000, err, sizeof(err));
	assert_non_null(cl);
	virtio_scsi_set_qmp(cd, srv);
	uint8_t close_tray[6] = {0x1B, 0, 0, 0, 3}, open_tray[6] = {0x1B, 0, 0, 0, 2};
	assert_int_equal(scsi_cmd(&d, close_tray, 6, &sense), 0);   /* empty: tray closes */
	assert_int_equal(scsi_cmd(&d, open_tray, 6, &sense), 0);
	for (int want = 0; want < 2; want++) {
		json_t *ev = qmp_client_next_event(cl, 5000);
		assert_non_null(ev);
		assert_string_equal(json_string_value(json_object_get(ev, "event")), "DEVICE_TRAY_MOVED");
		json_t *data = json_object_get(ev, "data");
		assert_string_equal(json_string_value(json_object_get(data, "id")), "cdrom0");
		assert_int_equal(json_is_true(json_object_get(data, "tray-open")), want);
		json_decref(ev);
	}
	assert_false(cd->cd.tray_moved);
	assert_int_equal(scsi_cmd(&d, open_tray, 6, &sense), 0);     /* already open: no event */
	assert_null(qmp_client_next_event(cl, 200));
	virtio_scsi_set_qmp(cd, NULL);
	qmp_client_close(cl);
	qmp_server_stop(srv);
	rmdir(qdir);

	/* Saved empty, then a medium put in: loading the saved state takes
	 * the drive back to empty. */
	const struct state_entry *e = state_registry_find(ctx.state, "virtio", 0);
	assert_non_null(e);
	assert_int_equal(e->version, VIRTIO_SCSI_STATE_VERSION);
	assert_int_equal(e->min_version, 1);
	struct state_buf sb;
	state_buf_init(&sb);
	assert_int_equal(e->ops->save(e->opaque, &sb, err, sizeof(err)), 0);
	bad = make_iso(img_path, 20, 0xC3, true);
	assert_int_equal(virtio_scsi_change(cd, bad, &t, err, sizeof(err)), 0);
	struct state_cursor c;
	state_cursor_init(&c, sb.data, sb.len);
	assert_int_equal(e->ops->load(e->opaque, &c, 2, err, sizeof(err)), 0);
	assert_int_equal(scsi_tur(&d), 0x023A00);
	/* Version 1 (the transport alone): loaded, the drive as it is. */
	size_t v1_len = sb.len - (5 + 8 + 18);
	state_cursor_init(&c, sb.data, v1_len);
	assert_int_equal(e->ops->load(e->opaque, &c, 1, err, sizeof(err)), 0);
	/* Saved with a 40-block medium: a drive with another medium refuses. */
	bfd = open(b, O_RDONLY | O_CLOEXEC);
	assert_int_equal(virtio_scsi_change(cd, bfd, &t, err, sizeof(err)), 0);
	state_buf_free(&sb);
	state_buf_init(&sb);
	assert_int_equal(e->ops->save(e->opaque, &sb, err, sizeof(err)), 0);
	bad = make_iso(img_path, 20, 0xC3, true);
	assert_int_equal(virtio_scsi_change(cd, bad, &t, err, sizeof(err)), 0);
	state_cursor_init(&c, sb.data, sb.len);
	assert_int_equal(e->ops->load(e->opaque, &c, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "supply the same ISO"));
	/* Hostile drive state: an event code beyond the media class's. */
	sb.data[v1_len + 4] = 9;
	state_cursor_init(&c, sb.data, sb.len);
	assert_int_equal(e->ops->load(e->opaque, &c, 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bad CD-ROM state"));
	state_buf_free(&sb);
	virtio_scsi_destroy(cd);
	state_registry_destroy(ctx.state);
	ctx.state = NULL;
	unlink(a);
	unlink(b);
}

/* ---- virtio-balloon ---- */

/* While the machine is paused a query-balloon keeps the statistics buffer:
 * nothing may write guest RAM (a snapshot may be being written). */
static void test_balloon_paused_keeps_stats_buffer(void **state)
{
	(void)state;
	struct drv d;
	struct virtio_balloon *b = balloon_up(&d, false);
	uint8_t rec[10] = { 4, 0 };
	memcpy(mem.host + BUF, rec, sizeof(rec));
	struct seg st[1] = { { BUF, sizeof(rec), false } };
	submit(&d, 2, st, 1);
	assert_true(b->stats_held);
	b->vp.p.ops->pause(b, &b->vp);
	json_decref(virtio_balloon_query(b));
	assert_int_equal(used(2)[1], 0);            /* still held */
	b->vp.p.ops->resume(b, &b->vp);
	json_decref(virtio_balloon_query(b));
	assert_int_equal(used(2)[1], 1);            /* given back */
	virtio_balloon_destroy(b);
}

static void test_balloon(void **state)
{
	(void)state;
	char err[256];
	/* Deflate-on-OOM is opt-in: with it Linux keeps MemTotal unchanged. */
	struct drv d;
	struct virtio_balloon *b = balloon_up(&d, true);
	assert_true(d.feat >> 1 & 1);   /* stats */
	assert_true(d.feat >> 2 & 1);   /* deflate on OOM */
	irq_count(&d, 0);

	assert_int_equal(virtio_balloon_set_target(b, RAM - 2 * 4096, err, sizeof(err)), 0);
	assert_int_equal(rd(&d, d.device, 4), 2);   /* num_pages */
	assert_int_equal(irq_count(&d, 0), 1);      /* config change */

	/* Inflate two pages: their contents go back to the host. */
	memset(mem.host + 0x200000, 0xaa, 2 * 4096);
	uint32_t pfns[2] = { 0x200, 0x201 };
	memcpy(mem.host + BUF, pfns, sizeof(pfns));
	struct seg s[1] = { { BUF, sizeof(pfns), false } };
	submit(&d, 0, s, 1);
	assert_int_equal(used(0)[1], 1);
	assert_int_equal(mem.host[0x200000], 0);
	assert_int_equal(mem.host[0x201fff], 0);
	assert_int_equal(b->discarded_pages, 2);
	/* A PFN outside RAM is ignored, not fatal. */
	pfns[0] = 0xfffffff;
	memcpy(mem.host + BUF, pfns, sizeof(pfns));
	submit(&d, 0, s, 1);
	assert_false(rd(&d, d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);

	wr(&d, d.device + 4, 2, 4);                 /* actual */
	json_t *q = virtio_balloon_query(b);
	assert_int_equal(json_integer_value(json_object_get(q, "actual")), RAM - 2 * 4096);
	json_decref(q);

	/* Statistics: the guest queues a buffer, we read it, and hand it back
	 * on the next query so the guest refreshes it. */
	uint8_t rec[10] = { 4, 0 };
	uint64_t freemem = 123456789;
	memcpy(rec + 2, &freemem, 8);
	memcpy(mem.host + BUF + 0x1000, rec, sizeof(rec));
	struct seg st[1] = { { BUF + 0x1000, sizeof(rec), false } };
	submit(&d, 2, st, 1);
	assert_int_equal(used(2)[1], 0);            /* held */
	q = virtio_balloon_query(b);
	assert_int_equal(json_integer_value(json_object_get(q, "stat-free-memory")), 123456789);
	json_decref(q);
	assert_int_equal(used(2)[1], 1);            /* given back */

	/* A hostile buffer naming a million frames is cut short, not served
	 * for minutes: at most 65536 are looked at. */
	uint64_t before = b->discarded_pages;
	memset(mem.host + 0x200000, 0, 0x200000);
	struct seg huge[1] = { { 0x200000, 0x200000, false } };
	submit(&d, 0, huge, 1);
	assert_true(b->discarded_pages - before <= 65536);
	assert_true(b->discarded_pages - before > 0);
	assert_false(rd(&d, d.common + 0x14, 1) & VIRTIO_STATUS_NEEDS_RESET);

	/* Deflate needs nothing from the host but the buffer back. */
	submit(&d, 1, s, 1);
	assert_int_equal(used(1)[1], 1);
	assert_int_equal(virtio_balloon_set_target(b, 0, err, sizeof(err)), -1);
	virtio_balloon_destroy(b);
}

/* ---- the device set ---- */

static void test_devices_options(void **state)
{
	(void)state;
	char err[256];
	char spec[128];
	struct vmm_context c = ctx;

	const char *bad[] = { "", ",readonly", "x,bogus" };
	for (size_t i = 0; i < 3; i++) {
		struct virtio_options o = { .disks = &bad[i], .ndisks = 1 };
		err[0] = 0;
		assert_null(virtio_devices_create(&c, &o, err, sizeof(err)));
		assert_true(strlen(err) > 0);
		assert_null(strchr(err, '\n'));
	}
	const char *missing = "/nonexistent/disk.raw";
	struct virtio_options o = { .disks = &missing, .ndisks = 1 };
	assert_null(virtio_devices_create(&c, &o, err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));

	/* Block options: each refusal names the option, nothing stays. */
	const char *opts[] = { "num-queues=0", "num-queues=9", "num-queues=2x", "num-queues=",
			       "num-queues=-1", "aio=threads", "format=vmdk", "format=" };
	const char *says[] = { "num-queues", "num-queues", "num-queues", "num-queues",
			       "num-queues", "aio=threads", "unknown format 'vmdk'", "format" };
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		snprintf(spec, sizeof(spec), "%s,%s", img_path, opts[i]);
		const char *d1 = spec;
		o = (struct virtio_options){ .disks = &d1, .ndisks = 1, .ncpus = 2 };
		err[0] = 0;
		assert_null(virtio_devices_create(&c, &o, err, sizeof(err)));
		if (!strstr(err, says[i]))
			fail_msg("%s: %s", opts[i], err);
		assert_null(strchr(err, '\n'));
		assert_int_equal(fake_io_count(), 0);
		assert_int_equal(fake_vmm.routes, 0);
	}

	/* The second disk fails: the first is torn down, nothing stays. */
	snprintf(spec, sizeof(spec), "%s,readonly", img_path);
	const char *two[] = { spec, missing };
	o = (struct virtio_options){ .disks = two, .ndisks = 2, .rng = true };
	assert_null(virtio_devices_create(&c, &o, err, sizeof(err)));
	assert_int_equal(fake_vmm.routes, 0);
	assert_int_equal(fake_io_count(), 0);

	const char *nets[] = { "tap=", "tap=a/b", "bridge=br0", "tap=x,mac=01:00:00:00:00:01",
			       "tap=x,mac=52:54:00:zz:00:01", "tap=x,color=red",
			       "tap=waytoolongname0123456789" };
	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
		o = (struct virtio_options){ .nets = &nets[i], .nnets = 1 };
		err[0] = 0;
		assert_null(virtio_devices_create(&c, &o, err, sizeof(err)));
		assert_non_null(strstr(err, "--net"));
	}

	const char *one[] = { spec };
	o = (struct virtio_options){ .disks = one, .ndisks = 1, .balloon = true, .rng = true };
	struct virtio_devices *vd = virtio_devices_create(&c, &o, err, sizeof(err));
	assert_non_null(vd);
	json_t *bs = virtio_devices_blockstats(vd);
	assert_int_equal(json_array_size(bs), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(bs, 0), "device")), "vda");
	assert_int_equal(json_integer_value(json_object_get(
		json_object_get(json_array_get(bs, 0), "stats"), "rd_bytes")), 0);
	json_decref(bs);
	assert_int_equal(virtio_devices_balloon_set(vd, RAM / 2, err, sizeof(err)), 0);
	json_t *q = virtio_devices_balloon_query(vd, err, sizeof(err));
	assert_non_null(q);
	json_decref(q);
	virtio_devices_reset(vd);
	virtio_devices_destroy(vd);

	o = (struct virtio_options){ 0 };
	vd = virtio_devices_create(&c, &o, err, sizeof(err));
	assert_non_null(vd);
	assert_int_equal(virtio_devices_balloon_set(vd, RAM / 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No balloon"));
	assert_null(virtio_devices_balloon_query(vd, err, sizeof(err)));
	virtio_devices_destroy(vd);
	assert_int_equal(fake_vmm.routes, 0);
	assert_int_equal(fake_io_count(), 0);
}

/* ---- virtio-net on a real TAP (root and /dev/net/tun needed) ---- */

static int packet_socket(const char *ifname)
{
	int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
	assert_true(fd >= 0);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL),
				   .sll_ifindex = (int)if_nametoindex(ifname) };
	assert_int_equal(bind(fd, (struct sockaddr *)&sll, sizeof(sll)), 0);
	return fd;
}

static bool net_possible(void)
{
	int fd = open("/dev/net/tun", O_RDWR);
	if (fd < 0 || geteuid() != 0) {
		if (fd >= 0)
			close(fd);
		return false;
	}
	close(fd);
	return true;
}

static void test_net_options(void **state)
{
	(void)state;
	char err[256];
	struct virtio_net_options o;
	assert_int_equal(virtio_net_parse("tap=t0", 0, &o, err, sizeof(err)), 0);
	assert_int_equal(o.vhost, VIRTIO_NET_VHOST_AUTO);
	assert_int_equal(o.mac[0], 0x52);                  /* random, locally administered */
	assert_int_equal(virtio_net_parse("tap=t0,vhost=on", 0, &o, err, sizeof(err)), 0);
	assert_int_equal(o.vhost, VIRTIO_NET_VHOST_ON);
	assert_int_equal(virtio_net_parse("vhost=off,tap=t0", 0, &o, err, sizeof(err)), 0);
	assert_int_equal(o.vhost, VIRTIO_NET_VHOST_OFF);
	assert_int_equal(virtio_net_parse("tap=t0,vhost=maybe", 0, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "vhost= takes on, off or auto"));
	assert_int_equal(virtio_net_parse("tap=t0,vhost=", 0, &o, err, sizeof(err)), -1);
	assert_int_equal(virtio_net_parse("tap=t0,mac=01:00:00:00:00:01", 0, &o, err, sizeof(err)), -1);
	assert_int_equal(virtio_net_parse("mac=52:54:00:00:00:01", 0, &o, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "tap=NAME is required"));
}

/* One control command: cmd as out segments of the given sizes, then a
 * device-writable ack byte unless no_ack. Returns the used length; *ack
 * is the byte the device wrote (0xff: untouched). */
static uint32_t net_ctrl(struct drv *d, const uint8_t *cmd, const uint32_t *parts, unsigned nparts,
			 bool no_ack, uint8_t *ack)
{
	uint8_t *c = mem.host + BUF + 0x20000;
	struct seg sg[4];
	uint32_t off = 0;
	for (unsigned i = 0; i < nparts; i++) {
		memcpy(c + off, cmd + off, parts[i]);
		sg[i] = (struct seg){ BUF + 0x20000 + off, parts[i], false };
		off += parts[i];
	}
	c[0x1000] = 0xff;
	if (!no_ack)
		sg[nparts] = (struct seg){ BUF + 0x21000, 1, true };
	uint16_t idx = used(2)[1];
	submit(d, 2, sg, nparts + !no_ack);
	assert_int_equal(used(2)[1], (uint16_t)(idx + 1));
	*ack = c[0x1000];
	return used_len(2, idx);
}

/* After a live migration: the RARP on the TAP, VIRTIO_NET_S_ANNOUNCE and a
 * configuration interrupt; the driver's ANNOUNCE_ACK clears it; hostile
 * control commands are refused without effect; reset clears it too. */
static void net_announce(struct drv *d, struct virtio_net *n, int ps, const uint8_t mac[6])
{
	assert_int_equal(rd(d, d->device + 6, 2), 1);          /* link up */
	irq_count(d, 0);
	assert_int_equal(virtio_net_announce(n), 0);
	assert_int_equal(rd(d, d->device + 6, 2), 3);          /* + announce */
	assert_int_equal(irq_count(d, 0), 1);                   /* config vector */
	bool rarp = false;
	for (int tries = 0; tries < 50 && !rarp; tries++) {
		struct pollfd p = { .fd = ps, .events = POLLIN };
		uint8_t rx[2048];
		if (poll(&p, 1, 100) == 1)
			rarp = recv(ps, rx, sizeof(rx), 0) >= 42 && rx[12] == 0x80 && rx[13] == 0x35 &&
			       !memcmp(rx + 6, mac, 6);
	}
	assert_true(rarp);

	static const uint8_t bad_class[] = { 0, 0 }, with_data[] = { 3, 0, 0 }, bad_cmd[] = { 3, 1 };
	static const uint8_t ack_cmd[] = { 3, 0 };
	static uint8_t too_long[200] = { 3, 0 };
	uint8_t ack;
	uint32_t one[] = { 2 }, three[] = { 3 }, halves[] = { 1, 1 }, first[] = { 1 }, big[] = { 200 };
	assert_int_equal(net_ctrl(d, bad_class, one, 1, false, &ack), 1);
	assert_int_equal(ack, 1);                                /* VIRTIO_NET_ERR */
	assert_int_equal(net_ctrl(d, with_data, three, 1, false, &ack), 1);
	assert_int_equal(ack, 1);
	assert_int_equal(net_ctrl(d, bad_cmd, one, 1, false, &ack), 1);
	assert_int_equal(ack, 1);
	assert_int_equal(net_ctrl(d, ack_cmd, first, 1, false, &ack), 1);   /* header cut short */
	assert_int_equal(ack, 1);
	assert_int_equal(net_ctrl(d, too_long, big, 1, false, &ack), 1);
	assert_int_equal(ack, 1);
	assert_int_equal(net_ctrl(d, ack_cmd, one, 1, true, &ack), 0);      /* nowhere to ack */
	assert_int_equal(rd(d, d->device + 6, 2), 3);          /* none of them acked it */
	assert_int_equal(net_ctrl(d, ack_cmd, halves, 2, false, &ack), 1);  /* split header */
	assert_int_equal(ack, 0);                                /* VIRTIO_NET_OK */
	assert_int_equal(rd(d, d->device + 6, 2), 1);

	assert_int_equal(virtio_net_announce(n), 0);
	wr(d, d->common + 0x14, 0, 1);                         /* reset */
	assert_int_equal(rd(d, d->device + 6, 2), 1);
}

static void test_net_tap(void **state)
{
	(void)state;
	if (!net_possible()) {
		fprintf(stderr, "skipped: virtio-net test needs root and /dev/net/tun\n");
		skip();
	}
	char err[256], spec[96], tap[16], br[16];
	snprintf(tap, sizeof(tap), "kvzt%ut", (unsigned)getpid() % 100000);
	snprintf(br, sizeof(br), "kvzt%ub", (unsigned)getpid() % 100000);
	/* The I/O thread's data path: vhost-net is tested in the lab. */
	snprintf(spec, sizeof(spec), "tap=%s,mac=52:54:00:ab:cd:ef,bridge=%s,vhost=off", tap, br);
	struct virtio_net_options no;
	assert_int_equal(virtio_net_parse(spec, 0, &no, err, sizeof(err)), 0);
	struct virtio_net *n = virtio_net_create(&ctx, &no, err, sizeof(err));
	assert_non_null(n);
	char path[128];
	snprintf(path, sizeof(path), "/sys/class/net/%s/brif/%s", br, tap);
	assert_int_equal(access(path, F_OK), 0);     /* bridge created, TAP on it */

	struct drv d;
	uint64_t feat = drv_init(&d, &n->vp, ~0ull, 3);
	assert_true(feat >> 15 & 1);                 /* mergeable rx buffers */
	assert_true(feat >> 17 & 1);                 /* control queue */
	assert_true(feat >> 21 & 1);                 /* guest announce */
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = rd(&d, d.device + i, 1);
	assert_memory_equal(mac, "\x52\x54\x00\xab\xcd\xef", 6);

	/* Receive: eight 2 KiB buffers, then a frame sent to the TAP's
	 * interface arrives in one of them with its vnet header. */
	for (int i = 0; i < 8; i++) {
		struct seg s[1] = { { BUF + 0x1000 * i, 2048, true } };
		submit(&d, 0, s, 1);
	}
	int ps = packet_socket(tap);
	uint8_t frame[100];
	memset(frame, 0x5c, sizeof(frame));
	memcpy(frame, mac, 6);
	memcpy(frame + 6, "\x02\x00\x00\x00\x00\x01", 6);
	frame[12] = 0x88;
	frame[13] = 0xb5;
	assert_int_equal(send(ps, frame, sizeof(frame), 0), (ssize_t)sizeof(frame));
	bool got = false;
	for (int tries = 0; tries < 50 && !got; tries++) {
		usleep(20000);
		fake_io_run();
		for (uint16_t u = 0; u < used(0)[1] && !got; u++) {
			uint32_t id = ((uint32_t *)(used(0) + 2))[2 * (u % QS)];
			uint8_t *b = mem.host + BUF + 0x1000 * (id % 8);
			got = used_len(0, u) == 12 + sizeof(frame) &&
			      !memcmp(b + 12, frame, sizeof(frame)) && b[10] == 1 && b[11] == 0;
		}
	}
	assert_true(got);

	/* Transmit: header + frame from the guest shows up on the interface. */
	uint8_t *tx = mem.host + BUF + 0x10000;
	memset(tx, 0, 12);
	memset(tx + 12, 0xff, 6);
	memcpy(tx + 18, mac, 6);
	tx[24] = 0x88;
	tx[25] = 0xb5;
	memcpy(tx + 26, "kvz-tx-test", 11);
	struct seg t[2] = { { BUF + 0x10000, 12, false }, { BUF + 0x1000c, 25, false } };
	submit(&d, 1, t, 2);
	assert_int_equal(used(1)[1], 1);
	got = false;
	for (int tries = 0; tries < 50 && !got; tries++) {
		struct pollfd p = { .fd = ps, .events = POLLIN };
		if (poll(&p, 1, 100) != 1)
			continue;
		uint8_t rx[2048];
		ssize_t r = recv(ps, rx, sizeof(rx), 0);
		got = r >= 25 && !memcmp(rx + 14, "kvz-tx-test", 11) && !memcmp(rx + 6, mac, 6);
	}
	assert_true(got);
	net_announce(&d, n, ps, mac);
	close(ps);
	virtio_net_destroy(n);
	assert_int_equal(if_nametoindex(tap), 0);    /* our TAP went with us */
	char nlerr[256];
	assert_int_equal(nl_link_del(br, nlerr, sizeof(nlerr)), 0);

	/* A bridge that is not a bridge: creation fails, no TAP stays. */
	snprintf(spec, sizeof(spec), "tap=%s,bridge=lo", tap);
	assert_int_equal(virtio_net_parse(spec, 0, &no, err, sizeof(err)), 0);
	assert_null(virtio_net_create(&ctx, &no, err, sizeof(err)));
	assert_non_null(strstr(err, "bridge=lo"));
	assert_int_equal(if_nametoindex(tap), 0);
	assert_int_equal(fake_vmm.routes, 0);
	assert_int_equal(fake_io_count(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_net_options),
		T(test_blk_rw),
		T(test_blk_rw_sync_engine),
		T(test_blk_many_in_flight),
		T(test_blk_multiqueue),
		T(test_blk_pause_drains),
		T(test_blk_batch_one_interrupt),
		T(test_blk_hostile_requests),
		T(test_blk_write_zeroes_discard),
		T(test_blk_readonly),
		T(test_blk_exclusive_lock),
		T(test_blk_qcow2_pause_commits),
		T(test_blk_resize_raw),
		T(test_blk_resize_readonly),
		T(test_blk_resize_qcow2),
		T(test_blk_resize_state),
		T(test_malformed_chain_needs_reset),
		T(test_feature_negotiation),
		T(test_msix_mask_and_intx),
		T(test_event_idx_suppression),
		T(test_rng),
		T(test_notify_follows_bar),
		T(test_balloon),
		T(test_balloon_paused_keeps_stats_buffer),
		T(test_state_save_load),
		T(test_scsi_change_medium),
		T(test_devices_options),
		T(test_net_tap),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
