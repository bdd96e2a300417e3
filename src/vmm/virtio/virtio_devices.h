/* The set of virtio devices a VM was started with: the one entry point the
 * VMM core (main.c, QMP) uses. Owned by the virtio work; the core calls
 * only what is declared here. */
#ifndef KVZ_VMM_VIRTIO_DEVICES_H
#define KVZ_VMM_VIRTIO_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "device_hooks.h"

struct virtio_options {
	/* "--disk" values: "PATH[,readonly][,format=F][,num-queues=N][,aio=io_uring|sync]" */
	const char **disks;
	size_t ndisks;
	unsigned ncpus;      /* disks get one queue per vCPU by default */
	const char **nets;   /* "--net" values: "tap=NAME[,mac=..][,bridge=..]" */
	size_t nnets;
	const char *cdrom;   /* "--cdrom" ISO image ("": an empty drive), or NULL */
	bool balloon;
	bool rng;
	/* Offer VIRTIO_BALLOON_F_DEFLATE_ON_OOM (off by default: with it a
	 * Linux guest keeps MemTotal unchanged while inflated). */
	bool balloon_deflate_on_oom;
	/* --incoming: the disks' locks are taken when the state is loaded
	 * (the source may run on the same shared image until then). */
	bool disks_lock_later;
};

struct virtio_devices;

/* Creates and registers every device on ctx->pci before the guest starts.
 * Returns NULL with one line in err on bad options or host failures
 * (missing image, TAP that cannot be created); nothing is left behind. */
struct virtio_devices *virtio_devices_create(const struct vmm_context *ctx,
					     const struct virtio_options *opts,
					     char *err, size_t errlen);
void virtio_devices_destroy(struct virtio_devices *vd);

/* QMP: balloon target in bytes of guest RAM; query returns {"actual": N}
 * plus statistics when the guest reported them. Return 0, or -1 with err
 * set (no balloon device). */
int virtio_devices_balloon_set(struct virtio_devices *vd, uint64_t target_bytes,
			       char *err, size_t errlen);
json_t *virtio_devices_balloon_query(struct virtio_devices *vd, char *err, size_t errlen);
/* QMP query-blockstats: QEMU's shape, one entry per disk. */
json_t *virtio_devices_blockstats(struct virtio_devices *vd);

/* QMP block_resize: grows disk `device` ("vda"...) to bytes (see
 * virtio_blk_resize). -ENODEV for no such disk, -EROFS for the CD-ROM
 * ("cdrom" or its transport name); one line in err. */
int virtio_devices_block_resize(struct virtio_devices *vd, const char *device, uint64_t bytes,
				char *err, size_t errlen);
/* The CD-ROM (--cdrom), or NULL; whether name is one of the disks (vda...). */
struct virtio_scsi;
struct virtio_scsi *virtio_devices_cdrom(struct virtio_devices *vd);
bool virtio_devices_has_disk(struct virtio_devices *vd, const char *name);

/* After an incoming live migration: every NIC announces the guest's MAC
 * (RARP). Returns how many NICs failed to. */
int virtio_devices_announce(struct virtio_devices *vd);

/* The writable disks' backends, in --disk order (at most max): what a
 * migration without shared storage copies. Returns how many. */
struct blk_backend;
unsigned virtio_devices_writable_disks(struct virtio_devices *vd, struct blk_backend **out,
				       unsigned max);

/* On system_reset: devices return to their power-on state. */
void virtio_devices_reset(struct virtio_devices *vd);

/* Where device events (BALLOON_CHANGE, the CD's DEVICE_TRAY_MOVED) are emitted; NULL for nowhere. Call
 * before the guest starts (or any time: the pointer is published
 * atomically). The server must outlive the devices or be unset first. */
struct qmp_server;
void virtio_devices_set_qmp(struct virtio_devices *vd, struct qmp_server *qmp);

#endif
