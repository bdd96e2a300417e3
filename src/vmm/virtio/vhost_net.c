#include "vhost_net.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vhost.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log.h"

#define VHOST_NET_QUEUES 2
#define VIRTIO_NET_F_MRG_RXBUF 15

/* Ring features whose handling vhost takes over from virtqueue.c. */
static const uint64_t ring_features = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_INDIRECT_DESC |
				      1ull << VIRTIO_F_EVENT_IDX | 1ull << VIRTIO_NET_F_MRG_RXBUF;

int vhost_net_open(struct vhost_net *h, char *err, size_t errlen)
{
	h->running = false;
	h->fd = open("/dev/vhost-net", O_RDWR | O_CLOEXEC);
	if (h->fd < 0) {
		snprintf(err, errlen, "/dev/vhost-net: %s", strerror(errno));
		return -1;
	}
	if (ioctl(h->fd, VHOST_SET_OWNER) < 0 || ioctl(h->fd, VHOST_GET_FEATURES, &h->features) < 0) {
		snprintf(err, errlen, "/dev/vhost-net: %s", strerror(errno));
		close(h->fd);
		h->fd = -1;
		return -1;
	}
	return 0;
}

void vhost_net_close(struct vhost_net *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	h->running = false;
}

bool vhost_net_supports(const struct vhost_net *h, uint64_t offered)
{
	uint64_t needed = (offered | 1ull << VIRTIO_F_VERSION_1) & ring_features;
	return h->fd >= 0 && (h->features & needed) == needed;
}

/* Guest RAM as the kernel should see it: the two memfd regions. */
static int set_mem_table(struct vhost_net *h, const struct guest_mem *mem)
{
	size_t len = sizeof(struct vhost_memory) + 2 * sizeof(struct vhost_memory_region);
	struct vhost_memory *t = calloc(1, len);
	if (!t)
		return -ENOMEM;
	t->regions[t->nregions++] = (struct vhost_memory_region){
		.guest_phys_addr = 0, .memory_size = mem->lo_size, .userspace_addr = (uintptr_t)mem->host,
	};
	if (mem->hi_size)
		t->regions[t->nregions++] = (struct vhost_memory_region){
			.guest_phys_addr = GUEST_MEM_HI_START, .memory_size = mem->hi_size,
			.userspace_addr = (uintptr_t)(mem->host + mem->lo_size),
		};
	int rc = ioctl(h->fd, VHOST_SET_MEM_TABLE, t) < 0 ? -errno : 0;
	free(t);
	return rc;
}

/* The ring's addresses; with a log, its used ring's writes are logged at
 * their guest physical address (VHOST_VRING_F_LOG, log_guest_addr). */
static int set_addr(struct vhost_net *h, const struct virtq *vq, unsigned q, bool log)
{
	struct vhost_vring_addr addr = {
		.index = q,
		.flags = log ? 1u << VHOST_VRING_F_LOG : 0,
		.desc_user_addr = (uintptr_t)vq->desc,
		.avail_user_addr = (uintptr_t)vq->avail,
		.used_user_addr = (uintptr_t)vq->used,
		.log_guest_addr = log ? vq->used_gpa : 0,
	};
	return ioctl(h->fd, VHOST_SET_VRING_ADDR, &addr) < 0 ? -errno : 0;
}

static int set_ring(struct vhost_net *h, struct virtio_pci *vp, unsigned q, bool log, const char **what)
{
	struct virtq *vq = &vp->vq[q];
	struct vhost_vring_state num = {.index = q, .num = vq->size};
	struct vhost_vring_state base = {.index = q, .num = vq->last_avail};
	*what = "VHOST_SET_VRING_NUM";
	if (ioctl(h->fd, VHOST_SET_VRING_NUM, &num) < 0)
		return -errno;
	*what = "VHOST_SET_VRING_BASE";
	if (ioctl(h->fd, VHOST_SET_VRING_BASE, &base) < 0)
		return -errno;
	*what = "VHOST_SET_VRING_ADDR";
	int rc = set_addr(h, vq, q, log);
	if (rc < 0)
		return rc;
	int kick_fd, call_fd;
	virtio_pci_offload_queue(vp, q, &kick_fd, &call_fd);
	struct vhost_vring_file kick = {.index = q, .fd = kick_fd};
	*what = "VHOST_SET_VRING_KICK";
	if (ioctl(h->fd, VHOST_SET_VRING_KICK, &kick) < 0)
		return -errno;
	*what = "VHOST_SET_VRING_CALL";
	return vhost_net_set_call(h, q, call_fd);
}

/* The log's address (before VHOST_F_LOG_ALL: the kernel checks that it
 * covers the memory table) and the features, with VHOST_F_LOG_ALL while
 * logging: every guest buffer the kernel writes is then logged. */
static int set_log_features(struct vhost_net *h, const uint64_t *log, const char **what)
{
	uint64_t base = (uintptr_t)log;
	*what = "VHOST_SET_LOG_BASE";
	if (log && ioctl(h->fd, VHOST_SET_LOG_BASE, &base) < 0)
		return -errno;
	uint64_t features = h->acked | (log ? 1ull << VHOST_F_LOG_ALL : 0);
	*what = "VHOST_SET_FEATURES";
	return ioctl(h->fd, VHOST_SET_FEATURES, &features) < 0 ? -errno : 0;
}

static void detach_backends(struct vhost_net *h)
{
	for (unsigned q = 0; q < VHOST_NET_QUEUES; q++) {
		struct vhost_vring_file f = {.index = q, .fd = -1};
		if (ioctl(h->fd, VHOST_NET_SET_BACKEND, &f) < 0 && errno != ENOBUFS)
			kvz_debug("vhost-net: detach queue %u: %s", q, strerror(errno));
	}
}

int vhost_net_start(struct vhost_net *h, struct virtio_pci *vp, const struct guest_mem *mem,
		    int tap_fd, char *err, size_t errlen)
{
	const uint64_t *log = __atomic_load_n(&mem->vhost_log, __ATOMIC_ACQUIRE);
	h->acked = vp->driver_features & h->features;
	const char *what = "VHOST_SET_MEM_TABLE";
	int rc = set_mem_table(h, mem);
	if (rc == 0)
		rc = set_log_features(h, log, &what);
	for (unsigned q = 0; q < VHOST_NET_QUEUES && rc == 0; q++) {
		if (!vp->vq[q].enabled || vp->vq[q].broken) {
			snprintf(err, errlen, "vhost-net: queue %u is not enabled", q);
			rc = -EINVAL;
			what = NULL;
			break;
		}
		rc = set_ring(h, vp, q, log != NULL, &what);
	}
	for (unsigned q = 0; q < VHOST_NET_QUEUES && rc == 0; q++) {
		struct vhost_vring_file f = {.index = q, .fd = tap_fd};
		what = "VHOST_NET_SET_BACKEND";
		if (ioctl(h->fd, VHOST_NET_SET_BACKEND, &f) < 0)
			rc = -errno;
	}
	if (rc == 0) {
		h->running = true;
		h->logging = log != NULL;
		return 0;
	}
	if (what)
		snprintf(err, errlen, "vhost-net: %s: %s", what, strerror(-rc));
	detach_backends(h);
	for (unsigned q = 0; q < VHOST_NET_QUEUES; q++)
		virtio_pci_unoffload_queue(vp, q);
	return -1;
}

void vhost_net_stop(struct vhost_net *h, struct virtio_pci *vp)
{
	if (!h->running)
		return;
	detach_backends(h);
	for (unsigned q = 0; q < VHOST_NET_QUEUES; q++) {
		struct vhost_vring_state s = {.index = q};
		if (ioctl(h->fd, VHOST_GET_VRING_BASE, &s) == 0)
			vp->vq[q].last_avail = (uint16_t)s.num;
		virtio_pci_unoffload_queue(vp, q);
	}
	h->running = false;
	h->logging = false;
}

int vhost_net_set_call(struct vhost_net *h, unsigned q, int fd)
{
	struct vhost_vring_file f = {.index = q, .fd = fd};
	return ioctl(h->fd, VHOST_SET_VRING_CALL, &f) < 0 ? -errno : 0;
}

int vhost_net_set_log(struct vhost_net *h, struct virtio_pci *vp, const uint64_t *log, char *err,
		      size_t errlen)
{
	if (!h->running || h->logging == (log != NULL))
		return 0;
	const char *what;
	int rc = set_log_features(h, log, &what);
	for (unsigned q = 0; q < VHOST_NET_QUEUES && rc == 0; q++) {
		what = "VHOST_SET_VRING_ADDR";
		rc = set_addr(h, &vp->vq[q], q, log != NULL);
	}
	if (rc < 0) {
		snprintf(err, errlen, "vhost-net: logging %s: %s: %s", log ? "on" : "off", what, strerror(-rc));
		if (log && set_log_features(h, NULL, &what) == 0)   /* best effort: not left half on */
			for (unsigned q = 0; q < VHOST_NET_QUEUES; q++)
				set_addr(h, &vp->vq[q], q, false);
		return -1;
	}
	h->logging = log != NULL;
	return 0;
}
