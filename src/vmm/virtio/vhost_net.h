/* vhost-net: Linux's in-kernel virtio-net data path. The kernel moves
 * packets between the guest's rings and the TAP itself, woken by the
 * queue's ioeventfd and interrupting through its irqfd: no copy through
 * kvz-vmm and no I/O-thread wake-up per packet. kvz-vmm keeps the control
 * path (features, ring addresses, reset) and falls back to its own data
 * path (virtio_net.c) where /dev/vhost-net is missing. */
#ifndef KVZ_VIRTIO_VHOST_NET_H
#define KVZ_VIRTIO_VHOST_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest_mem.h"
#include "virtio_pci.h"

struct vhost_net {
	int fd;              /* /dev/vhost-net, -1 when not in use */
	uint64_t features;   /* what the kernel's vhost-net supports */
	bool running;        /* rings and TAP handed to the kernel */
	uint64_t acked;      /* the driver's features vhost implements */
	bool logging;        /* running with VHOST_F_LOG_ALL and the used-ring log */
};

/* Opens /dev/vhost-net and becomes its owner. Returns 0, or -1 with err
 * set (h->fd stays -1). */
int vhost_net_open(struct vhost_net *h, char *err, size_t errlen);
void vhost_net_close(struct vhost_net *h);

/* True when the kernel implements every ring feature in `offered` that is
 * vhost's business (virtio 1.x, indirect descriptors, event index,
 * mergeable receive buffers). Offloads (checksum, TSO) are the TAP's. */
bool vhost_net_supports(const struct vhost_net *h, uint64_t offered);

/* Hands the enabled rx (0) and tx (1) queues of vp and tap_fd to the
 * kernel: features, memory table, rings, kick and call eventfds, backend.
 * With guest_mem.vhost_log set (a live migration runs) the kernel logs its
 * writes into it from the start. Lock of vp held. Returns 0, or -1 with
 * err set and nothing handed over. */
int vhost_net_start(struct vhost_net *h, struct virtio_pci *vp, const struct guest_mem *mem,
		    int tap_fd, char *err, size_t errlen);
/* Takes the queues back (reset): the backend is detached and each ring's
 * position copied into vp's queue state. Lock of vp held. */
void vhost_net_stop(struct vhost_net *h, struct virtio_pci *vp);
/* Live migration: while running, switches the kernel's logging of its
 * guest RAM writes on (into log, one bit per guest physical 4 KiB page:
 * VHOST_SET_LOG_BASE, VHOST_F_LOG_ALL, each ring's VHOST_VRING_F_LOG) or
 * off (log NULL). Stopped, nothing: vhost_net_start logs as
 * guest_mem.vhost_log says. Lock of vp held. Returns 0, or -1 with err. */
int vhost_net_set_log(struct vhost_net *h, struct virtio_pci *vp, const uint64_t *log, char *err,
		      size_t errlen);
/* Queue q interrupts through fd from now on. Returns 0 or -errno. */
int vhost_net_set_call(struct vhost_net *h, unsigned q, int fd);

#endif
