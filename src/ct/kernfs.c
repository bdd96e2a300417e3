#include "kernfs.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOSUID_NODEV_NOEXEC (MS_NOSUID | MS_NODEV | MS_NOEXEC)

/* As runc's readonlyPaths; /proc/sys/net is made writable again below:
 * the container's init configures its own network namespace there. */
static const char *const proc_readonly[] = {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq",
					    "/proc/bus", "/proc/fs"};
/* As runc's maskedPaths, plus the kernel's log and symbol table. */
static const char *const masked[] = {
	"/proc/acpi",	  "/proc/asound",	 "/proc/kcore",	      "/proc/keys",
	"/proc/kmsg",	  "/proc/kallsyms",	 "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",	      "/sys/firmware",
	"/sys/devices/virtual/powercap",
};

static int fail(char *err, size_t len, const char *what, const char *path)
{
	snprintf(err, len, "cannot %s %s: %s", what, path, strerror(errno));
	return -1;
}

/* A bind of path onto itself, then read-only. A bind keeps the flags of
 * what it copies; the remount states them all. */
static int bind_flags(const char *path, unsigned long flags, char *err, size_t len)
{
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
		return fail(err, len, "bind-mount", path);
	if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | NOSUID_NODEV_NOEXEC | flags, NULL) < 0)
		return fail(err, len, "remount", path);
	return 0;
}

static bool absent(const char *path)
{
	struct stat st;
	return lstat(path, &st) < 0 && errno == ENOENT;
}

/* A directory disappears under an empty read-only tmpfs, a file under
 * /dev/null; what this kernel does not have needs no mask. */
static int mask(const char *path, char *err, size_t len)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : fail(err, len, "inspect", path);
	int rc = S_ISDIR(st.st_mode)
			 ? mount("kvz-mask", path, "tmpfs", MS_RDONLY | NOSUID_NODEV_NOEXEC,
				 "size=0,mode=555")
			 : mount("/dev/null", path, NULL, MS_BIND, NULL);
	return rc < 0 ? fail(err, len, "mask", path) : 0;
}

static int mount_proc(const char *target, char *err, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/proc", target);
	if (mount("proc", path, "proc", NOSUID_NODEV_NOEXEC, NULL) < 0)
		return fail(err, len, "mount", path);
	for (size_t i = 0; i < sizeof(proc_readonly) / sizeof(proc_readonly[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", target, proc_readonly[i]);
		if (!absent(path) && bind_flags(path, MS_RDONLY, err, len) < 0)
			return -1;
	}
	snprintf(path, sizeof(path), "%s/proc/sys/net", target);
	return absent(path) ? 0 : bind_flags(path, 0, err, len);
}

/* v1 (and hybrid): a tmpfs with one directory per hierarchy, each a
 * read-only bind of the container's cgroup there, as LXC does. */
static int cgroup_view_v1(const char *dir, json_t *paths, const struct cgroup *cg,
			  char *err, size_t len)
{
	if (mount("kvz-cgroup", dir, "tmpfs", NOSUID_NODEV_NOEXEC, "size=64k,mode=755") < 0)
		return fail(err, len, "mount a tmpfs on", dir);
	size_t i;
	json_t *p;
	size_t skip = strlen(cg->root) + 1;
	json_array_foreach(paths, i, p) {
		const char *src = json_string_value(p);
		char hier[64], dst[PATH_MAX];
		snprintf(hier, sizeof(hier), "%.*s", (int)strcspn(src + skip, "/"), src + skip);
		snprintf(dst, sizeof(dst), "%s/%s", dir, hier);
		if (mkdir(dst, 0755) < 0)
			return fail(err, len, "create", dst);
		if (mount(src, dst, NULL, MS_BIND, NULL) < 0 ||
		    mount(NULL, dst, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | NOSUID_NODEV_NOEXEC,
			  NULL) < 0)
			return fail(err, len, "bind-mount read-only", dst);
	}
	if (mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | NOSUID_NODEV_NOEXEC, NULL) < 0)
		return fail(err, len, "remount read-only", dir);
	return 0;
}

/* v2: the container's cgroup directory itself, as a cgroup2 mount made
 * inside its cgroup namespace would show it. */
static int cgroup_view_v2(const char *dir, json_t *paths, char *err, size_t len)
{
	const char *src = json_string_value(json_array_get(paths, 0));
	if (mount(src, dir, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | NOSUID_NODEV_NOEXEC, NULL) < 0)
		return fail(err, len, "bind-mount read-only", dir);
	return 0;
}

static int mount_sys(const char *target, const struct cgroup *cg, char *err, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/sys", target);
	if (mount("sysfs", path, "sysfs", MS_RDONLY | NOSUID_NODEV_NOEXEC, NULL) < 0)
		return fail(err, len, "mount", path);
	snprintf(path, sizeof(path), "%s/sys/fs/cgroup", target);
	if (absent(path))
		return 0; /* a kernel without cgroups */
	json_t *paths = cgroup_paths(cg);
	int rc = cg->version == 2 ? cgroup_view_v2(path, paths, err, len)
				  : cgroup_view_v1(path, paths, cg, err, len);
	json_decref(paths);
	return rc;
}

static int mount_all(const char *target, const struct cgroup *cg, char *err, size_t len)
{
	if (mount_proc(target, err, len) < 0 || mount_sys(target, cg, err, len) < 0)
		return -1;
	char path[PATH_MAX];
	for (size_t i = 0; i < sizeof(masked) / sizeof(masked[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", target, masked[i]);
		if (mask(path, err, len) < 0)
			return -1;
	}
	return 0;
}

static int join_ns(pid_t init, const char *ns, int type, char *err, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)init, ns);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(err, len, "open", path);
	int rc = setns(fd, type);
	close(fd);
	return rc < 0 ? fail(err, len, "enter", path) : 0;
}

/* Runs in a child of the supervisor (its mount namespace, host root). proc
 * shows the pid namespace of the process that mounts it, so the mounting
 * is done by a grandchild born in the container's pid namespace; sysfs
 * shows the net namespace of its mounter. */
static int helper(const char *target, pid_t init, const struct cgroup *cg, int err_fd)
{
	char err[512] = "";
	if (join_ns(init, "net", CLONE_NEWNET, err, sizeof(err)) < 0 ||
	    join_ns(init, "pid", CLONE_NEWPID, err, sizeof(err)) < 0) {
		dprintf(err_fd, "%s", err);
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		dprintf(err_fd, "fork: %s", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		if (mount_all(target, cg, err, sizeof(err)) < 0) {
			dprintf(err_fd, "%s", err);
			_exit(1);
		}
		_exit(0);
	}
	return wait_exit_code(pid) == 0 ? 0 : 1;
}

struct mount_args {
	const char *target;
	pid_t init;
	const struct cgroup *cg;
};

static int run_helper(void *arg, int err_fd)
{
	const struct mount_args *a = arg;
	return helper(a->target, a->init, a->cg, err_fd);
}

int kernfs_mount(const char *target, pid_t init, const struct cgroup *cg, char *err, size_t len)
{
	struct mount_args a = {.target = target, .init = init, .cg = cg};
	char msg[512];
	if (run_in_child(run_helper, &a, msg, sizeof(msg)) == 0)
		return 0;
	snprintf(err, len, "cannot set up the container's /proc and /sys: %s",
		 msg[0] ? msg : "the helper died");
	return -1;
}
