/* Confinement before exec (see confine.h). */
#include "confine.h"

#include <errno.h>
#include <inttypes.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

int confine_prepare(struct confine_opts *c, char *err, size_t len)
{
	return seccomp_profile_build(&c->seccomp, &c->filter, err, len);
}

int confine_apply(const struct confine_opts *c, char *err, size_t len)
{
	if (caps_confine(&c->caps, err, len) < 0)
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
	/* Masks as hex strings: "all" is every bit, beyond a JSON integer. */
	char add[24], drop[24];
	snprintf(add, sizeof(add), "%#" PRIx64, c->caps.add);
	snprintf(drop, sizeof(drop), "%#" PRIx64, c->caps.drop);
	return json_pack("{s:o,s:b,s:s,s:s}", "seccomp", seccomp_profile_to_json(&c->seccomp),
			 "no-new-privs", c->no_new_privs, "cap-add", add, "cap-drop", drop);
}

static uint64_t mask_from_json(const json_t *v)
{
	const char *s = json_string_value(v);
	return s ? strtoull(s, NULL, 16) : 0;
}

int confine_from_json(const json_t *j, struct confine_opts *c, char *err, size_t len)
{
	memset(c, 0, sizeof(*c));
	c->no_new_privs = json_is_true(json_object_get(j, "no-new-privs"));
	c->caps.add = mask_from_json(json_object_get(j, "cap-add"));
	c->caps.drop = mask_from_json(json_object_get(j, "cap-drop"));
	return seccomp_profile_from_json(json_object_get(j, "seccomp"), &c->seccomp, err, len);
}
