/* virtio 1.x modern PCI transport (virtio spec 4.1): one PCI function per
 * device with the common, notify, ISR and device-config capabilities and an
 * MSI-X table, all in BAR 0. Queue kicks arrive on ioeventfds served by the
 * I/O thread; interrupts leave through irqfds on MSI routes. A device
 * (blk, net, balloon, rng) plugs in through struct virtio_dev_ops. */
#ifndef KVZ_VIRTIO_PCI_H
#define KVZ_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "device_hooks.h"
#include "pci.h"
#include "virtqueue.h"

#define VIRTIO_ID_NET     1
#define VIRTIO_ID_BLOCK   2
#define VIRTIO_ID_RNG     4
#define VIRTIO_ID_BALLOON 5

#define VIRTIO_F_VERSION_1 32

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER      2
#define VIRTIO_STATUS_DRIVER_OK   4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED      0x80

#define VIRTIO_PCI_MAX_QUEUES 8
#define VIRTIO_MSI_NO_VECTOR 0xffff

struct virtio_pci;
struct state_buf;
struct state_cursor;

struct virtio_dev_ops {
	/* Queue q was kicked (or needs another look). Runs on the I/O thread
	 * with the device lock held. */
	void (*queue_notify)(void *dev, struct virtio_pci *vp, unsigned q);
	/* The driver wrote device config at off (the bytes are already in the
	 * config buffer). Lock held. Optional. */
	void (*config_written)(void *dev, struct virtio_pci *vp, uint32_t off, unsigned len);
	/* The driver set DRIVER_OK: queues are live. Lock held. Optional. */
	void (*driver_ok)(void *dev, struct virtio_pci *vp);
	/* Device reset (driver wrote 0 to status, or system_reset): back to
	 * power-on state. Lock held. Optional. */
	void (*reset)(void *dev, struct virtio_pci *vp);
	/* Offloaded queue q must now signal its interrupts on fd (see
	 * virtio_pci_offload_queue). Lock held. Required by devices that
	 * offload. */
	void (*call_fd_changed)(void *dev, struct virtio_pci *vp, unsigned q, int fd);
	/* After a BAR write, with the lock released: where a device calls out
	 * of itself (QMP events), so that nothing it calls can wait on a lock
	 * this device holds. Optional. */
	void (*after_write)(void *dev, struct virtio_pci *vp);
	/* Snapshots: the machine is paused (the I/O thread parked). pause/
	 * resume stop and restart a kernel data path; save/load carry the
	 * device's own state beyond its config bytes and queues (load runs
	 * after the transport's, before DRIVER_OK is replayed). Lock held.
	 * All optional. */
	void (*pause)(void *dev, struct virtio_pci *vp);
	void (*resume)(void *dev, struct virtio_pci *vp);
	void (*save)(void *dev, struct virtio_pci *vp, struct state_buf *out);
	int (*load)(void *dev, struct virtio_pci *vp, struct state_cursor *in, uint32_t version,
		    char *err, size_t errlen);
};

struct virtio_pci_params {
	uint16_t device_id;       /* VIRTIO_ID_* */
	uint32_t class_code;      /* PCI class << 16 | subclass << 8 | prog-if */
	uint64_t features;        /* offered; VERSION_1 is added */
	unsigned nqueues;
	uint16_t queue_size;      /* max size of every queue */
	uint8_t *config;          /* device config space, owned by the device */
	uint32_t config_len;
	const struct virtio_dev_ops *ops;
	void *dev;
	/* Section versions of the device's state when its save/load add to
	 * the transport's (0: VIRTIO_PCI_STATE_VERSION for both). */
	uint32_t state_version, state_min_version;
};

/* Transport state. Everything but the fds and pointers is plain data a
 * snapshot can save. */
struct virtio_pci_msix_entry {
	uint32_t addr_lo, addr_hi, data, ctrl;
};

struct virtio_pci {
	struct pci_device pci;
	struct virtio_pci_params p;
	const struct vmm_context *ctx;
	/* Serializes the vCPUs' BAR accesses with the I/O thread's queue work. */
	pthread_mutex_t lock;

	uint64_t driver_features;
	uint32_t device_feature_select;
	uint32_t driver_feature_select;
	uint8_t status;
	uint8_t config_generation;
	uint16_t queue_select;
	uint16_t config_vector;
	uint8_t isr;
	struct virtq vq[VIRTIO_PCI_MAX_QUEUES];
	uint16_t queue_vector[VIRTIO_PCI_MAX_QUEUES];
	uint16_t queue_enable[VIRTIO_PCI_MAX_QUEUES];

	unsigned nvectors;
	struct virtio_pci_msix_entry msix[VIRTIO_PCI_MAX_QUEUES + 1];
	uint64_t msix_pending;
	bool msix_enabled;
	bool msix_masked;         /* function mask */
	uint8_t msix_cap;         /* config-space offset of the MSI-X capability */

	struct virtio_pci_kick {
		struct virtio_pci *vp;
		unsigned q;
	} kick[VIRTIO_PCI_MAX_QUEUES];  /* I/O-thread handler contexts */
	int kick_fd[VIRTIO_PCI_MAX_QUEUES];
	bool kick_assigned[VIRTIO_PCI_MAX_QUEUES];
	uint64_t kick_addr[VIRTIO_PCI_MAX_QUEUES];
	int irq_fd[VIRTIO_PCI_MAX_QUEUES + 1];
	int irq_gsi[VIRTIO_PCI_MAX_QUEUES + 1];
	/* Offloaded queues: the kernel (vhost) reads the kick eventfd and
	 * signals call_fd[q], either the vector's irqfd or call_proxy_fd[q]
	 * which the I/O thread turns into an interrupt by the rules here. */
	bool offloaded[VIRTIO_PCI_MAX_QUEUES];
	int call_fd[VIRTIO_PCI_MAX_QUEUES];
	int call_proxy_fd[VIRTIO_PCI_MAX_QUEUES];
	bool intx_level;
	char name[32];
};

/* ctx must outlive the device (it is kept by pointer).
 * Builds config space and capabilities, creates the eventfds and MSI
 * routes, and registers on ctx->pci. Returns 0, or -1 with err set and
 * nothing left allocated. */
int virtio_pci_init(struct virtio_pci *vp, const struct vmm_context *ctx,
		    const struct virtio_pci_params *p, const char *name,
		    char *err, size_t errlen);
/* Releases fds and routes. The PCI registration stays (the bus has no
 * unregister); only call when the whole machine goes away. */
void virtio_pci_destroy(struct virtio_pci *vp);

/* Device side, lock held: hands queue q's data path to the kernel. The
 * I/O thread stops reading the queue's kick eventfd (returned in *kick_fd
 * for the backend to poll); *call_fd is what the backend signals for an
 * interrupt: the vector's irqfd straight into KVM while the vector is
 * enabled and unmasked, else a proxy eventfd the I/O thread handles
 * (masking, INTx). When that choice changes, ops->call_fd_changed runs. */
void virtio_pci_offload_queue(struct virtio_pci *vp, unsigned q, int *kick_fd, int *call_fd);
/* Lock held: back to the I/O thread (reset, or the backend failed). */
void virtio_pci_unoffload_queue(struct virtio_pci *vp, unsigned q);

/* Device side, lock held: interrupt for queue q when the driver wants it. */
void virtio_pci_queue_done(struct virtio_pci *vp, unsigned q);
/* Device side, lock held: config changed (bumps the generation). */
void virtio_pci_config_changed(struct virtio_pci *vp);
/* Device side, lock held: malformed guest input on queue q. Logs one line,
 * sets DEVICE_NEEDS_RESET and tells the driver. */
void virtio_pci_queue_broken(struct virtio_pci *vp, unsigned q);
/* Whether feature bit f was negotiated. */
bool virtio_pci_has_feature(const struct virtio_pci *vp, unsigned f);

/* Section version of the transport's state (virtio_pci_state.c). */
#define VIRTIO_PCI_STATE_VERSION 1

/* system_reset: takes the lock and resets like a driver write of 0. */
void virtio_pci_reset(struct virtio_pci *vp);

#endif
