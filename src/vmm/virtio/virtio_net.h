/* virtio-net (virtio spec 5.1) on a host TAP device: vnet header passed
 * through to the TAP (checksum and TSO offloads), mergeable receive
 * buffers, receive driven by TAP readability on the I/O thread. */
#ifndef KVZ_VIRTIO_NET_H
#define KVZ_VIRTIO_NET_H

#include <net/if.h>
#include <stdbool.h>
#include <stdint.h>

#include "vhost_net.h"
#include "virtio_pci.h"

#define VIRTIO_NET_CONFIG_LEN 10
#define VIRTIO_NET_HDR_LEN 12      /* virtio_net_hdr_mrg_rxbuf */
#define VIRTIO_NET_MAX_PACKET (VIRTIO_NET_HDR_LEN + 65550)

/* Who moves the packets: the kernel (vhost-net) or kvz-vmm's I/O thread. */
enum virtio_net_vhost {
	VIRTIO_NET_VHOST_AUTO,      /* vhost-net when /dev/vhost-net works */
	VIRTIO_NET_VHOST_ON,        /* vhost-net or an error */
	VIRTIO_NET_VHOST_OFF,
};

struct virtio_net_options {
	char tap[IFNAMSIZ];
	char bridge[IFNAMSIZ];      /* empty: none */
	uint8_t mac[6];
	enum virtio_net_vhost vhost;
};

struct virtio_net {
	struct virtio_pci vp;
	struct virtio_net_options opt;
	int tap_fd;
	bool created_tap;           /* vanishes with tap_fd (not persistent) */
	bool created_bridge;
	bool rx_stalled;            /* TAP not watched until rx buffers arrive */
	struct vhost_net vhost;     /* fd -1: the I/O thread's data path */
	bool vhost_announced;       /* the one log line saying vhost is used */
	bool vhost_paused;          /* vhost stopped by a machine pause, restarted on resume */
	uint8_t config[VIRTIO_NET_CONFIG_LEN];
	uint32_t pending_len;       /* packet read from the TAP, not delivered */
	uint8_t pending[VIRTIO_NET_MAX_PACKET];
	struct virtq_elem elem;     /* I/O thread only */
	struct iovec first_iov[VIRTQ_MAX_SEGS];
	struct virtq_used used[VIRTQ_MAX_SIZE];
};

/* "tap=NAME[,mac=52:54:00:12:34:56][,bridge=BR][,vhost=on|off|auto]";
 * without mac a random locally administered 52:54:00:xx:xx:xx is picked. */
int virtio_net_parse(const char *spec, unsigned index, struct virtio_net_options *o,
		     char *err, size_t errlen);

/* Opens (creating when missing) the TAP, brings it up, puts it on the
 * bridge (created when missing) and registers the PCI function. Returns
 * NULL with err set and nothing left behind. */
struct virtio_net *virtio_net_create(const struct vmm_context *ctx,
				     const struct virtio_net_options *o,
				     char *err, size_t errlen);
void virtio_net_destroy(struct virtio_net *n);
/* One RARP broadcast from the guest's MAC on the TAP (after a live
 * migration). Returns 0 or -1 (errno). */
int virtio_net_announce(struct virtio_net *n);

#endif
