/* The container seccomp profile (see seccomp_profile.h): parsing, the state
 * file form, and the libseccomp filter. */
#include "seccomp_profile.h"

#include <errno.h>
#include <linux/personality.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Denied by the default profile. EPERM where the kernel would refuse a
 * container anyway or where the call reaches host-wide state; ENOSYS where
 * callers fall back to an older call when the new one is missing: clone3
 * (whose flags a filter cannot read) to clone, the new mount API (fsconfig
 * was CVE-2022-0185) to mount(2), io_uring (a large attack surface) to
 * epoll and plain read/write. */
static const struct seccomp_deny default_deny[] = {
	{"kexec_load", EPERM}, {"kexec_file_load", EPERM},
	{"init_module", EPERM}, {"finit_module", EPERM}, {"delete_module", EPERM},
	{"open_by_handle_at", EPERM},
	{"bpf", EPERM}, {"perf_event_open", EPERM},
	{"keyctl", EPERM}, {"add_key", EPERM}, {"request_key", EPERM},
	{"userfaultfd", EPERM},
	{"acct", EPERM}, {"swapon", EPERM}, {"swapoff", EPERM}, {"syslog", EPERM},
	{"settimeofday", EPERM}, {"clock_settime", EPERM}, {"clock_adjtime", EPERM},
	{"adjtimex", EPERM},
	{"iopl", EPERM}, {"ioperm", EPERM}, {"lookup_dcookie", EPERM},
	{"quotactl", EPERM}, {"quotactl_fd", EPERM},
	{"clone3", ENOSYS},
	{"fsopen", ENOSYS}, {"fsconfig", ENOSYS}, {"fsmount", ENOSYS}, {"fspick", ENOSYS},
	{"open_tree", ENOSYS}, {"move_mount", ENOSYS}, {"mount_setattr", ENOSYS},
	{"io_uring_setup", ENOSYS}, {"io_uring_enter", ENOSYS}, {"io_uring_register", ENOSYS},
};

/* Personality flags that weaken the process's memory protection: a mapped
 * page zero (kernel NULL dereferences become exploitable) and executable
 * data. Bit 31 is set only in the query value 0xffffffff, which stays
 * allowed: the rule matches when a flag is set and bit 31 is clear. */
static const unsigned long unsafe_personality[] = {MMAP_PAGE_ZERO, READ_IMPLIES_EXEC};
#define PERSONALITY_QUERY_BIT 0x80000000UL

#define N_DEFAULT (sizeof(default_deny) / sizeof(default_deny[0]))

static bool valid_name(const char *name)
{
	return seccomp_syscall_resolve_name(name) != __NR_SCMP_ERROR;
}

/* "EPERM", "ENOSYS", ... or a number. */
static int parse_errno(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s && !*end)
		return v > 0 && v < 4096 ? (int)v : -1;
	for (int e = 1; e < 4096; e++) {
		const char *n = strerrorname_np(e);
		if (n && !strcmp(n, s))
			return e;
	}
	return -1;
}

static bool listed(const struct seccomp_profile *p, const char *name)
{
	for (size_t i = 0; i < p->n_deny; i++)
		if (!strcmp(p->deny[i].name, name))
			return true;
	return false;
}

static int add_entry(struct seccomp_profile *p, const char *name, int errnum, char *err, size_t len)
{
	if (strlen(name) >= sizeof(p->deny[0].name) || !valid_name(name)) {
		snprintf(err, len, "unknown system call '%s'", name);
		return -1;
	}
	if (listed(p, name)) {
		snprintf(err, len, "system call '%s' is listed twice", name);
		return -1;
	}
	struct seccomp_deny *d = realloc(p->deny, (p->n_deny + 1) * sizeof(*d));
	if (!d) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	p->deny = d;
	snprintf(d[p->n_deny].name, sizeof(d[0].name), "%s", name);
	d[p->n_deny++].errnum = errnum;
	return 0;
}

/* One line of a profile file: blank, comment, @default or "name [errno]". */
static int parse_line(struct seccomp_profile *p, char *line, char *err, size_t len)
{
	char *hash = strchr(line, '#');
	if (hash)
		*hash = 0;
	char *save, *name = strtok_r(line, " \t\r\n", &save);
	if (!name)
		return 0;
	char *eno = strtok_r(NULL, " \t\r\n", &save);
	if (strtok_r(NULL, " \t\r\n", &save)) {
		snprintf(err, len, "want 'SYSCALL [ERRNO]', got more words");
		return -1;
	}
	if (!strcmp(name, "@default")) {
		p->with_default = true;
		return 0;
	}
	int errnum = eno ? parse_errno(eno) : EPERM;
	if (errnum < 0) {
		snprintf(err, len, "unknown errno '%s'", eno);
		return -1;
	}
	return add_entry(p, name, errnum, err, len);
}

static int parse_file(const char *path, struct seccomp_profile *p, char *err, size_t len)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, len, "cannot read seccomp profile %s: %s", path, strerror(errno));
		return -1;
	}
	char line[512], why[256];
	int rc = 0;
	for (unsigned no = 1; rc == 0 && fgets(line, sizeof(line), f); no++)
		if (parse_line(p, line, why, sizeof(why)) < 0) {
			snprintf(err, len, "seccomp profile %s line %u: %s", path, no, why);
			rc = -1;
		}
	fclose(f);
	return rc;
}

int seccomp_profile_parse(const char *arg, struct seccomp_profile *p, char *err, size_t len)
{
	seccomp_profile_free(p);
	if (!strcmp(arg, "default"))
		return 0;
	if (!strcmp(arg, "off")) {
		p->mode = CT_SECCOMP_OFF;
		return 0;
	}
	p->mode = CT_SECCOMP_FILE;
	if (!realpath(arg, p->path))
		snprintf(p->path, sizeof(p->path), "%s", arg);
	if (parse_file(arg, p, err, len) < 0) {
		seccomp_profile_free(p);
		return -1;
	}
	return 0;
}

void seccomp_profile_free(struct seccomp_profile *p)
{
	free(p->deny);
	memset(p, 0, sizeof(*p));
}

static const char *const mode_names[] = {"default", "off", "file"};

json_t *seccomp_profile_to_json(const struct seccomp_profile *p)
{
	json_t *j = json_pack("{s:s}", "mode", mode_names[p->mode]);
	if (p->mode != CT_SECCOMP_FILE)
		return j;
	json_t *deny = json_array();
	for (size_t i = 0; i < p->n_deny; i++)
		json_array_append_new(deny, json_pack("[s,i]", p->deny[i].name, p->deny[i].errnum));
	json_object_set_new(j, "path", json_string(p->path));
	json_object_set_new(j, "default", json_boolean(p->with_default));
	json_object_set_new(j, "deny", deny);
	return j;
}

static int deny_from_json(const json_t *deny, struct seccomp_profile *p, char *err, size_t len)
{
	size_t i;
	const json_t *e;
	json_array_foreach(deny, i, e) {
		const char *name = json_string_value(json_array_get(e, 0));
		json_int_t errnum = json_integer_value(json_array_get(e, 1));
		if (!name || errnum <= 0 || errnum >= 4096) {
			snprintf(err, len, "bad seccomp entry %zu in the state file", i);
			return -1;
		}
		if (add_entry(p, name, (int)errnum, err, len) < 0)
			return -1;
	}
	return 0;
}

int seccomp_profile_from_json(const json_t *j, struct seccomp_profile *p, char *err, size_t len)
{
	seccomp_profile_free(p);
	/* A state file written before profiles existed: the default. */
	const char *mode = json_string_value(json_object_get(j, "mode"));
	if (!mode || !strcmp(mode, "default"))
		return 0;
	if (!strcmp(mode, "off")) {
		p->mode = CT_SECCOMP_OFF;
		return 0;
	}
	if (strcmp(mode, "file")) {
		snprintf(err, len, "unknown seccomp mode '%s' in the state file", mode);
		return -1;
	}
	p->mode = CT_SECCOMP_FILE;
	snprintf(p->path, sizeof(p->path), "%s", json_string_value(json_object_get(j, "path")) ?: "");
	p->with_default = json_is_true(json_object_get(j, "default"));
	if (deny_from_json(json_object_get(j, "deny"), p, err, len) < 0) {
		seccomp_profile_free(p);
		return -1;
	}
	return 0;
}

static int rule_fail(const char *name, int rc, char *err, size_t len)
{
	snprintf(err, len, "cannot add seccomp rule for %s: %s", name, strerror(-rc));
	return -1;
}

static int deny(scmp_filter_ctx ctx, const char *name, int errnum, char *err, size_t len)
{
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((unsigned)errnum),
				  seccomp_syscall_resolve_name(name), 0);
	return rc < 0 ? rule_fail(name, rc, err, len) : 0;
}

/* The default's rules on arguments: new user namespaces (nested user
 * namespaces would give every user in the container root-like powers over
 * fresh namespaces, the way into most namespace exploits), and unsafe
 * personality flags. */
static int add_default_arg_rules(scmp_filter_ctx ctx, const struct seccomp_profile *p,
				 char *err, size_t len)
{
	static const char *const ns_calls[] = {"clone", "unshare"};
	for (size_t i = 0; i < 2; i++) {
		if (listed(p, ns_calls[i]))
			continue;
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), seccomp_syscall_resolve_name(ns_calls[i]),
					  1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER));
		if (rc < 0)
			return rule_fail(ns_calls[i], rc, err, len);
	}
	if (listed(p, "personality"))
		return 0;
	for (size_t i = 0; i < 2; i++) {
		unsigned long flag = unsafe_personality[i];
		int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
					  SCMP_A0(SCMP_CMP_MASKED_EQ, flag | PERSONALITY_QUERY_BIT, flag));
		if (rc < 0)
			return rule_fail("personality", rc, err, len);
	}
	return 0;
}

static int add_rules(scmp_filter_ctx ctx, const struct seccomp_profile *p, char *err, size_t len)
{
	if (p->mode == CT_SECCOMP_DEFAULT || p->with_default) {
		for (size_t i = 0; i < N_DEFAULT; i++)
			if (!listed(p, default_deny[i].name) &&
			    deny(ctx, default_deny[i].name, default_deny[i].errnum, err, len) < 0)
				return -1;
		if (add_default_arg_rules(ctx, p, err, len) < 0)
			return -1;
	}
	for (size_t i = 0; i < p->n_deny; i++)
		if (deny(ctx, p->deny[i].name, p->deny[i].errnum, err, len) < 0)
			return -1;
	return 0;
}

int seccomp_profile_build(const struct seccomp_profile *p, void **filter, char *err, size_t len)
{
	*filter = NULL;
	if (p->mode == CT_SECCOMP_OFF)
		return 0;
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx) {
		snprintf(err, len, "cannot create the seccomp filter");
		return -1;
	}
	/* Only the native ABI is in the filter; i386 (int 0x80) and x32 calls
	 * take the bad-architecture action: their compat paths are a separate
	 * attack surface, and no container of ours is built for them. */
	int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
	if (rc == 0)
		rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (rc < 0) {
		snprintf(err, len, "cannot set up the seccomp filter: %s", strerror(-rc));
		seccomp_release(ctx);
		return -1;
	}
	if (add_rules(ctx, p, err, len) < 0) {
		seccomp_release(ctx);
		return -1;
	}
	*filter = ctx;
	return 0;
}
