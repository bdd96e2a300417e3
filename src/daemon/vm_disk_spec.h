/* One VM disk as a client gives it at create ("disks", the flat disk_*
 * keys of disk 0) or at PATCH ("add_disk"): size, format, mode, base, all
 * checked before any file is made (vm_disks.h makes them). */
#ifndef KVZD_VM_DISK_SPEC_H
#define KVZD_VM_DISK_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "guest_config.h"

struct image_dirs;

/* kvz-vmm's migration stream copies at most 8 disks; kvzd keeps to that. */
#define VM_DISKS_MAX 8

/* The key names of one disk's fields in messages: the flat disk_* keys of
 * disk 0 or a "disks" entry's own. */
struct vm_disk_keys {
	const char *format, *mode, *base;
};
extern const struct vm_disk_keys vm_disk0_keys;

/* fmt (NULL: qcow2 over a base, else raw), mode (NULL: sparse) and base
 * (NULL: none; else resolved beneath the image directories into base_out)
 * checked together; *fmt and *mode set to what applies. 400 in e. */
int vm_disk_kind(const struct image_dirs *dirs, const struct vm_disk_keys *k,
		 const char **fmt, const char **mode, const char *base,
		 char *base_out, size_t outlen, struct op_error *e);

/* One disk a client asked for: a size ("4G", bytes) or {size, format,
 * mode, base}. *out is a new {size, format, mode[, base]}; what names it
 * in messages ("disks[2]"). 400 in e. */
int vm_disk_parse(const struct image_dirs *dirs, const char *what, json_t *spec,
		  json_t **out, struct op_error *e);

/* file is the name of guest name's disk 1.. as kvzd makes it, NAME@N.img
 * (N 1..999 without a leading zero): what a migration peer's path of a
 * disk is cut down to before it is joined to this host's image dir. */
bool vm_disk_extra_name_valid(const char *file, const char *name);

#endif
