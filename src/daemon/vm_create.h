/* VMs with a system of their own (issue 14): created from a template
 * (`kvz-ct vm-image`, the container templates' cache) or by importing a
 * raw disk image (copied: the original stays the user's), as a job
 * "vm-create" with progress and cancel, then booted directly with the
 * kernel inside the disk (boot_image.h) or, with boot "firmware", by
 * kvz-vmm's firmware. */
#ifndef KVZD_VM_CREATE_H
#define KVZD_VM_CREATE_H

#include <jansson.h>

#include "guest_ops.h"
#include "jobs.h"
#include "kvzd.h"

extern const struct job_kind vm_create_job;

/* Does cfg (as guest_config_vm made it) come from a template or an
 * import, so that its disk is made by the job? */
bool vm_create_is_job(json_t *cfg);

/* With the guest's lock held and its record inserted as "creating":
 * keeps the request's credentials (ssh_key, root_password) in private
 * files for the job only, never in the store, and submits the job. Its
 * record (new reference), or NULL with e; then the caller removes the
 * record. */
json_t *vm_create_submit(struct kvzd *d, const char *name, json_t *req, struct op_error *e);

/* Files of a VM beside its disk: the credentials a create job had not yet
 * used and the kernel taken out of its disk. */
void vm_create_remove_files(struct kvzd *d, const char *name);

/* Before a start: the kernel, initrd and root= from the VM's disk into
 * STATE/boot/NAME/, recorded in cfg as boot_kernel, boot_initrd,
 * boot_root (not stored). Nothing to do for a VM that names its kernel
 * or boots its firmware. */
int vm_boot_prepare(struct kvzd *d, const char *name, json_t *cfg, struct op_error *e);

#endif
