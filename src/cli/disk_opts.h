/* A VM's disks on the command line (disk_opts.c). */
#ifndef KVZ_CLI_DISK_OPTS_H
#define KVZ_CLI_DISK_OPTS_H

#include <jansson.h>

/* "SIZE[,format=F][,mode=M][,base=PATH]" into a new {size, ...} object
 * (base made absolute); one error line naming opt and -1 when bad. */
int disk_spec_parse(const char *opt, const char *s, json_t **out);
/* The create request's disks from every --disk in specs: one plain SIZE
 * stays "disk" (with --disk-format, --disk-mode, --disk-base beside it);
 * otherwise "disks", those flags folded into disk 0. */
int disks_finish(json_t *req, json_t *specs);
/* `kvz set --disk [N:]SIZE` into "disk" and "disk_index". */
int disk_grow_arg(json_t *req, const char *s);

#endif
