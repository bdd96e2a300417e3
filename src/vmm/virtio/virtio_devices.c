/* The virtio devices of one VM: parses the command-line values, creates
 * the devices in a fixed order (disks, nets, balloon, rng: disks get PCI
 * slots, hence guest names vda, vdb..., in command-line order) and tears
 * everything down again when any of them fails. */
#include "virtio_devices.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio_balloon.h"
#include "virtio_blk.h"
#include "virtio_net.h"
#include "virtio_rng.h"
#include "virtio_scsi.h"

#define MAX_DISKS 26
#define MAX_NETS 8

struct virtio_devices {
	/* A copy: the caller's context may be a local that goes away; every
	 * device keeps a pointer to this one. */
	struct vmm_context ctx;
	struct virtio_blk *blk[MAX_DISKS];
	size_t nblk;
	struct virtio_net *net[MAX_NETS];
	size_t nnet;
	struct virtio_balloon *balloon;
	struct virtio_rng *rng;
	struct virtio_scsi *scsi;   /* --cdrom */
};

#define DISK_SYNTAX "PATH[,readonly][,format=raw|qcow2][,num-queues=N][,aio=io_uring|sync]"

static bool opt_is(const char *opt, size_t len, const char *name)
{
	return strlen(name) == len && !strncmp(opt, name, len);
}

/* "KEY=" prefix: returns the value or NULL. */
static const char *opt_value(const char *opt, size_t len, const char *key)
{
	size_t k = strlen(key);
	return len > k && !strncmp(opt, key, k) && opt[k] == '=' ? opt + k + 1 : NULL;
}

static int parse_disk_opt(const char *spec, const char *opt, size_t len, struct virtio_blk_opts *o,
			  char *fmt, size_t fmtlen, unsigned max_queues, char *err, size_t errlen)
{
	const char *v;

	if (opt_is(opt, len, "readonly") || opt_is(opt, len, "readonly=on")) {
		o->readonly = true;
	} else if ((v = opt_value(opt, len, "format"))) {
		size_t n = len - (size_t)(v - opt);
		if (n == 0 || n >= fmtlen) {
			snprintf(err, errlen, "--disk %s: bad format", spec);
			return -1;
		}
		memcpy(fmt, v, n);
		fmt[n] = '\0';
		o->format = fmt;
	} else if ((v = opt_value(opt, len, "num-queues"))) {
		char *end;
		unsigned long n = strtoul(v, &end, 10);
		if (end != opt + len || *v < '0' || *v > '9' || n < 1 || n > max_queues) {
			snprintf(err, errlen, "--disk %s: num-queues must be 1..%u", spec, max_queues);
			return -1;
		}
		o->num_queues = (unsigned)n;
	} else if (opt_is(opt, len, "aio=sync")) {
		o->aio_sync = true;
	} else if (opt_is(opt, len, "aio=io_uring")) {
		o->aio_sync = false;
	} else {
		snprintf(err, errlen, "--disk %s: unknown option '%.*s' (expected %s)", spec, (int)len, opt,
			 DISK_SYNTAX);
		return -1;
	}
	return 0;
}

/* DISK_SYNTAX: PATH is everything before the first comma. One queue per
 * vCPU unless num-queues says otherwise. */
static int parse_disk(const char *spec, char *path, size_t pathlen, char *fmt, size_t fmtlen,
		      struct virtio_blk_opts *o, unsigned ncpus, char *err, size_t errlen)
{
	const char *comma = strchr(spec, ',');
	size_t n = comma ? (size_t)(comma - spec) : strlen(spec);

	*o = (struct virtio_blk_opts){ .path = path };
	o->num_queues = ncpus < 1 ? 1 : ncpus > VIRTIO_PCI_MAX_QUEUES ? VIRTIO_PCI_MAX_QUEUES : ncpus;
	if (n == 0 || n >= pathlen) {
		snprintf(err, errlen, "--disk %s: expected %s", spec, DISK_SYNTAX);
		return -1;
	}
	memcpy(path, spec, n);
	path[n] = '\0';
	while (comma) {
		const char *opt = comma + 1;
		comma = strchr(opt, ',');
		size_t len = comma ? (size_t)(comma - opt) : strlen(opt);
		if (parse_disk_opt(spec, opt, len, o, fmt, fmtlen, VIRTIO_PCI_MAX_QUEUES, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static int create_disks(struct virtio_devices *vd, const struct virtio_options *o,
			char *err, size_t errlen)
{
	if (o->ndisks > MAX_DISKS) {
		snprintf(err, errlen, "--disk: at most %d disks", MAX_DISKS);
		return -1;
	}
	for (size_t i = 0; i < o->ndisks; i++) {
		char path[4096], fmt[16];
		struct virtio_blk_opts bo;
		if (parse_disk(o->disks[i], path, sizeof(path), fmt, sizeof(fmt), &bo, o->ncpus,
			       err, errlen) < 0)
			return -1;
		bo.lock_later = o->disks_lock_later;
		vd->blk[i] = virtio_blk_create_opts(&vd->ctx, &bo, (unsigned)i, err, errlen);
		if (!vd->blk[i])
			return -1;
		vd->nblk++;
	}
	return 0;
}

unsigned virtio_devices_writable_disks(struct virtio_devices *vd, struct blk_backend **out,
				       unsigned max)
{
	unsigned n = 0;
	for (size_t i = 0; vd && i < vd->nblk && n < max; i++)
		if (!vd->blk[i]->readonly)
			out[n++] = vd->blk[i]->backend;
	return n;
}

static int create_nets(struct virtio_devices *vd, const struct virtio_options *o,
		       char *err, size_t errlen)
{
	if (o->nnets > MAX_NETS) {
		snprintf(err, errlen, "--net: at most %d network devices", MAX_NETS);
		return -1;
	}
	for (size_t i = 0; i < o->nnets; i++) {
		struct virtio_net_options no;
		if (virtio_net_parse(o->nets[i], i, &no, err, errlen) < 0)
			return -1;
		vd->net[i] = virtio_net_create(&vd->ctx, &no, err, errlen);
		if (!vd->net[i])
			return -1;
		vd->nnet++;
	}
	return 0;
}

struct virtio_devices *virtio_devices_create(const struct vmm_context *ctx,
					     const struct virtio_options *opts,
					     char *err, size_t errlen)
{
	struct virtio_devices *vd = calloc(1, sizeof(*vd));

	if (!vd) {
		snprintf(err, errlen, "virtio: out of memory");
		return NULL;
	}
	vd->ctx = *ctx;
	if (create_disks(vd, opts, err, errlen) < 0)
		goto fail;
	if (opts->cdrom && !(vd->scsi = virtio_scsi_create(&vd->ctx, opts->cdrom, err, errlen)))
		goto fail;
	if (create_nets(vd, opts, err, errlen) < 0)
		goto fail;
	if (opts->balloon && !(vd->balloon = virtio_balloon_create(&vd->ctx, opts->balloon_deflate_on_oom, err, errlen)))
		goto fail;
	if (opts->rng && !(vd->rng = virtio_rng_create(&vd->ctx, err, errlen)))
		goto fail;
	return vd;
fail:
	virtio_devices_destroy(vd);
	return NULL;
}

void virtio_devices_destroy(struct virtio_devices *vd)
{
	if (!vd)
		return;
	for (size_t i = 0; i < vd->nblk; i++)
		virtio_blk_destroy(vd->blk[i]);
	for (size_t i = 0; i < vd->nnet; i++)
		virtio_net_destroy(vd->net[i]);
	virtio_balloon_destroy(vd->balloon);
	virtio_rng_destroy(vd->rng);
	virtio_scsi_destroy(vd->scsi);
	free(vd);
}

static const char no_balloon[] = "No balloon device has been activated";

int virtio_devices_balloon_set(struct virtio_devices *vd, uint64_t target_bytes,
			       char *err, size_t errlen)
{
	if (!vd || !vd->balloon) {
		snprintf(err, errlen, "%s", no_balloon);
		return -1;
	}
	return virtio_balloon_set_target(vd->balloon, target_bytes, err, errlen);
}

json_t *virtio_devices_balloon_query(struct virtio_devices *vd, char *err, size_t errlen)
{
	if (!vd || !vd->balloon) {
		snprintf(err, errlen, "%s", no_balloon);
		return NULL;
	}
	json_t *o = virtio_balloon_query(vd->balloon);
	if (!o)
		snprintf(err, errlen, "out of memory");
	return o;
}

json_t *virtio_devices_blockstats(struct virtio_devices *vd)
{
	json_t *a = json_array();

	for (size_t i = 0; a && vd && i < vd->nblk; i++) {
		struct virtio_blk_stats s;
		virtio_blk_get_stats(vd->blk[i], &s);
		json_array_append_new(a, json_pack("{s:s, s:{s:I, s:I, s:I, s:I, s:I}}",
			"device", vd->blk[i]->name, "stats",
			"rd_bytes", (json_int_t)s.rd_bytes, "wr_bytes", (json_int_t)s.wr_bytes,
			"rd_operations", (json_int_t)s.rd_ops, "wr_operations", (json_int_t)s.wr_ops,
			"flush_operations", (json_int_t)s.flush_ops));
	}
	return a;
}

int virtio_devices_block_resize(struct virtio_devices *vd, const char *device, uint64_t bytes,
				char *err, size_t errlen)
{
	for (size_t i = 0; vd && i < vd->nblk; i++)
		if (!strcmp(vd->blk[i]->name, device))
			return virtio_blk_resize(vd->blk[i], bytes, err, errlen);
	if (vd && vd->scsi && (!strcmp(device, "cdrom") || !strcmp(device, "cdrom0") || !strcmp(device, vd->scsi->vp.name))) {
		snprintf(err, errlen, "device %s is a CD-ROM: its size is the medium's", device);
		return -EROFS;
	}
	snprintf(err, errlen, "no disk named '%.64s'", device);
	return -ENODEV;
}

struct virtio_scsi *virtio_devices_cdrom(struct virtio_devices *vd)
{
	return vd->scsi;
}

bool virtio_devices_has_disk(struct virtio_devices *vd, const char *name)
{
	for (size_t i = 0; i < vd->nblk; i++)
		if (!strcmp(vd->blk[i]->name, name))
			return true;
	return false;
}

void virtio_devices_reset(struct virtio_devices *vd)
{
	if (!vd)
		return;
	for (size_t i = 0; i < vd->nblk; i++)
		virtio_pci_reset(&vd->blk[i]->vp);
	for (size_t i = 0; i < vd->nnet; i++)
		virtio_pci_reset(&vd->net[i]->vp);
	if (vd->balloon)
		virtio_pci_reset(&vd->balloon->vp);
	if (vd->rng)
		virtio_pci_reset(&vd->rng->vp);
	if (vd->scsi)
		virtio_pci_reset(&vd->scsi->vp);
}

void virtio_devices_set_qmp(struct virtio_devices *vd, struct qmp_server *qmp)
{
	if (vd && vd->balloon)
		virtio_balloon_set_qmp(vd->balloon, qmp);
	if (vd && vd->scsi)
		virtio_scsi_set_qmp(vd->scsi, qmp);
}

int virtio_devices_announce(struct virtio_devices *vd)
{
	int failed = 0;
	for (size_t i = 0; vd && i < vd->nnet; i++)
		failed += virtio_net_announce(vd->net[i]) < 0;
	return failed;
}
