/* Confinement of a container's processes, the last step before each exec
 * (the container's init and every `kvz-ct exec` command): the capability
 * bounding set (caps.h), no_new_privs when asked, and the seccomp profile
 * (seccomp_profile.h). The device allow-list is the cgroup's (devices.h). */
#ifndef KVZ_CT_CONFINE_H
#define KVZ_CT_CONFINE_H

#include "caps.h"
#include "seccomp_profile.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct confine_opts {
	struct seccomp_profile seccomp;
	bool no_new_privs;
	struct caps_change caps;
	void *filter; /* compiled by confine_prepare; NULL: no seccomp */
};

/* Compiles the seccomp filter once, in the parent, before any fork: every
 * process that applies it gets a copy. */
int confine_prepare(struct confine_opts *c, char *err, size_t len);
/* Drops capabilities, sets no_new_privs if asked, loads the filter. Call
 * just before execve: after it, set-up calls such as mount may fail. */
int confine_apply(const struct confine_opts *c, char *err, size_t len);
void confine_release(struct confine_opts *c);
/* For the state file (NAME.json "confine"), so that exec confines alike. */
json_t *confine_to_json(const struct confine_opts *c);
int confine_from_json(const json_t *j, struct confine_opts *c, char *err, size_t len);

#endif
