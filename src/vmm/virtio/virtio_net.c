/* virtio-net over TAP. With vhost-net (vhost_net.c, the default where
 * /dev/vhost-net works) the kernel moves the packets and this file only
 * drives the control path; otherwise the I/O thread does, as follows.
 * The guest's vnet header (12 bytes, little-endian,
 * the same layout the TAP uses with IFF_VNET_HDR) passes through
 * unchanged, so checksum and segmentation offloads cost nothing here.
 * Transmit writes each chain with one writev(); receive reads one packet
 * into a staging buffer and spreads it over as many guest buffers as it
 * needs (mergeable rx buffers). */
#include "virtio_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <unistd.h>

#include "io_thread.h"
#include "log.h"
#include "netlink.h"
#include "virtio_net_ctrl.h"

#define VIRTIO_NET_F_CSUM       0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_MRG_RXBUF  15
#define VIRTIO_NET_F_STATUS     16

#define Q_RX 0
#define Q_TX 1
#define Q_CTRL 2   /* served by kvz-vmm, also with vhost-net */
#define QUEUE_SIZE 256
#define RX_BURST 64

/* ---- options ---- */

static int parse_mac(const char *s, size_t len, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	char tmp[32];

	if (len >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	if (sscanf(tmp, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6 || len != 17)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = v[i];
	if (mac[0] & 1)
		return -1;  /* multicast address: not a NIC's */
	return 0;
}

static int copy_ifname(char dst[IFNAMSIZ], const char *s, size_t len)
{
	if (len == 0 || len >= IFNAMSIZ)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '/' || s[i] == ' ' || s[i] == ':' || s[i] < 0x21)
			return -1;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

static int parse_vhost(const char *s, size_t len, enum virtio_net_vhost *v)
{
	static const struct { const char *name; enum virtio_net_vhost v; } names[] = {
		{"auto", VIRTIO_NET_VHOST_AUTO}, {"on", VIRTIO_NET_VHOST_ON}, {"off", VIRTIO_NET_VHOST_OFF},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == len && !strncmp(s, names[i].name, len)) {
			*v = names[i].v;
			return 0;
		}
	return -1;
}

int virtio_net_parse(const char *spec, unsigned index, struct virtio_net_options *o,
		     char *err, size_t errlen)
{
	bool have_mac = false;
	const char *p = spec;

	(void)index;
	memset(o, 0, sizeof(*o));
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len > 4 && !strncmp(p, "tap=", 4)) {
			if (copy_ifname(o->tap, p + 4, len - 4) < 0)
				goto bad_name;
		} else if (len > 7 && !strncmp(p, "bridge=", 7)) {
			if (copy_ifname(o->bridge, p + 7, len - 7) < 0)
				goto bad_name;
		} else if (len > 4 && !strncmp(p, "mac=", 4)) {
			if (parse_mac(p + 4, len - 4, o->mac) < 0) {
				snprintf(err, errlen, "--net %s: bad MAC address (expected xx:xx:xx:xx:xx:xx, unicast)", spec);
				return -1;
			}
			have_mac = true;
		} else if (len > 6 && !strncmp(p, "vhost=", 6)) {
			if (parse_vhost(p + 6, len - 6, &o->vhost) < 0) {
				snprintf(err, errlen, "--net %s: vhost= takes on, off or auto", spec);
				return -1;
			}
		} else {
			snprintf(err, errlen, "--net %s: unknown option '%.*s' (expected tap=, mac=, bridge=, vhost=)",
				 spec, (int)len, p);
			return -1;
		}
		p += len + (comma ? 1 : 0);
	}
	if (!o->tap[0]) {
		snprintf(err, errlen, "--net %s: tap=NAME is required", spec);
		return -1;
	}
	if (!have_mac) {
		uint8_t r[3] = { 0 };
		if (getrandom(r, sizeof(r), 0) != sizeof(r)) {
			snprintf(err, errlen, "--net %s: getrandom: %s", spec, strerror(errno));
			return -1;
		}
		const uint8_t mac[6] = { 0x52, 0x54, 0x00, r[0], r[1], r[2] };
		memcpy(o->mac, mac, 6);
	}
	return 0;
bad_name:
	snprintf(err, errlen, "--net %s: interface names are 1-%d characters without '/', ':' or spaces",
		 spec, IFNAMSIZ - 1);
	return -1;
}

/* ---- transmit ---- */

static void tx_process(struct virtio_net *n, struct virtq *vq)
{
	int r;

	while ((r = virtq_pop(vq, &n->elem)) > 0) {
		struct virtq_elem *e = &n->elem;
		/* A frame without its vnet header is dropped, not sent. */
		if (e->out_len >= VIRTIO_NET_HDR_LEN && writev(n->tap_fd, e->iov, e->nout) < 0 &&
		    errno != EAGAIN && errno != EIO)
			kvz_debug("virtio net %s: tap write: %s", n->opt.tap, strerror(errno));
		virtq_push(vq, e->head, 0);
	}
	if (r < 0)
		vq->broken = true;
}

/* ---- receive ---- */

static void rx_stall(struct virtio_net *n, bool stall)
{
	if (n->rx_stalled == stall)
		return;
	int r = io_thread_mod(n->vp.ctx->io, n->tap_fd, stall ? 0 : EPOLLIN);
	if (r < 0) {
		kvz_warn("virtio net %s: epoll: %s", n->opt.tap, strerror(-r));
		return;
	}
	n->rx_stalled = stall;
}

/* Puts n->pending into guest buffers. Returns 1 when the packet is done
 * with (delivered or dropped), 0 when the guest has too few buffers now,
 * -1 when the queue is broken. */
static int rx_deliver(struct virtio_net *n, struct virtq *vq)
{
	bool mrg = virtio_pci_has_feature(&n->vp, VIRTIO_NET_F_MRG_RXBUF);
	unsigned count = 0, first_nin = 0;
	uint32_t off = 0;

	while (off < n->pending_len) {
		int r = virtq_pop(vq, &n->elem);
		if (r < 0)
			return -1;
		if (r == 0 || count == vq->size) {
			virtq_unpop(vq, count);
			return 0;
		}
		struct virtq_elem *e = &n->elem;
		if (count == 0 && e->in_len < VIRTIO_NET_HDR_LEN) {
			snprintf(vq->error, sizeof(vq->error), "receive buffer smaller than the header");
			vq->broken = true;
			return -1;
		}
		uint64_t room = e->in_len;
		uint32_t chunk = room < n->pending_len - off ? (uint32_t)room : n->pending_len - off;
		virtq_buf_to_iov(e->iov + e->nout, e->nin, 0, n->pending + off, chunk);
		if (count == 0) {
			first_nin = e->nin;
			memcpy(n->first_iov, e->iov + e->nout, first_nin * sizeof(struct iovec));
		}
		n->used[count++] = (struct virtq_used){ e->head, chunk };
		off += chunk;
		if (!mrg && off < n->pending_len) {
			/* Does not fit in one buffer and the guest cannot merge. */
			virtq_unpop(vq, count);
			return 1;
		}
	}
	uint8_t nb[2] = { count & 0xff, count >> 8 };
	virtq_buf_to_iov(n->first_iov, first_nin, 10, nb, sizeof(nb));
	virtq_push_batch(vq, n->used, count);
	return 1;
}

static void rx_process(struct virtio_net *n)
{
	struct virtq *vq = &n->vp.vq[Q_RX];

	/* vhost.running: a TAP event epoll reported just before the hand-over;
	 * the packets are the kernel's to move now. */
	if (!(n->vp.status & VIRTIO_STATUS_DRIVER_OK) || !vq->enabled || vq->broken || n->vhost.running) {
		rx_stall(n, true);
		return;
	}
	for (int i = 0; i < RX_BURST; i++) {
		if (!n->pending_len) {
			ssize_t r = read(n->tap_fd, n->pending, sizeof(n->pending));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				break;  /* EAGAIN: drained */
			if (r < VIRTIO_NET_HDR_LEN)
				continue;
			n->pending_len = r;
		}
		int d = rx_deliver(n, vq);
		if (d < 0) {
			virtio_pci_queue_broken(&n->vp, Q_RX);
			rx_stall(n, true);
			return;
		}
		if (d == 0) {
			rx_stall(n, true);
			if (virtq_rearm(vq))
				rx_stall(n, false);  /* buffers arrived meanwhile */
			break;
		}
		n->pending_len = 0;
	}
	virtio_pci_queue_done(&n->vp, Q_RX);
}

static void tap_handler(void *opaque, int fd, uint32_t events)
{
	struct virtio_net *n = opaque;

	(void)fd;
	(void)events;
	pthread_mutex_lock(&n->vp.lock);
	rx_process(n);
	pthread_mutex_unlock(&n->vp.lock);
}

/* ---- control queue ---- */

static uint16_t cfg_status(const struct virtio_net *n)
{
	return (uint16_t)(n->config[6] | n->config[7] << 8);
}

static void set_cfg_status(struct virtio_net *n, uint16_t v)
{
	n->config[6] = v & 0xff;
	n->config[7] = v >> 8;
}

/* Each chain: the command in its device-readable part, the ack byte the
 * first of its device-writable part. A chain with no room for the ack is
 * returned unanswered and unobeyed (used length 0). */
static void ctrl_process(struct virtio_net *n, struct virtq *vq)
{
	int r;
	while ((r = virtq_pop(vq, &n->elem)) > 0) {
		struct virtq_elem *e = &n->elem;
		if (e->in_len < 1) {   /* malformed: not obeyed either */
			virtq_push(vq, e->head, 0);
			continue;
		}
		uint8_t cmd[VIRTIO_NET_CTRL_MAX];
		size_t got = virtq_iov_to_buf(e->iov, e->nout, 0, cmd, sizeof(cmd));
		uint16_t status = cfg_status(n);
		uint8_t ack = got < 2 ? VIRTIO_NET_ERR : virtio_net_ctrl_apply(cmd, e->out_len, &status);
		if ((cfg_status(n) & ~status) & VIRTIO_NET_S_ANNOUNCE)   /* once per announce */
			kvz_info("virtio net %s: the guest announced itself", n->opt.tap);
		set_cfg_status(n, status);
		virtq_push(vq, e->head, (uint32_t)virtq_buf_to_iov(e->iov + e->nout, e->nin, 0, &ack, 1));
	}
	if (r < 0)
		vq->broken = true;
}

static void net_queue_notify(void *dev, struct virtio_pci *vp, unsigned q)
{
	struct virtio_net *n = dev;
	struct virtq *vq = &vp->vq[q];

	if (q == Q_RX) {
		/* New receive buffers: take the TAP up again. */
		virtq_rearm(vq);
		rx_stall(n, false);
		rx_process(n);
		return;
	}
	do {
		if (q == Q_CTRL)
			ctrl_process(n, vq);
		else
			tx_process(n, vq);
		virtio_pci_queue_done(vp, q);
		if (vq->broken) {
			virtio_pci_queue_broken(vp, q);
			return;
		}
	} while (virtq_rearm(vq));
}

static void set_offload(struct virtio_net *n)
{
	unsigned off = 0;

	if (virtio_pci_has_feature(&n->vp, VIRTIO_NET_F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		if (virtio_pci_has_feature(&n->vp, VIRTIO_NET_F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (virtio_pci_has_feature(&n->vp, VIRTIO_NET_F_GUEST_TSO6))
			off |= TUN_F_TSO6;
	}
	if (ioctl(n->tap_fd, TUNSETOFFLOAD, off) < 0)
		kvz_warn("virtio net %s: TUNSETOFFLOAD: %s", n->opt.tap, strerror(errno));
}

/* Hands the queues to vhost-net; on failure the I/O thread keeps them
 * (the kicks set_status sends after DRIVER_OK start it). */
static void start_vhost(struct virtio_net *n)
{
	char err[256];

	rx_stall(n, true);
	if (vhost_net_start(&n->vhost, &n->vp, n->vp.ctx->mem, n->tap_fd, err, sizeof(err)) < 0) {
		kvz_warn("virtio net %s: %s; packets go through kvz-vmm instead", n->opt.tap, err);
		return;
	}
	if (!n->vhost_announced)
		kvz_info("virtio net %s: vhost-net moves the packets", n->opt.tap);
	n->vhost_announced = true;
}

static void net_driver_ok(void *dev, struct virtio_pci *vp)
{
	struct virtio_net *n = dev;
	(void)vp;

	set_offload(n);
	if (n->vhost.fd >= 0)
		start_vhost(n);
}

static void net_call_fd_changed(void *dev, struct virtio_pci *vp, unsigned q, int fd)
{
	struct virtio_net *n = dev;
	(void)vp;

	int r = vhost_net_set_call(&n->vhost, q, fd);
	if (r < 0)
		kvz_warn("virtio net %s: queue %u: VHOST_SET_VRING_CALL: %s", n->opt.tap, q, strerror(-r));
}

static void net_reset(void *dev, struct virtio_pci *vp)
{
	struct virtio_net *n = dev;

	vhost_net_stop(&n->vhost, vp);
	n->vhost_paused = false;
	n->pending_len = 0;
	set_cfg_status(n, VIRTIO_NET_S_LINK_UP);   /* no announcement pending */
	if (ioctl(n->tap_fd, TUNSETOFFLOAD, 0) < 0)
		kvz_debug("virtio net %s: TUNSETOFFLOAD: %s", n->opt.tap, strerror(errno));
}

/* Machine pause: the kernel's data path must stop writing guest RAM too.
 * vhost gives back the avail position (VHOST_GET_VRING_BASE); the used
 * index is what it last published in the guest's used ring. */
static void net_pause(void *dev, struct virtio_pci *vp)
{
	struct virtio_net *n = dev;

	if (!n->vhost.running)
		return;
	vhost_net_stop(&n->vhost, vp);
	for (unsigned q = 0; q < 2; q++) {
		struct virtq *vq = &vp->vq[q];
		if (vq->enabled && vq->used) {
			vq->used_idx = __atomic_load_n(&vq->used[1], __ATOMIC_ACQUIRE);
			vq->signalled_valid = false;
		}
	}
	n->vhost_paused = true;
}

static void net_resume(void *dev, struct virtio_pci *vp)
{
	struct virtio_net *n = dev;
	(void)vp;

	if (!n->vhost_paused)
		return;
	n->vhost_paused = false;
	start_vhost(n);
}

/* Live migration's dirty log turned on or off (guest_mem.vhost_log): a
 * running vhost switches its logging now; a stopped one starts as the log
 * says. */
static int net_log_changed(void *opaque, char *err, size_t errlen)
{
	struct virtio_net *n = opaque;
	pthread_mutex_lock(&n->vp.lock);
	const uint64_t *log = __atomic_load_n(&n->vp.ctx->mem->vhost_log, __ATOMIC_ACQUIRE);
	int rc = vhost_net_set_log(&n->vhost, &n->vp, log, err, errlen);
	pthread_mutex_unlock(&n->vp.lock);
	if (rc < 0 && !log)
		kvz_warn("virtio net %s: %s", n->opt.tap, err);
	return rc;
}

static const struct virtio_dev_ops net_ops = {
	.queue_notify = net_queue_notify,
	.driver_ok = net_driver_ok,
	.reset = net_reset,
	.call_fd_changed = net_call_fd_changed,
	.pause = net_pause,
	.resume = net_resume,
};

/* ---- host side ---- */

static int open_tap(struct virtio_net *n, char *err, size_t errlen)
{
	struct ifreq ifr;
	int hdr = VIRTIO_NET_HDR_LEN;

	n->created_tap = if_nametoindex(n->opt.tap) == 0;
	n->tap_fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (n->tap_fd < 0) {
		snprintf(err, errlen, "--net tap=%s: /dev/net/tun: %s", n->opt.tap, strerror(errno));
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", n->opt.tap);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(n->tap_fd, TUNSETIFF, &ifr) < 0) {
		snprintf(err, errlen, "--net tap=%s: TUNSETIFF: %s", n->opt.tap, strerror(errno));
		return -1;
	}
	if (ioctl(n->tap_fd, TUNSETVNETHDRSZ, &hdr) < 0 || ioctl(n->tap_fd, TUNSETOFFLOAD, 0) < 0) {
		snprintf(err, errlen, "--net tap=%s: vnet header setup: %s", n->opt.tap, strerror(errno));
		return -1;
	}
	char msg[256];
	if (nl_link_up(n->opt.tap, msg, sizeof(msg)) < 0) {
		snprintf(err, errlen, "--net tap=%s: %s", n->opt.tap, msg);
		return -1;
	}
	return 0;
}

static int join_bridge(struct virtio_net *n, char *err, size_t errlen)
{
	const char *br = n->opt.bridge;
	char msg[256];

	if (!br[0])
		return 0;
	if (nl_bridge_ensure(br, &n->created_bridge, msg, sizeof(msg)) < 0 ||
	    nl_link_set_master(n->opt.tap, br, msg, sizeof(msg)) < 0) {
		snprintf(err, errlen, "--net bridge=%s: %s", br, msg);
		return -1;
	}
	return 0;
}

/* vhost-net as the options ask: required, tried, or not at all. */
static int open_vhost(struct virtio_net *n, uint64_t features, char *err, size_t errlen)
{
	char why[256];

	n->vhost.fd = -1;
	if (n->opt.vhost == VIRTIO_NET_VHOST_OFF)
		return 0;
	if (vhost_net_open(&n->vhost, why, sizeof(why)) == 0 && !vhost_net_supports(&n->vhost, features)) {
		snprintf(why, sizeof(why), "the kernel's vhost-net lacks virtio 1.x ring features");
		vhost_net_close(&n->vhost);
	}
	if (n->vhost.fd >= 0)
		return 0;
	if (n->opt.vhost == VIRTIO_NET_VHOST_ON) {
		snprintf(err, errlen, "--net tap=%s,vhost=on: %s", n->opt.tap, why);
		return -1;
	}
	kvz_debug("virtio net %s: no vhost-net (%s)", n->opt.tap, why);
	return 0;
}

/* After a live migration the guest's MAC sits behind another host's port:
 * a RARP broadcast from it (what QEMU's announce sends) makes bridges and
 * switches learn the new port before the guest says anything. Written
 * behind a zeroed vnet header, as the TAP expects. */
static int send_rarp(struct virtio_net *n)
{
	uint8_t f[VIRTIO_NET_HDR_LEN + 60] = {0};
	uint8_t *e = f + VIRTIO_NET_HDR_LEN;
	memset(e, 0xff, 6);                         /* broadcast */
	memcpy(e + 6, n->opt.mac, 6);
	e[12] = 0x80, e[13] = 0x35;                 /* RARP */
	static const uint8_t arp[] = { 0, 1, 8, 0, 6, 4, 0, 3 };   /* Ethernet/IPv4, reverse request */
	memcpy(e + 14, arp, sizeof(arp));
	memcpy(e + 22, n->opt.mac, 6);              /* sender MAC, IP 0 */
	memcpy(e + 32, n->opt.mac, 6);              /* target MAC, IP 0 */
	return write(n->tap_fd, f, sizeof(f)) == (ssize_t)sizeof(f) ? 0 : -1;
}

/* The RARP, and where the driver took VIRTIO_NET_F_GUEST_ANNOUNCE, the
 * guest asked to announce itself too (gratuitous ARP and IPv6 neighbour
 * advertisements for all its addresses, which a RARP cannot carry):
 * VIRTIO_NET_S_ANNOUNCE and a configuration interrupt; the driver acks on
 * the control queue. */
int virtio_net_announce(struct virtio_net *n)
{
	pthread_mutex_lock(&n->vp.lock);
	if ((n->vp.status & VIRTIO_STATUS_DRIVER_OK) &&
	    virtio_pci_has_feature(&n->vp, VIRTIO_NET_F_GUEST_ANNOUNCE)) {
		set_cfg_status(n, cfg_status(n) | VIRTIO_NET_S_ANNOUNCE);
		virtio_pci_config_changed(&n->vp);
	}
	pthread_mutex_unlock(&n->vp.lock);
	return send_rarp(n);
}

static void build_config(struct virtio_net *n)
{
	memcpy(n->config, n->opt.mac, 6);
	set_cfg_status(n, VIRTIO_NET_S_LINK_UP);
	n->config[8] = 1;   /* max_virtqueue_pairs */
}

struct virtio_net *virtio_net_create(const struct vmm_context *ctx,
				     const struct virtio_net_options *o,
				     char *err, size_t errlen)
{
	struct virtio_net *n = calloc(1, sizeof(*n));

	if (!n) {
		snprintf(err, errlen, "--net tap=%s: out of memory", o->tap);
		return NULL;
	}
	n->opt = *o;
	n->tap_fd = -1;
	n->vhost.fd = -1;
	uint64_t features = 1ull << VIRTIO_NET_F_CSUM | 1ull << VIRTIO_NET_F_GUEST_CSUM |
			    1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_GUEST_TSO4 |
			    1ull << VIRTIO_NET_F_GUEST_TSO6 | 1ull << VIRTIO_NET_F_HOST_TSO4 |
			    1ull << VIRTIO_NET_F_HOST_TSO6 | 1ull << VIRTIO_NET_F_MRG_RXBUF |
			    1ull << VIRTIO_NET_F_STATUS | 1ull << VIRTIO_NET_F_CTRL_VQ |
			    1ull << VIRTIO_NET_F_GUEST_ANNOUNCE;
	if (open_vhost(n, features, err, errlen) < 0 || open_tap(n, err, errlen) < 0 ||
	    join_bridge(n, err, errlen) < 0)
		goto fail;
	build_config(n);
	struct virtio_pci_params p = {
		.device_id = VIRTIO_ID_NET,
		.class_code = 0x020000,   /* Ethernet controller */
		.features = features,
		.nqueues = 3,   /* rx, tx, control */
		.queue_size = QUEUE_SIZE,
		.config = n->config,
		.config_len = sizeof(n->config),
		.ops = &net_ops,
		.dev = n,
	};
	char name[32];
	snprintf(name, sizeof(name), "net-%s", o->tap);
	if (virtio_pci_init(&n->vp, ctx, &p, name, err, errlen) < 0)
		goto fail;
	/* Watched from the start but stalled: nothing is read before the
	 * driver is ready and has given receive buffers. */
	int r = io_thread_add(ctx->io, n->tap_fd, 0, tap_handler, n);
	if (r < 0) {
		snprintf(err, errlen, "--net tap=%s: I/O thread: %s", o->tap, strerror(-r));
		virtio_pci_destroy(&n->vp);
		goto fail;
	}
	n->rx_stalled = true;
	/* vhost writes guest RAM unseen by KVM's dirty log: its own log. */
	struct guest_mem_logger logger = { net_log_changed, n };
	if (n->vhost.fd >= 0 && guest_mem_add_logger(ctx->mem, &logger) < 0) {
		snprintf(err, errlen, "--net tap=%s: more than %d vhost-net devices", o->tap,
			 GUEST_MEM_MAX_LOGGERS);
		io_thread_del(ctx->io, n->tap_fd);
		virtio_pci_destroy(&n->vp);
		goto fail;
	}
	return n;
fail:
	vhost_net_close(&n->vhost);
	if (n->created_bridge) {
		char msg[256];
		if (nl_link_del(n->opt.bridge, msg, sizeof(msg)) < 0)
			kvz_warn("--net bridge=%s: %s", n->opt.bridge, msg);
	}
	if (n->tap_fd >= 0)
		close(n->tap_fd);  /* a TAP we created goes away with it */
	free(n);
	return NULL;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	/* First: the kernel's worker stops using the rings, eventfds and TAP. */
	guest_mem_remove_logger(n->vp.ctx->mem, n);
	vhost_net_close(&n->vhost);
	io_thread_del(n->vp.ctx->io, n->tap_fd);
	virtio_pci_destroy(&n->vp);
	close(n->tap_fd);
	free(n);
}
