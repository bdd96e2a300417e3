/* The virtio devices of one VM: parses the command-line values, creates
 * the devices in a fixed order (disks, nets, balloon, rng: disks get PCI
 * slots, hence guest names vda, vdb..., in command-line order) and tears
 * everything down again when any of them fails. */
#include "virtio_devices.h"

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

/* "PATH[,readonly]": PATH is everything before the first comma. */
static int parse_disk(const char *spec, char *path, size_t pathlen, bool *readonly,
		      char *err, size_t errlen)
{
	const char *comma = strchr(spec, ',');
	size_t n = comma ? (size_t)(comma - spec) : strlen(spec);

	*readonly = false;
	if (n == 0 || n >= pathlen) {
		snprintf(err, errlen, "--disk %s: expected PATH[,readonly]", spec);
		return -1;
	}
	memcpy(path, spec, n);
	path[n] = '\0';
	while (comma) {
		const char *opt = comma + 1;
		comma = strchr(opt, ',');
		size_t len = comma ? (size_t)(comma - opt) : strlen(opt);
		if ((len == 8 && !strncmp(opt, "readonly", 8)) ||
		    (len == 11 && !strncmp(opt, "readonly=on", 11))) {
			*readonly = true;
			continue;
		}
		snprintf(err, errlen, "--disk %s: unknown option '%.*s' (expected readonly)",
			 spec, (int)len, opt);
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
		char path[4096];
		bool ro;
		if (parse_disk(o->disks[i], path, sizeof(path), &ro, err, errlen) < 0)
			return -1;
		vd->blk[i] = virtio_blk_create(&vd->ctx, path, ro, i, err, errlen);
		if (!vd->blk[i])
			return -1;
		vd->nblk++;
	}
	return 0;
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
}

int virtio_devices_announce(struct virtio_devices *vd)
{
	int failed = 0;
	for (size_t i = 0; vd && i < vd->nnet; i++)
		failed += virtio_net_announce(vd->net[i]) < 0;
	return failed;
}
