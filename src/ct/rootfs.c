#include "rootfs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int fail(char *err, size_t len, const char *what, const char *path)
{
	snprintf(err, len, "%s %s: %s", what, path, strerror(errno));
	return -1;
}

static int mount_at(const char *target, const char *sub, const char *src, const char *fstype,
		    unsigned long flags, const char *data, char *err, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s%s", target, sub);
	struct stat st;
	if (stat(path, &st) < 0 && mkdir(path, 0755) < 0)
		return fail(err, len, "cannot create", path);
	if (mount(src, path, fstype, flags, data) < 0)
		return fail(err, len, "cannot mount", path);
	return 0;
}

/* Bind mounts need an existing file to cover. */
static int bind_file(const char *src, const char *dst, char *err, size_t len)
{
	int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(err, len, "cannot create", dst);
	close(fd);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
		return fail(err, len, "cannot bind-mount onto", dst);
	return 0;
}

/* --device nodes, at their host path under /dev (or /dev/BASENAME). */
static int bind_devices(const char *target, const struct dev_list *devs, char *err, size_t len)
{
	for (size_t i = 0; i < devs->n; i++) {
		char rel[PATH_MAX], dst[PATH_MAX];
		devices_container_path(&devs->extra[i], rel, sizeof(rel));
		snprintf(dst, sizeof(dst), "%s%s", target, rel);
		/* rel is /dev/...: make the folders below /dev (net for net/tun). */
		for (char *s = strchr(dst + strlen(target) + 5, '/'); s; s = strchr(s + 1, '/')) {
			*s = 0;
			int rc = mkdir(dst, 0755);
			*s = '/';
			if (rc < 0 && errno != EEXIST)
				return fail(err, len, "cannot create", dst);
		}
		if (bind_file(devs->extra[i].path, dst, err, len) < 0)
			return -1;
	}
	return 0;
}

static int make_dev(const char *target, const char *console, const struct dev_list *devs,
		    char *err, size_t len)
{
	static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
	if (mount_at(target, "/dev", "tmpfs", "tmpfs", MS_NOSUID | MS_NOEXEC,
		     "mode=755,size=1024k", err, len) < 0)
		return -1;
	char src[PATH_MAX], dst[PATH_MAX];
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		snprintf(src, sizeof(src), "/dev/%s", nodes[i]);
		snprintf(dst, sizeof(dst), "%s/dev/%s", target, nodes[i]);
		if (bind_file(src, dst, err, len) < 0)
			return -1;
	}
	if (bind_devices(target, devs, err, len) < 0)
		return -1;
	if (console) {
		snprintf(dst, sizeof(dst), "%s/dev/console", target);
		if (bind_file(console, dst, err, len) < 0)
			return -1;
	}
	if (mount_at(target, "/dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC,
		     "newinstance,ptmxmode=0666,mode=0620", err, len) < 0 ||
	    mount_at(target, "/dev/shm", "tmpfs", "tmpfs", MS_NOSUID | MS_NODEV,
		     "mode=1777", err, len) < 0)
		return -1;
	static const struct { const char *link, *to; } links[] = {
		{"ptmx", "pts/ptmx"}, {"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"},
	};
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		snprintf(dst, sizeof(dst), "%s/dev/%s", target, links[i].link);
		if (symlink(links[i].to, dst) < 0)
			return fail(err, len, "cannot create", dst);
	}
	return 0;
}

/* Mounts a recursive clone of the working directory's mount onto it and
 * enters the clone: by descriptors, with no path walked. */
static int rebind_cwd(char *err, size_t len)
{
	int tree = open_tree(AT_FDCWD, ".", OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC);
	if (tree < 0)
		return fail(err, len, "cannot clone the mount of", "the root filesystem");
	int rc = 0;
	if (move_mount(tree, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH) < 0)
		rc = fail(err, len, "cannot mount again", "the root filesystem");
	else if (fchdir(tree) < 0)
		rc = fail(err, len, "cannot enter", "the root filesystem");
	close(tree);
	return rc;
}

int rootfs_enter(const char *console, const struct dev_list *devs, char *err, size_t len)
{
	const char *target = ".";
	/* The working directory is the supervisor's mount of the root, as a
	 * copy which a user namespace locks (and pivot_root refuses to move a
	 * locked mount): clone it again, recursively, onto itself. Only the
	 * top of the clone is unlocked: /proc, /sys and their masks below stay
	 * locked. */
	if (rebind_cwd(err, len) < 0)
		return -1;
	/* /proc and /sys came with the copy (the supervisor made them,
	 * kernfs.c); /dev is ours, with nothing of the host's behind it. */
	if (make_dev(target, console, devs, err, len) < 0)
		return -1;
	/* pivot_root(".", ".") stacks the old root under the new one; the
	 * detached unmount then drops the host's whole tree from view. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return fail(err, len, "cannot pivot_root into", "the root filesystem");
	if (umount2(".", MNT_DETACH) < 0)
		return fail(err, len, "cannot detach the old root from", "the container");
	if (chdir("/") < 0)
		return fail(err, len, "cannot enter", "/");
	return 0;
}
