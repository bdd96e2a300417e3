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

int rootfs_enter(const char *root, const char *console, const struct dev_list *devs,
		 char *err, size_t len)
{
	/* A directory fd from the supervisor would not do: it belongs to the
	 * supervisor's mount namespace, and mounts must happen in ours. */
	const char *target = ".";
	/* The supervisor's mount of the root arrives here as a copy, which a
	 * user namespace locks (and pivot_root refuses to move a locked mount):
	 * bind it again from inside our own mount namespace. */
	if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) < 0)
		return fail(err, len, "cannot bind-mount", root);
	if (chdir(root) < 0)
		return fail(err, len, "cannot enter", root);
	if (mount_at(target, "/proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		     NULL, err, len) < 0 ||
	    mount_at(target, "/sys", "sysfs", "sysfs",
		     MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, err, len) < 0 ||
	    make_dev(target, console, devs, err, len) < 0)
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
