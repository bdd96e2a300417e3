/* virtio 1.x modern PCI transport. BAR 0 layout (32 KiB):
 *   0x0000 common config      0x1000 ISR        0x2000 device config
 *   0x3000 notify (4 bytes per queue)           0x4000 MSI-X table
 *   0x5000 MSI-X PBA
 * Kicks: one eventfd per queue, bound to its notify address with
 * KVM_IOEVENTFD when the driver enables the queue, read on the I/O thread.
 * Interrupts: one eventfd + MSI route per MSI-X vector, bound with
 * KVM_IRQFD for the device's lifetime; the route follows the guest's table
 * writes. Without MSI-X, INTx through the ISR register.
 * Offloaded queues (vhost): the kernel reads the kick eventfd and signals
 * the vector's irqfd directly, or a proxy eventfd while the vector is
 * masked or MSI-X is off. */
#include "virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "io_thread.h"
#include "irq.h"
#include "log.h"
#include "state/state_registry.h"

#define BAR_SIZE       0x8000u
#define COMMON_OFF     0x0000u
#define COMMON_LEN     0x38u
#define ISR_OFF        0x1000u
#define DEVCFG_OFF     0x2000u
#define NOTIFY_OFF     0x3000u
#define NOTIFY_MULT    4u
#define MSIX_TABLE_OFF 0x4000u
#define MSIX_PBA_OFF   0x5000u

#define CAP_VNDR 0x09
#define CAP_MSIX 0x11
#define CFG_COMMON 1
#define CFG_NOTIFY 2
#define CFG_ISR    3
#define CFG_DEVICE 4

#define CAP_START 0x40
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, v);
	put16(p + 2, v >> 16);
}

static uint64_t get_le(const uint8_t *p, unsigned len)
{
	uint64_t v = 0;

	for (unsigned i = len; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static void put_le(uint8_t *p, uint64_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++, v >>= 8)
		p[i] = v;
}

bool virtio_pci_has_feature(const struct virtio_pci *vp, unsigned f)
{
	return vp->driver_features >> f & 1;
}

static uint64_t offered_features(const struct virtio_pci *vp)
{
	return vp->p.features | 1ull << VIRTIO_F_VERSION_1 |
	       1ull << VIRTIO_F_INDIRECT_DESC | 1ull << VIRTIO_F_EVENT_IDX;
}

/* ---- interrupts ---- */

static void raise_vector(struct virtio_pci *vp, uint16_t vector)
{
	if (!vp->msix_enabled) {
		if (!vp->intx_level && vm_set_irq_line(vp->ctx->vm, vp->pci.irq_line, 1) == 0)
			vp->intx_level = true;
		return;
	}
	if (vector >= vp->nvectors)
		return;
	if (vp->msix_masked || (vp->msix[vector].ctrl & 1)) {
		vp->msix_pending |= 1ull << vector;
		return;
	}
	if (eventfd_write(vp->irq_fd[vector], 1) < 0)
		kvz_warn("virtio %s: interrupt vector %u: %s", vp->name, vector, strerror(errno));
}

static void lower_intx(struct virtio_pci *vp)
{
	if (vp->intx_level && vm_set_irq_line(vp->ctx->vm, vp->pci.irq_line, 0) == 0)
		vp->intx_level = false;
}

static void deliver_pending(struct virtio_pci *vp)
{
	if (!vp->msix_enabled || vp->msix_masked)
		return;
	for (unsigned v = 0; v < vp->nvectors; v++) {
		if (!(vp->msix_pending >> v & 1) || (vp->msix[v].ctrl & 1))
			continue;
		vp->msix_pending &= ~(1ull << v);
		raise_vector(vp, v);
	}
}

void virtio_pci_queue_done(struct virtio_pci *vp, unsigned q)
{
	if (q >= vp->p.nqueues || !virtq_need_interrupt(&vp->vq[q]))
		return;
	vp->isr |= 1;
	raise_vector(vp, vp->queue_vector[q]);
}

void virtio_pci_config_changed(struct virtio_pci *vp)
{
	vp->config_generation++;
	if (!(vp->status & VIRTIO_STATUS_DRIVER_OK))
		return;
	vp->isr |= 2;
	raise_vector(vp, vp->config_vector);
}

void virtio_pci_queue_broken(struct virtio_pci *vp, unsigned q)
{
	if (vp->status & VIRTIO_STATUS_NEEDS_RESET)
		return;  /* already reported: one line per incident */
	kvz_warn("virtio %s: queue %u: %s; device needs reset", vp->name, q, vp->vq[q].error);
	vp->status |= VIRTIO_STATUS_NEEDS_RESET;
	virtio_pci_config_changed(vp);
}

/* ---- queue kicks ---- */

#define PCI_CFG_COMMAND 0x04
#define PCI_CFG_COMMAND_MEMORY 0x2
#define PCI_CFG_BAR0 0x10

static uint64_t notify_addr(const struct virtio_pci *vp, unsigned q)
{
	return vp->pci.bars[0].addr + NOTIFY_OFF + q * NOTIFY_MULT;
}

static void kick_unbind(struct virtio_pci *vp, unsigned q)
{
	if (!vp->kick_assigned[q])
		return;
	vm_ioeventfd(vp->ctx->vm, vp->kick_fd[q], vp->kick_addr[q], 2, true);
	vp->kick_assigned[q] = false;
}

static void kick_bind(struct virtio_pci *vp, unsigned q)
{
	uint64_t addr = notify_addr(vp, q);
	int r = vm_ioeventfd(vp->ctx->vm, vp->kick_fd[q], addr, 2, false);

	/* Without the ioeventfd, kicks still arrive as MMIO exits (slower). */
	if (r < 0) {
		kvz_warn("virtio %s: queue %u: ioeventfd: %s", vp->name, q, strerror(-r));
		return;
	}
	vp->kick_assigned[q] = true;
	vp->kick_addr[q] = addr;
}

static void kick(struct virtio_pci *vp, unsigned q)
{
	if (eventfd_write(vp->kick_fd[q], 1) < 0)
		kvz_warn("virtio %s: queue %u: kick: %s", vp->name, q, strerror(errno));
}

static void kick_handler(void *opaque, int fd, uint32_t events)
{
	struct virtio_pci_kick *k = opaque;
	struct virtio_pci *vp = k->vp;
	eventfd_t v;

	(void)events;
	if (eventfd_read(fd, &v) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&vp->lock);
	struct virtq *vq = &vp->vq[k->q];
	/* An offloaded queue is the kernel's: a kick that epoll reported just
	 * before the hand-over must not run the user-space path beside it. */
	if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && vq->enabled && !vq->broken && !vp->offloaded[k->q])
		vp->p.ops->queue_notify(vp->p.dev, vp, k->q);
	pthread_mutex_unlock(&vp->lock);
}

/* ---- offloaded queues ---- */

static int wanted_call_fd(const struct virtio_pci *vp, unsigned q)
{
	uint16_t v = vp->queue_vector[q];
	if (!vp->msix_enabled || vp->msix_masked || v >= vp->nvectors || (vp->msix[v].ctrl & 1))
		return vp->call_proxy_fd[q];
	return vp->irq_fd[v];
}

/* After anything that can change wanted_call_fd(): mask bits, MSI-X
 * enable, a queue's vector. */
static void refresh_call_fds(struct virtio_pci *vp)
{
	for (unsigned q = 0; q < vp->p.nqueues; q++) {
		if (!vp->offloaded[q])
			continue;
		int fd = wanted_call_fd(vp, q);
		if (fd == vp->call_fd[q])
			continue;
		vp->call_fd[q] = fd;
		vp->p.ops->call_fd_changed(vp->p.dev, vp, q, fd);
	}
}

static void call_proxy_handler(void *opaque, int fd, uint32_t events)
{
	struct virtio_pci_kick *k = opaque;
	struct virtio_pci *vp = k->vp;
	eventfd_t v;

	(void)events;
	if (eventfd_read(fd, &v) < 0)
		return;
	pthread_mutex_lock(&vp->lock);
	if (vp->offloaded[k->q]) {
		vp->isr |= 1;
		raise_vector(vp, vp->queue_vector[k->q]);
	}
	pthread_mutex_unlock(&vp->lock);
}

void virtio_pci_offload_queue(struct virtio_pci *vp, unsigned q, int *kick_fd, int *call_fd)
{
	if (!vp->offloaded[q]) {
		int r = io_thread_mod(vp->ctx->io, vp->kick_fd[q], 0);
		if (r < 0)
			kvz_warn("virtio %s: queue %u: epoll: %s", vp->name, q, strerror(-r));
		vp->offloaded[q] = true;
	}
	vp->call_fd[q] = wanted_call_fd(vp, q);
	*kick_fd = vp->kick_fd[q];
	*call_fd = vp->call_fd[q];
}

void virtio_pci_unoffload_queue(struct virtio_pci *vp, unsigned q)
{
	if (!vp->offloaded[q])
		return;
	vp->offloaded[q] = false;
	vp->call_fd[q] = -1;
	int r = io_thread_mod(vp->ctx->io, vp->kick_fd[q], EPOLLIN);
	if (r < 0)
		kvz_warn("virtio %s: queue %u: epoll: %s", vp->name, q, strerror(-r));
}

/* ---- reset ---- */

static void reset_locked(struct virtio_pci *vp)
{
	for (unsigned q = 0; q < vp->p.nqueues; q++)
		kick_unbind(vp, q);
	if (vp->p.ops->reset)
		vp->p.ops->reset(vp->p.dev, vp);   /* stops any offload backend first */
	for (unsigned q = 0; q < vp->p.nqueues; q++) {
		virtio_pci_unoffload_queue(vp, q);
		virtq_reset(&vp->vq[q], vp->p.queue_size);
		vp->queue_vector[q] = VIRTIO_MSI_NO_VECTOR;
		vp->queue_enable[q] = 0;
	}
	vp->driver_features = 0;
	vp->device_feature_select = 0;
	vp->driver_feature_select = 0;
	vp->status = 0;
	vp->queue_select = 0;
	vp->config_vector = VIRTIO_MSI_NO_VECTOR;
	vp->isr = 0;
	vp->msix_pending = 0;
	lower_intx(vp);
}

void virtio_pci_reset(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	reset_locked(vp);
	pthread_mutex_unlock(&vp->lock);
}

/* ---- common configuration ---- */

static void common_image(const struct virtio_pci *vp, uint8_t img[0x40])
{
	uint64_t feat = offered_features(vp);
	uint16_t sel = vp->queue_select;
	bool valid = sel < vp->p.nqueues;
	const struct virtq *vq = valid ? &vp->vq[sel] : NULL;

	memset(img, 0, 0x40);
	put32(img + 0x00, vp->device_feature_select);
	put32(img + 0x04, vp->device_feature_select < 2 ? feat >> (32 * vp->device_feature_select) : 0);
	put32(img + 0x08, vp->driver_feature_select);
	put32(img + 0x0c, vp->driver_feature_select < 2
			  ? vp->driver_features >> (32 * vp->driver_feature_select) : 0);
	put16(img + 0x10, vp->config_vector);
	put16(img + 0x12, vp->p.nqueues);
	img[0x14] = vp->status;
	img[0x15] = vp->config_generation;
	put16(img + 0x16, sel);
	if (!valid)
		return;
	put16(img + 0x18, vq->size);
	put16(img + 0x1a, vp->queue_vector[sel]);
	put16(img + 0x1c, vp->queue_enable[sel]);
	put16(img + 0x1e, sel);
	put_le(img + 0x20, vq->desc_gpa, 8);
	put_le(img + 0x28, vq->avail_gpa, 8);
	put_le(img + 0x30, vq->used_gpa, 8);
}

static bool features_acceptable(const struct virtio_pci *vp)
{
	return !(vp->driver_features & ~offered_features(vp)) &&
	       virtio_pci_has_feature(vp, VIRTIO_F_VERSION_1);
}

static void enable_queue(struct virtio_pci *vp, unsigned q)
{
	struct virtq *vq = &vp->vq[q];

	if (vp->queue_enable[q])
		return;
	vp->queue_enable[q] = 1;
	vq->event_idx = virtio_pci_has_feature(vp, VIRTIO_F_EVENT_IDX);
	vq->indirect = virtio_pci_has_feature(vp, VIRTIO_F_INDIRECT_DESC);
	if (virtq_enable(vq, vp->ctx->mem) < 0) {
		virtio_pci_queue_broken(vp, q);
		return;
	}
	kick_bind(vp, q);
}

static void set_status(struct virtio_pci *vp, uint8_t v)
{
	uint8_t old = vp->status;

	if (v == 0) {
		reset_locked(vp);
		return;
	}
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK) &&
	    !features_acceptable(vp))
		v &= ~VIRTIO_STATUS_FEATURES_OK;  /* the driver reads it back and gives up */
	vp->status = v | (old & VIRTIO_STATUS_NEEDS_RESET);
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK)) {
		if (vp->p.ops->driver_ok)
			vp->p.ops->driver_ok(vp->p.dev, vp);
		/* Buffers queued before DRIVER_OK waited for this moment. */
		for (unsigned q = 0; q < vp->p.nqueues; q++)
			if (vp->vq[q].enabled)
				kick(vp, q);
	}
}

static uint16_t valid_vector(const struct virtio_pci *vp, uint64_t v)
{
	return v < vp->nvectors ? (uint16_t)v : VIRTIO_MSI_NO_VECTOR;
}

static void set_queue_addr(struct virtio_pci *vp, uint64_t *field, uint64_t v)
{
	if (vp->queue_select >= vp->p.nqueues || vp->queue_enable[vp->queue_select])
		return;  /* rings of a live queue cannot move */
	*field = v;
}

static void common_set(struct virtio_pci *vp, unsigned off, uint64_t v)
{
	uint16_t sel = vp->queue_select;
	bool valid = sel < vp->p.nqueues;
	struct virtq *vq = valid ? &vp->vq[sel] : NULL;

	switch (off) {
	case 0x00: vp->device_feature_select = v; break;
	case 0x08: vp->driver_feature_select = v; break;
	case 0x0c:
		if (vp->status & VIRTIO_STATUS_FEATURES_OK || vp->driver_feature_select >= 2)
			break;
		if (vp->driver_feature_select == 0)
			vp->driver_features = (vp->driver_features & ~0xffffffffull) | (uint32_t)v;
		else
			vp->driver_features = (vp->driver_features & 0xffffffffull) | v << 32;
		break;
	case 0x10: vp->config_vector = valid_vector(vp, v); break;
	case 0x14: set_status(vp, v); break;
	case 0x16: vp->queue_select = v; break;
	case 0x18:
		if (valid && !vp->queue_enable[sel])
			vq->size = v;
		break;
	case 0x1a:
		if (valid) {
			vp->queue_vector[sel] = valid_vector(vp, v);
			refresh_call_fds(vp);
		}
		break;
	case 0x1c:
		if (valid && v == 1)
			enable_queue(vp, sel);
		break;
	case 0x20: if (valid) set_queue_addr(vp, &vq->desc_gpa, v); break;
	case 0x28: if (valid) set_queue_addr(vp, &vq->avail_gpa, v); break;
	case 0x30: if (valid) set_queue_addr(vp, &vq->used_gpa, v); break;
	default: break;  /* read-only fields */
	}
}

static const struct { uint8_t off, size; } common_fields[] = {
	{ 0x00, 4 }, { 0x08, 4 }, { 0x0c, 4 }, { 0x10, 2 }, { 0x14, 1 },
	{ 0x16, 2 }, { 0x18, 2 }, { 0x1a, 2 }, { 0x1c, 2 },
	{ 0x20, 8 }, { 0x28, 8 }, { 0x30, 8 },
};

/* Any access width at any offset: the write is applied to an image of the
 * registers and each field it touched is set from the image, so a 32-bit
 * half of a 64-bit address and a 64-bit store both work. */
static void common_write(struct virtio_pci *vp, uint64_t off, const void *data, unsigned len)
{
	uint8_t img[0x40];

	if (off >= sizeof(img) || len > sizeof(img) - off)
		return;
	common_image(vp, img);
	memcpy(img + off, data, len);
	for (size_t i = 0; i < sizeof(common_fields) / sizeof(common_fields[0]); i++) {
		unsigned f = common_fields[i].off, sz = common_fields[i].size;
		if (f + sz <= off || f >= off + len)
			continue;
		common_set(vp, f, get_le(img + f, sz));
	}
}

/* ---- MSI-X ---- */

static void msix_table_write(struct virtio_pci *vp, uint64_t off, const void *data, unsigned len)
{
	unsigned v = off / 16;

	if (v >= vp->nvectors || (off % 4) || (len != 4 && len != 8) || off % 16 + len > 16)
		return;
	uint8_t entry[16];
	struct virtio_pci_msix_entry *e = &vp->msix[v];
	put32(entry, e->addr_lo);
	put32(entry + 4, e->addr_hi);
	put32(entry + 8, e->data);
	put32(entry + 12, e->ctrl);
	memcpy(entry + off % 16, data, len);
	struct virtio_pci_msix_entry n = {
		(uint32_t)get_le(entry, 4), (uint32_t)get_le(entry + 4, 4),
		(uint32_t)get_le(entry + 8, 4), (uint32_t)get_le(entry + 12, 4) & 1,
	};
	bool msg_changed = n.addr_lo != e->addr_lo || n.addr_hi != e->addr_hi || n.data != e->data;
	*e = n;
	if (msg_changed) {
		int r = vm_msi_route_update(vp->ctx->vm, vp->irq_gsi[v],
					    (uint64_t)n.addr_hi << 32 | n.addr_lo, n.data);
		if (r < 0)
			kvz_warn("virtio %s: MSI-X vector %u route: %s", vp->name, v, strerror(-r));
	}
	refresh_call_fds(vp);
	deliver_pending(vp);
}

static void msix_table_read(struct virtio_pci *vp, uint64_t off, void *data, unsigned len)
{
	unsigned v = off / 16;
	uint8_t entry[16];

	memset(data, 0, len);
	if (v >= vp->nvectors || off % 16 + len > 16)
		return;
	const struct virtio_pci_msix_entry *e = &vp->msix[v];
	put32(entry, e->addr_lo);
	put32(entry + 4, e->addr_hi);
	put32(entry + 8, e->data);
	put32(entry + 12, e->ctrl);
	memcpy(data, entry + off % 16, len);
}

/* ---- BAR access ---- */

static void bar_read(struct pci_device *dev, int bar, uint64_t off, void *data, unsigned len)
{
	struct virtio_pci *vp = dev->opaque;

	memset(data, 0, len);
	if (bar != 0 || off >= BAR_SIZE || len > BAR_SIZE - off)
		return;
	pthread_mutex_lock(&vp->lock);
	if (off < COMMON_OFF + 0x40) {
		uint8_t img[0x40];
		common_image(vp, img);
		if (off + len <= sizeof(img))
			memcpy(data, img + off, len);
	} else if (off >= ISR_OFF && off < ISR_OFF + 4) {
		*(uint8_t *)data = off == ISR_OFF ? vp->isr : 0;
		if (off == ISR_OFF) {  /* reading ISR acknowledges it */
			vp->isr = 0;
			lower_intx(vp);
		}
	} else if (off >= DEVCFG_OFF && off - DEVCFG_OFF + len <= vp->p.config_len) {
		memcpy(data, vp->p.config + (off - DEVCFG_OFF), len);
	} else if (off >= MSIX_TABLE_OFF && off < MSIX_PBA_OFF) {
		msix_table_read(vp, off - MSIX_TABLE_OFF, data, len);
	} else if (off >= MSIX_PBA_OFF && off - MSIX_PBA_OFF + len <= 8) {
		uint8_t pba[8];
		put_le(pba, vp->msix_pending, 8);
		memcpy(data, pba + (off - MSIX_PBA_OFF), len);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void bar_write(struct pci_device *dev, int bar, uint64_t off, const void *data, unsigned len)
{
	struct virtio_pci *vp = dev->opaque;

	if (bar != 0 || off >= BAR_SIZE || len > BAR_SIZE - off)
		return;
	pthread_mutex_lock(&vp->lock);
	if (off < COMMON_OFF + 0x40) {
		common_write(vp, off, data, len);
	} else if (off >= DEVCFG_OFF && off - DEVCFG_OFF + len <= vp->p.config_len) {
		if (vp->p.ops->config_written) {
			memcpy(vp->p.config + (off - DEVCFG_OFF), data, len);
			vp->p.ops->config_written(vp->p.dev, vp, off - DEVCFG_OFF, len);
		}
	} else if (off >= NOTIFY_OFF && off < NOTIFY_OFF + vp->p.nqueues * NOTIFY_MULT) {
		/* A kick the ioeventfd did not catch (other width, no ioeventfd). */
		kick(vp, (off - NOTIFY_OFF) / NOTIFY_MULT);
	} else if (off >= MSIX_TABLE_OFF && off < MSIX_PBA_OFF) {
		msix_table_write(vp, off - MSIX_TABLE_OFF, data, len);
	}
	pthread_mutex_unlock(&vp->lock);
	if (vp->p.ops->after_write)
		vp->p.ops->after_write(vp->p.dev, vp);
}

/* ---- PCI configuration space ---- */

static unsigned put_vendor_cap(struct virtio_pci *vp, unsigned at, unsigned next, uint8_t type,
			       uint32_t off, uint32_t len, unsigned caplen)
{
	uint8_t *c = vp->pci.config + at;

	c[0] = CAP_VNDR;
	c[1] = next;
	c[2] = caplen;
	c[3] = type;
	c[4] = 0;  /* BAR 0 */
	put32(c + 8, off);
	put32(c + 12, len);
	if (type == CFG_NOTIFY)
		put32(c + 16, NOTIFY_MULT);
	return at + caplen;
}

static void msix_control_written(struct virtio_pci *vp, unsigned msix_at)
{
	uint16_t ctrl = get_le(vp->pci.config + msix_at + 2, 2);

	vp->msix_enabled = ctrl & MSIX_CTRL_ENABLE;
	vp->msix_masked = ctrl & MSIX_CTRL_MASKALL;
	if (vp->msix_enabled)
		lower_intx(vp);
	refresh_call_fds(vp);
	deliver_pending(vp);
}

/* The notify ioeventfds follow the BAR: a firmware sizes it (all ones
 * written, the mask read back) and moves it, and a guest may turn memory
 * decoding off. A kick is bound only where the BAR decodes, at its
 * current address; during sizing decoding is off (the bus ignores the
 * BAR) or the address is the mask, and nothing is bound there. */
static bool notify_decodes(const struct virtio_pci *vp)
{
	const struct pci_bar *b = &vp->pci.bars[0];
	return (vp->pci.config[PCI_CFG_COMMAND] & PCI_CFG_COMMAND_MEMORY) && b->addr &&
	       b->addr + b->size <= 0x100000000ull && b->addr != (uint32_t)~(b->size - 1);
}

static void rebind_kicks_locked(struct virtio_pci *vp)
{
	bool decodes = notify_decodes(vp);
	for (unsigned q = 0; q < vp->p.nqueues; q++) {
		bool want = decodes && vp->queue_enable[q];
		if (vp->kick_assigned[q] && (!want || vp->kick_addr[q] != notify_addr(vp, q)))
			kick_unbind(vp, q);
		if (want && !vp->kick_assigned[q])
			kick_bind(vp, q);
	}
}

static void config_written(struct pci_device *dev, uint32_t off, unsigned len)
{
	struct virtio_pci *vp = dev->opaque;
	unsigned msix_at = vp->msix_cap;
	bool bar_or_command = (off < PCI_CFG_COMMAND + 2 && off + len > PCI_CFG_COMMAND) ||
			      (off < PCI_CFG_BAR0 + 4 && off + len > PCI_CFG_BAR0);

	pthread_mutex_lock(&vp->lock);
	if (bar_or_command)
		rebind_kicks_locked(vp);
	if (off + len > msix_at + 2 && off <= msix_at + 3)
		msix_control_written(vp, msix_at);
	pthread_mutex_unlock(&vp->lock);
}

static void build_config(struct virtio_pci *vp)
{
	uint8_t *c = vp->pci.config;
	const struct virtio_pci_params *p = &vp->p;

	put16(c + 0x00, 0x1af4);
	put16(c + 0x02, 0x1040 + p->device_id);
	put16(c + 0x06, 0x0010);           /* status: capability list */
	c[0x08] = 1;                       /* revision: modern-only device */
	c[0x09] = p->class_code;
	c[0x0a] = p->class_code >> 8;
	c[0x0b] = p->class_code >> 16;
	put16(c + 0x2c, 0x1af4);
	put16(c + 0x2e, 0x1040 + p->device_id);
	c[0x34] = CAP_START;
	c[0x3d] = 1;                       /* INTA# */

	unsigned at = CAP_START;
	at = put_vendor_cap(vp, at, at + 16, CFG_COMMON, COMMON_OFF, COMMON_LEN, 16);
	at = put_vendor_cap(vp, at, at + 20, CFG_NOTIFY, NOTIFY_OFF,
			    p->nqueues * NOTIFY_MULT, 20);
	unsigned isr_next = at + 16;
	at = put_vendor_cap(vp, at, isr_next, CFG_ISR, ISR_OFF, 4, 16);
	if (p->config_len)
		at = put_vendor_cap(vp, at, at + 16, CFG_DEVICE, DEVCFG_OFF, p->config_len, 16);

	uint8_t *m = c + at;
	m[0] = CAP_MSIX;
	m[1] = 0;
	put16(m + 2, vp->nvectors - 1);
	put32(m + 4, MSIX_TABLE_OFF);      /* BIR 0 */
	put32(m + 8, MSIX_PBA_OFF);
	vp->pci.config_wmask[at + 3] = 0xc0;  /* enable and function mask */
	vp->msix_cap = at;
	vp->pci.bars[0].size = BAR_SIZE;
	vp->pci.bars[0].is_64bit = false;
}

static const struct pci_device_ops virtio_pci_ops = {
	.bar_read = bar_read,
	.bar_write = bar_write,
	.config_written = config_written,
};

/* ---- life cycle ---- */

static int register_state(struct virtio_pci *vp, char *err, size_t errlen);

static void release_fds(struct virtio_pci *vp)
{
	for (unsigned q = 0; q < VIRTIO_PCI_MAX_QUEUES; q++) {
		if (vp->call_proxy_fd[q] >= 0) {
			io_thread_del(vp->ctx->io, vp->call_proxy_fd[q]);
			close(vp->call_proxy_fd[q]);
			vp->call_proxy_fd[q] = -1;
		}
		if (vp->kick_fd[q] < 0)
			continue;
		kick_unbind(vp, q);
		io_thread_del(vp->ctx->io, vp->kick_fd[q]);
		close(vp->kick_fd[q]);
		vp->kick_fd[q] = -1;
	}
	for (unsigned v = 0; v <= VIRTIO_PCI_MAX_QUEUES; v++) {
		if (vp->irq_gsi[v] >= 0) {
			vm_irqfd(vp->ctx->vm, vp->irq_fd[v], vp->irq_gsi[v], true);
			vm_msi_route_free(vp->ctx->vm, vp->irq_gsi[v]);
			vp->irq_gsi[v] = -1;
		}
		if (vp->irq_fd[v] >= 0) {
			close(vp->irq_fd[v]);
			vp->irq_fd[v] = -1;
		}
	}
}

static int setup_vectors(struct virtio_pci *vp, char *err, size_t errlen)
{
	for (unsigned v = 0; v < vp->nvectors; v++) {
		vp->irq_fd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->irq_fd[v] < 0) {
			snprintf(err, errlen, "virtio %s: eventfd: %s", vp->name, strerror(errno));
			return -1;
		}
		/* A masked, zeroed entry until the guest programs it. */
		vp->msix[v].ctrl = 1;
		int gsi = vm_msi_route_alloc(vp->ctx->vm, 0, 0);
		if (gsi < 0) {
			snprintf(err, errlen, "virtio %s: MSI route: %s", vp->name, strerror(-gsi));
			return -1;
		}
		vp->irq_gsi[v] = gsi;
		int r = vm_irqfd(vp->ctx->vm, vp->irq_fd[v], gsi, false);
		if (r < 0) {
			vm_msi_route_free(vp->ctx->vm, gsi);
			vp->irq_gsi[v] = -1;
			snprintf(err, errlen, "virtio %s: irqfd: %s", vp->name, strerror(-r));
			return -1;
		}
	}
	return 0;
}

static int setup_kicks(struct virtio_pci *vp, char *err, size_t errlen)
{
	for (unsigned q = 0; q < vp->p.nqueues; q++) {
		vp->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->kick_fd[q] < 0) {
			snprintf(err, errlen, "virtio %s: eventfd: %s", vp->name, strerror(errno));
			return -1;
		}
		vp->kick[q] = (struct virtio_pci_kick){ vp, q };
		int r = io_thread_add(vp->ctx->io, vp->kick_fd[q], EPOLLIN, kick_handler, &vp->kick[q]);
		if (r < 0) {
			close(vp->kick_fd[q]);
			vp->kick_fd[q] = -1;
			snprintf(err, errlen, "virtio %s: I/O thread: %s", vp->name, strerror(-r));
			return -1;
		}
		if (!vp->p.ops->call_fd_changed)
			continue;   /* a device that never offloads needs no proxy */
		vp->call_proxy_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->call_proxy_fd[q] < 0) {
			snprintf(err, errlen, "virtio %s: eventfd: %s", vp->name, strerror(errno));
			return -1;
		}
		r = io_thread_add(vp->ctx->io, vp->call_proxy_fd[q], EPOLLIN, call_proxy_handler, &vp->kick[q]);
		if (r < 0) {
			close(vp->call_proxy_fd[q]);
			vp->call_proxy_fd[q] = -1;
			snprintf(err, errlen, "virtio %s: I/O thread: %s", vp->name, strerror(-r));
			return -1;
		}
	}
	return 0;
}

int virtio_pci_init(struct virtio_pci *vp, const struct vmm_context *ctx,
		    const struct virtio_pci_params *p, const char *name,
		    char *err, size_t errlen)
{
	memset(vp, 0, sizeof(*vp));
	vp->ctx = ctx;
	vp->p = *p;
	snprintf(vp->name, sizeof(vp->name), "%s", name);
	for (unsigned i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++) {
		vp->kick_fd[i] = -1;
		vp->call_fd[i] = -1;
		vp->call_proxy_fd[i] = -1;
	}
	for (unsigned i = 0; i <= VIRTIO_PCI_MAX_QUEUES; i++) {
		vp->irq_fd[i] = -1;
		vp->irq_gsi[i] = -1;
	}
	if (p->nqueues == 0 || p->nqueues > VIRTIO_PCI_MAX_QUEUES || p->config_len > 0x1000) {
		snprintf(err, errlen, "virtio %s: bad device description", name);
		return -1;
	}
	vp->nvectors = p->nqueues + 1;
	int r = pthread_mutex_init(&vp->lock, NULL);
	if (r) {
		snprintf(err, errlen, "virtio %s: mutex: %s", name, strerror(r));
		return -1;
	}
	if (setup_vectors(vp, err, errlen) < 0 || setup_kicks(vp, err, errlen) < 0)
		goto fail;
	reset_locked(vp);
	build_config(vp);
	vp->pci.ops = &virtio_pci_ops;
	vp->pci.opaque = vp;
	r = pci_register(ctx->pci, &vp->pci);
	if (r < 0) {
		snprintf(err, errlen, "virtio %s: PCI: %s", name, strerror(-r));
		goto fail;
	}
	if (register_state(vp, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	release_fds(vp);
	pthread_mutex_destroy(&vp->lock);
	return -1;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	release_fds(vp);
	pthread_mutex_destroy(&vp->lock);
}

/* ---- snapshot state (state/state_registry.h) ---- */

static void save_queue(const struct virtq *vq, struct state_buf *out)
{
	state_put_u16(out, vq->size);
	state_put_u8(out, vq->enabled);
	state_put_u64(out, vq->desc_gpa);
	state_put_u64(out, vq->avail_gpa);
	state_put_u64(out, vq->used_gpa);
	state_put_u16(out, vq->last_avail);
	state_put_u16(out, vq->used_idx);
	state_put_u16(out, vq->signalled_used);
	state_put_u8(out, vq->signalled_valid);
	state_put_u8(out, vq->broken);
}

static void save_locked(struct virtio_pci *vp, struct state_buf *out)
{
	state_put_u32(out, vp->p.nqueues);
	state_put_u32(out, vp->nvectors);
	state_put_u32(out, vp->p.config_len);
	state_put_u64(out, vp->driver_features);
	state_put_u32(out, vp->device_feature_select);
	state_put_u32(out, vp->driver_feature_select);
	state_put_u8(out, vp->status);
	state_put_u8(out, vp->config_generation);
	state_put_u16(out, vp->queue_select);
	state_put_u16(out, vp->config_vector);
	state_put_u8(out, vp->isr);
	state_put_u8(out, vp->intx_level);
	state_put_u64(out, vp->msix_pending);
	for (unsigned v = 0; v < vp->nvectors; v++) {
		state_put_u32(out, vp->msix[v].addr_lo);
		state_put_u32(out, vp->msix[v].addr_hi);
		state_put_u32(out, vp->msix[v].data);
		state_put_u32(out, vp->msix[v].ctrl);
	}
	for (unsigned q = 0; q < vp->p.nqueues; q++) {
		state_put_u16(out, vp->queue_vector[q]);
		state_put_u16(out, vp->queue_enable[q]);
		save_queue(&vp->vq[q], out);
	}
	state_put_bytes(out, vp->p.config, vp->p.config_len);
	if (vp->p.ops->save)
		vp->p.ops->save(vp->p.dev, vp, out);
}

/* The queue's fields, checked as the driver's register writes would be. */
static int load_queue(struct virtio_pci *vp, unsigned q, struct state_cursor *in,
		      char *err, size_t errlen)
{
	struct virtq *vq = &vp->vq[q];
	uint16_t size = state_get_u16(in);
	bool enabled = state_get_bool(in);
	vq->desc_gpa = state_get_u64(in);
	vq->avail_gpa = state_get_u64(in);
	vq->used_gpa = state_get_u64(in);
	vq->last_avail = state_get_u16(in);
	vq->used_idx = state_get_u16(in);
	vq->signalled_used = state_get_u16(in);
	vq->signalled_valid = state_get_bool(in);
	bool broken = state_get_bool(in);
	if (size == 0 || size > vp->p.queue_size || (size & (size - 1))) {
		snprintf(err, errlen, "queue %u: size %u is not one this device offers", q, size);
		return -1;
	}
	vq->size = size;
	if (vp->queue_vector[q] != VIRTIO_MSI_NO_VECTOR && vp->queue_vector[q] >= vp->nvectors) {
		snprintf(err, errlen, "queue %u: vector %u out of range", q, vp->queue_vector[q]);
		return -1;
	}
	if (enabled != (vp->queue_enable[q] != 0) || vp->queue_enable[q] > 1) {
		snprintf(err, errlen, "queue %u: enable flags disagree", q);
		return -1;
	}
	vq->broken = broken;
	return 0;
}

/* Applies the loaded registers to the host side, as the driver's writes
 * would have: MSI routes, queue rings (checked against guest RAM), kick
 * ioeventfds, then DRIVER_OK's device work (TAP offloads, vhost). */
static void replay_locked(struct virtio_pci *vp)
{
	for (unsigned v = 0; v < vp->nvectors; v++) {
		const struct virtio_pci_msix_entry *e = &vp->msix[v];
		int r = vm_msi_route_update(vp->ctx->vm, vp->irq_gsi[v],
					    (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data);
		if (r < 0)
			kvz_warn("virtio %s: MSI-X vector %u route: %s", vp->name, v, strerror(-r));
	}
	uint16_t ctrl = get_le(vp->pci.config + vp->msix_cap + 2, 2);
	vp->msix_enabled = ctrl & MSIX_CTRL_ENABLE;
	vp->msix_masked = ctrl & MSIX_CTRL_MASKALL;
	for (unsigned q = 0; q < vp->p.nqueues; q++) {
		struct virtq *vq = &vp->vq[q];
		if (!vp->queue_enable[q])
			continue;
		bool broken = vq->broken;
		vq->event_idx = virtio_pci_has_feature(vp, VIRTIO_F_EVENT_IDX);
		vq->indirect = virtio_pci_has_feature(vp, VIRTIO_F_INDIRECT_DESC);
		if (virtq_enable(vq, vp->ctx->mem) < 0 || broken) {
			vq->broken = true;
			vp->status |= VIRTIO_STATUS_NEEDS_RESET;
			continue;
		}
		kick_bind(vp, q);
	}
	if (vp->intx_level) {
		vp->intx_level = false;
		if (vm_set_irq_line(vp->ctx->vm, vp->pci.irq_line, 1) == 0)
			vp->intx_level = true;
	}
	if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && vp->p.ops->driver_ok)
		vp->p.ops->driver_ok(vp->p.dev, vp);
	refresh_call_fds(vp);
	/* Buffers the driver made available before the save: served once the
	 * I/O thread runs (as after DRIVER_OK). */
	for (unsigned q = 0; q < vp->p.nqueues; q++)
		if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && vp->vq[q].enabled && !vp->vq[q].broken)
			kick(vp, q);
}

static int load_locked(struct virtio_pci *vp, struct state_cursor *in, uint32_t version,
		       char *err, size_t errlen)
{
	if (state_get_u32(in) != vp->p.nqueues || state_get_u32(in) != vp->nvectors ||
	    state_get_u32(in) != vp->p.config_len) {
		snprintf(err, errlen, "%s", in->bad ? "truncated" : "a different device (queues, vectors or config size)");
		return -1;
	}
	reset_locked(vp);
	vp->driver_features = state_get_u64(in);
	vp->device_feature_select = state_get_u32(in);
	vp->driver_feature_select = state_get_u32(in);
	vp->status = state_get_u8(in);
	vp->config_generation = state_get_u8(in);
	vp->queue_select = state_get_u16(in);
	vp->config_vector = state_get_u16(in);
	vp->isr = state_get_u8(in);
	vp->intx_level = state_get_bool(in);
	vp->msix_pending = state_get_u64(in);
	for (unsigned v = 0; v < vp->nvectors; v++) {
		vp->msix[v].addr_lo = state_get_u32(in);
		vp->msix[v].addr_hi = state_get_u32(in);
		vp->msix[v].data = state_get_u32(in);
		vp->msix[v].ctrl = state_get_u32(in) & 1;
	}
	for (unsigned q = 0; q < vp->p.nqueues; q++) {
		vp->queue_vector[q] = state_get_u16(in);
		vp->queue_enable[q] = state_get_u16(in);
		if (load_queue(vp, q, in, err, errlen) < 0)
			return -1;
	}
	if (vp->driver_features & ~offered_features(vp)) {
		snprintf(err, errlen, "features 0x%llx beyond what this device offers",
			 (unsigned long long)vp->driver_features);
		return -1;
	}
	if (vp->config_vector != VIRTIO_MSI_NO_VECTOR && vp->config_vector >= vp->nvectors) {
		snprintf(err, errlen, "config vector %u out of range", vp->config_vector);
		return -1;
	}
	vp->msix_pending &= vp->nvectors >= 64 ? ~0ull : (1ull << vp->nvectors) - 1;
	state_get_bytes(in, vp->p.config, vp->p.config_len);
	if (in->bad) {
		snprintf(err, errlen, "truncated");
		return -1;
	}
	if (vp->p.ops->load && vp->p.ops->load(vp->p.dev, vp, in, version, err, errlen) < 0)
		return -1;
	if (!state_cursor_done(in)) {
		snprintf(err, errlen, "%s", in->bad ? "truncated" : "trailing bytes");
		return -1;
	}
	replay_locked(vp);
	return 0;
}

static int entry_save(void *o, struct state_buf *out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct virtio_pci *vp = o;
	pthread_mutex_lock(&vp->lock);
	save_locked(vp, out);
	pthread_mutex_unlock(&vp->lock);
	return 0;
}

static int entry_load(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	struct virtio_pci *vp = o;
	pthread_mutex_lock(&vp->lock);
	int rc = load_locked(vp, in, version, err, errlen);
	if (rc < 0)
		reset_locked(vp);   /* nothing half-loaded */
	pthread_mutex_unlock(&vp->lock);
	return rc;
}

static void entry_pause(void *o)
{
	struct virtio_pci *vp = o;
	if (!vp->p.ops->pause)
		return;
	pthread_mutex_lock(&vp->lock);
	vp->p.ops->pause(vp->p.dev, vp);
	pthread_mutex_unlock(&vp->lock);
}

static void entry_resume(void *o)
{
	struct virtio_pci *vp = o;
	if (!vp->p.ops->resume)
		return;
	pthread_mutex_lock(&vp->lock);
	vp->p.ops->resume(vp->p.dev, vp);
	pthread_mutex_unlock(&vp->lock);
}

static void entry_reset(void *o)
{
	virtio_pci_reset(o);
}

static const struct state_ops virtio_state_ops = {
	.reset = entry_reset, .pause = entry_pause, .resume = entry_resume,
	.save = entry_save, .load = entry_load,
};

static const char *type_name(uint16_t id)
{
	switch (id) {
	case VIRTIO_ID_NET: return "virtio-net";
	case VIRTIO_ID_BLOCK: return "virtio-blk";
	case VIRTIO_ID_RNG: return "virtio-rng";
	case VIRTIO_ID_BALLOON: return "virtio-balloon";
	default: return "virtio";
	}
}

static int register_state(struct virtio_pci *vp, char *err, size_t errlen)
{
	if (!vp->ctx->state)
		return 0;
	uint32_t v = vp->p.state_version ? vp->p.state_version : VIRTIO_PCI_STATE_VERSION;
	uint32_t min = vp->p.state_min_version ? vp->p.state_min_version : v;
	int r = state_registry_add_range(vp->ctx->state, type_name(vp->p.device_id), min, v,
					 &virtio_state_ops, vp);
	if (r < 0)
		snprintf(err, errlen, "virtio %s: state registry: %s", vp->name, strerror(-r));
	return r < 0 ? -1 : 0;
}
