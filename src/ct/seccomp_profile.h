/* The seccomp profile of a container's processes: `--seccomp=off|default|FILE`.
 * A profile is a deny-list (everything else is allowed): each entry answers
 * one system call with an errno. The built-in default is in seccomp_profile.c
 * (and docs/architecture.md); a FILE holds one entry per line:
 *
 *     # comment
 *     @default               include the built-in default profile
 *     keyctl                 deny with EPERM
 *     io_uring_setup ENOSYS  deny with that errno (a name or a number)
 *
 * A FILE's own entries take precedence over those of @default. With any
 * profile, system calls of a foreign ABI (i386, x32) kill the process. */
#ifndef KVZ_CT_SECCOMP_PROFILE_H
#define KVZ_CT_SECCOMP_PROFILE_H

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

enum ct_seccomp_mode { CT_SECCOMP_DEFAULT = 0, CT_SECCOMP_OFF, CT_SECCOMP_FILE };

struct seccomp_deny {
	char name[48];
	int errnum;
};

struct seccomp_profile {
	enum ct_seccomp_mode mode;
	char path[PATH_MAX];       /* FILE: where the entries came from */
	bool with_default;         /* FILE: it has an @default line */
	struct seccomp_deny *deny; /* FILE: its own entries (malloc'd) */
	size_t n_deny;
};

/* "off", "default" or a profile file; the file is read and every name
 * checked now, so that a bad profile is refused before anything starts. */
int seccomp_profile_parse(const char *arg, struct seccomp_profile *p, char *err, size_t len);
void seccomp_profile_free(struct seccomp_profile *p);
/* The profile as recorded in the state file, so that `exec` applies the
 * same entries even if FILE changed since. */
json_t *seccomp_profile_to_json(const struct seccomp_profile *p);
int seccomp_profile_from_json(const json_t *j, struct seccomp_profile *p, char *err, size_t len);
/* Builds the libseccomp filter (a scmp_filter_ctx; NULL for off). Loading
 * it does not set no_new_privs: that is the caller's choice. */
int seccomp_profile_build(const struct seccomp_profile *p, void **filter, char *err, size_t len);

#endif
