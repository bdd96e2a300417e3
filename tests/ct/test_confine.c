/* Confinement building blocks without a container: seccomp profile files
 * (parsing, the state-file form, building the filter), --device parsing, and
 * the cgroup v2 device program, which runs live when this host has a cgroup2
 * mount (hybrid hosts have one without controllers: BPF device programs need
 * none) and the test runs as root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "caps.h"
#include "confine.h"
#include "devices.h"
#include "seccomp_profile.h"

#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/kvz-confine-test.XXXXXX";

static const char *profile(const char *text)
{
	static char path[sizeof(tmpdir) + 16];
	snprintf(path, sizeof(path), "%s/profile", tmpdir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void test_profile_file(void **state)
{
	(void)state;
	struct seccomp_profile p = {0};
	char err[256];
	assert_int_equal(seccomp_profile_parse(profile("# mine\n@default\nkeyctl ENOSYS\n\nbpf 13 # x\n"),
					       &p, err, sizeof(err)), 0);
	assert_int_equal(p.mode, CT_SECCOMP_FILE);
	assert_true(p.with_default);
	assert_int_equal(p.n_deny, 2);
	assert_string_equal(p.deny[0].name, "keyctl");
	assert_int_equal(p.deny[0].errnum, ENOSYS);
	assert_string_equal(p.deny[1].name, "bpf");
	assert_int_equal(p.deny[1].errnum, EACCES);
	void *filter;
	/* keyctl and bpf are in the default too: the file's entries win,
	 * without a clash in libseccomp. */
	assert_int_equal(seccomp_profile_build(&p, &filter, err, sizeof(err)), 0);
	assert_non_null(filter);
	seccomp_release(filter);

	/* The state-file form gives back the same entries. */
	json_t *j = seccomp_profile_to_json(&p);
	struct seccomp_profile q = {0};
	assert_int_equal(seccomp_profile_from_json(j, &q, err, sizeof(err)), 0);
	json_decref(j);
	assert_int_equal(q.mode, CT_SECCOMP_FILE);
	assert_true(q.with_default);
	assert_int_equal(q.n_deny, 2);
	assert_string_equal(q.deny[1].name, "bpf");
	assert_int_equal(q.deny[1].errnum, EACCES);
	seccomp_profile_free(&q);
	seccomp_profile_free(&p);
}

static void expect_bad(const char *text, const char *want)
{
	struct seccomp_profile p = {0};
	char err[512] = "";
	assert_int_equal(seccomp_profile_parse(profile(text), &p, err, sizeof(err)), -1);
	if (!strstr(err, want))
		fail_msg("error '%s' lacks '%s'", err, want);
	assert_null(p.deny);
}

static void test_profile_errors(void **state)
{
	(void)state;
	expect_bad("keyctl\n# c\nno_such_call\n", "line 3: unknown system call 'no_such_call'");
	expect_bad("keyctl EWHAT\n", "line 1: unknown errno 'EWHAT'");
	expect_bad("keyctl EPERM extra\n", "more words");
	expect_bad("keyctl\nkeyctl ENOSYS\n", "listed twice");
	struct seccomp_profile p = {0};
	char err[256];
	assert_int_equal(seccomp_profile_parse("/nonexistent/kvz", &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot read seccomp profile"));
}

static void test_profile_modes(void **state)
{
	(void)state;
	struct seccomp_profile p = {0};
	char err[256];
	void *filter;
	assert_int_equal(seccomp_profile_parse("off", &p, err, sizeof(err)), 0);
	assert_int_equal(seccomp_profile_build(&p, &filter, err, sizeof(err)), 0);
	assert_null(filter);
	assert_int_equal(seccomp_profile_parse("default", &p, err, sizeof(err)), 0);
	assert_int_equal(seccomp_profile_build(&p, &filter, err, sizeof(err)), 0);
	assert_non_null(filter);
	seccomp_release(filter);
	/* A state file from before profiles: the default. */
	json_t *empty = json_object();
	assert_int_equal(seccomp_profile_from_json(empty, &p, err, sizeof(err)), 0);
	assert_int_equal(p.mode, CT_SECCOMP_DEFAULT);
	json_decref(empty);
}

static void test_caps_names_and_state(void **state)
{
	(void)state;
	assert_int_equal(caps_mask_of("sys_admin"), UINT64_C(1) << 21);
	assert_int_equal(caps_mask_of("CAP_NET_RAW"), UINT64_C(1) << 13);
	assert_int_equal(caps_mask_of("checkpoint_restore"), UINT64_C(1) << 40);
	assert_int_equal(caps_mask_of("all"), UINT64_MAX);
	assert_int_equal(caps_mask_of("sys_everything"), 0);
	struct confine_opts c = {.no_new_privs = true, .caps = {.add = 1 << 23, .drop = UINT64_MAX}};
	json_t *j = confine_to_json(&c);
	struct confine_opts d;
	char err[256];
	assert_int_equal(confine_from_json(j, &d, err, sizeof(err)), 0);
	json_decref(j);
	assert_true(d.no_new_privs);
	assert_int_equal(d.caps.add, 1 << 23);
	assert_int_equal(d.caps.drop, UINT64_MAX);
	confine_release(&d);
}

static void test_device_parsing(void **state)
{
	(void)state;
	struct dev_list l = {0};
	char err[256], where[PATH_MAX];
	assert_int_equal(devices_parse("/dev/null", &l, err, sizeof(err)), 0);
	assert_int_equal(devices_parse("/dev/../dev/zero:r", &l, err, sizeof(err)), 0);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.extra[0].type, 'c');
	assert_int_equal(l.extra[0].major, 1);
	assert_int_equal(l.extra[0].minor, 3);
	assert_int_equal(l.extra[0].access, DEV_READ | DEV_WRITE | DEV_MKNOD);
	assert_string_equal(l.extra[1].path, "/dev/zero");
	assert_int_equal(l.extra[1].access, DEV_READ);
	devices_container_path(&l.extra[1], where, sizeof(where));
	assert_string_equal(where, "/dev/zero");
	assert_int_equal(devices_parse("/dev/null:rx", &l, err, sizeof(err)), -1);
	assert_int_equal(devices_parse("/dev/null:", &l, err, sizeof(err)), -1);
	assert_int_equal(devices_parse("/etc/passwd", &l, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a character or block device"));
	assert_int_equal(devices_parse("dev/null", &l, err, sizeof(err)), -1);
	assert_int_equal(l.n, 2);
}

/* ---- the v2 program, live ---- */

static const char *cgroup2_mount(void)
{
	static const char *const where[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
	for (size_t i = 0; i < 2; i++) {
		struct statfs fs;
		if (statfs(where[i], &fs) == 0 && fs.f_type == 0x63677270 /* CGROUP2 */)
			return where[i];
	}
	return NULL;
}

static int try_open(const char *path, int flags)
{
	int fd = open(path, flags | O_NONBLOCK);
	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* In a child moved into the cgroup: what each device access gives. node is
 * a twin of /dev/kmsg (c 1:11) allowed read-only, node.blk a loop device
 * node (b 7:0) made outside. */
static int check_in_cgroup(const char *dir, const char *node)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char path[PATH_MAX], buf[32];
		snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
		snprintf(buf, sizeof(buf), "%d", (int)getpid());
		FILE *f = fopen(path, "w");
		if (!f || fputs(buf, f) < 0 || fclose(f) != 0)
			_exit(10);
		int rc = 0;
		rc |= try_open("/dev/null", O_RDWR) != 0;            /* built-in */
		rc |= (try_open(node, O_RDONLY) != 0) << 1;          /* --device NODE:r */
		rc |= (try_open("/dev/kmsg", O_WRONLY) != EPERM) << 2; /* but not w */
		snprintf(path, sizeof(path), "%s.blk", node);
		rc |= (try_open(path, O_RDONLY) != EPERM) << 3;      /* not listed */
		snprintf(path, sizeof(path), "%s.new", node);
		rc |= (mknod(path, S_IFBLK | 0600, makedev(7, 0)) == 0 || errno != EPERM) << 4;
		_exit(rc);
	}
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static void test_v2_program_live(void **state)
{
	(void)state;
	const char *mnt = cgroup2_mount();
	if (geteuid() != 0 || !mnt || access("/dev/kmsg", F_OK) < 0) {
		fprintf(stderr, "skipped: needs root, a cgroup2 mount and /dev/kmsg\n");
		skip();
	}
	char name[32], node[sizeof(tmpdir) + 16], top[PATH_MAX], dir[PATH_MAX], err[512];
	snprintf(name, sizeof(name), "confine-test-%d", (int)getpid());
	snprintf(node, sizeof(node), "%s/kmsg", tmpdir);
	char blk[sizeof(node) + 8];
	snprintf(blk, sizeof(blk), "%s.blk", node);
	assert_int_equal(mknod(node, S_IFCHR | 0600, makedev(1, 11)), 0);
	assert_int_equal(mknod(blk, S_IFBLK | 0600, makedev(7, 0)), 0);
	snprintf(top, sizeof(top), "%s/kvz", mnt);
	snprintf(dir, sizeof(dir), "%s/%s", top, name);
	mkdir(top, 0755);
	assert_int_equal(mkdir(dir, 0755), 0);
	struct cgroup cg = {.version = 2};
	snprintf(cg.root, sizeof(cg.root), "%s", mnt);
	snprintf(cg.name, sizeof(cg.name), "%s", name);
	struct dev_list l = {0};
	char arg[PATH_MAX];
	snprintf(arg, sizeof(arg), "%s:r", node);
	assert_int_equal(devices_parse(arg, &l, err, sizeof(err)), 0);
	int rc = devices_apply(&cg, &l, err, sizeof(err));
	if (rc < 0)
		fprintf(stderr, "%s\n", err);
	int mask = rc == 0 ? check_in_cgroup(dir, node) : 0;
	/* Cleaned up before any assertion: a failed one does not return. */
	rmdir(dir);
	rmdir(top); /* only if nobody else uses it */
	unlink(node);
	unlink(blk);
	assert_int_equal(rc, 0);
	if (mask)
		fail_msg("device checks in the cgroup failed: mask 0x%x", mask);
}

static int make_tmp(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int drop_tmp(void **state)
{
	(void)state;
	char path[sizeof(tmpdir) + 16];
	snprintf(path, sizeof(path), "%s/profile", tmpdir);
	unlink(path);
	return rmdir(tmpdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_profile_file),
		cmocka_unit_test(test_profile_errors),
		cmocka_unit_test(test_profile_modes),
		cmocka_unit_test(test_caps_names_and_state),
		cmocka_unit_test(test_device_parsing),
		cmocka_unit_test(test_v2_program_live),
	};
	return cmocka_run_group_tests_name("confine", tests, make_tmp, drop_tmp);
}
