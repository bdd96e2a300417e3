/* Confinement before exec (see confine.h). */
#include "confine.h"

#include "caps.h"

#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

int confine_prepare(struct confine_opts *c, char *err, size_t len)
{
	return seccomp_profile_build(&c->seccomp, &c->filter, err, len);
}

int confine_apply(const struct confine_opts *c, char *err, size_t len)
{
	if (caps_confine(err, len) < 0)
		return -1;
	if (c->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, len, "cannot set no_new_privs: %s", strerror(errno));
		return -1;
	}
	if (!c->filter)
		return 0;
	/* Without no_new_privs the kernel wants CAP_SYS_ADMIN here, which
	 * container root still has in its effective set. */
	int rc = seccomp_load(c->filter);
	if (rc < 0) {
		snprintf(err, len, "cannot load the seccomp filter: %s", strerror(-rc));
		return -1;
	}
	return 0;
}

void confine_release(struct confine_opts *c)
{
	if (c->filter)
		seccomp_release(c->filter);
	c->filter = NULL;
	seccomp_profile_free(&c->seccomp);
}

json_t *confine_to_json(const struct confine_opts *c)
{
	return json_pack("{s:o,s:b}", "seccomp", seccomp_profile_to_json(&c->seccomp),
			 "no-new-privs", c->no_new_privs);
}

int confine_from_json(const json_t *j, struct confine_opts *c, char *err, size_t len)
{
	memset(c, 0, sizeof(*c));
	c->no_new_privs = json_is_true(json_object_get(j, "no-new-privs"));
	return seccomp_profile_from_json(json_object_get(j, "seccomp"), &c->seccomp, err, len);
}
