/* A VM's disks (issue 13): an ordered list in its stored configuration,
 * cfg "disks", each {path, size, format, mode, base}. Disk 0 is also kept
 * in the flat keys disk_path, disk_size, disk_format, disk_mode and
 * disk_base that older clients, migration peers and most of kvzd read;
 * the store rewrites disks[0] from them on every write (store.c), so they
 * never disagree. Disks 1.. live only in the list, as files
 * STATE/images/NAME@N.img ('@' is not allowed in guest names, so no
 * guest's disk 0 can take that name), and reach kvz-vmm as further --disk
 * options (vdb, vdc, ...). Adding and removing one is for a stopped VM
 * only: live hotplug is not supported. */
#ifndef KVZD_VM_DISKS_H
#define KVZD_VM_DISKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "guest_config.h"
#include "vm_disk_spec.h"

struct argv;
struct kvzd;

/* How many disks cfg holds, disk 0 included (0 for none). */
size_t vm_disks_count(json_t *cfg);
/* Disk i's path, size, format (0: the flat keys); false when there is no
 * such disk. path may be NULL for a disk not made yet. */
bool vm_disk_at(json_t *cfg, size_t i, const char **path, uint64_t *size, bool *qcow2);
/* Sets disk i's size in cfg. */
void vm_disk_set_size(json_t *cfg, size_t i, uint64_t size);

/* Makes the image of one disk at path (refusing an existing file); *size
 * is updated to the image's size (a qcow2 over a base without one takes
 * the base's). */
int vm_disk_make(struct kvzd *d, const char *path, uint64_t *size, bool qcow2, bool fixed,
		 const char *base, struct op_error *e);
/* Makes disks[from..] of guest name that have no path yet, recording each
 * path; on failure the ones made here are removed again. */
int vm_disks_make_extra(struct kvzd *d, const char *name, json_t *cfg, size_t from,
			struct op_error *e);
/* Removes the files of disks[from..] (missing ones are no error). */
int vm_disks_remove_extra(json_t *cfg, size_t from, struct op_error *e);
/* Sum of the sizes of disks[1..]. */
uint64_t vm_disks_extra_bytes(json_t *cfg);
/* --disk PATH[,format=qcow2] for each of disks[1..]. */
void vm_disks_argv(json_t *cfg, struct argv *a);
/* PATCH's "add_disk" (a disk as vm_disk_parse takes it) or "remove_disk"
 * (N >= 1) on guest g, a stopped VM, into cfg (the caller stores it),
 * files made or removed; a VM without a disk gets its disk 0. One line for
 * the event in detail. The caller holds d->disk_lock until cfg is stored.
 * 400 bad request, 409 running or no such disk or no space. */
int vm_disks_change(struct kvzd *d, json_t *g, json_t *req, json_t *cfg, char *detail,
		    size_t len, struct op_error *e);

#endif
