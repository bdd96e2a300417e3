#include "idmount.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

/* 0, -1 with errno from mount_setattr, or -2 with err. */
static int set_idmap(int tree, pid_t pid, char *err, size_t len)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/user", (int)pid);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		snprintf(err, len, "cannot open %s: %s", path, strerror(errno));
		return -2;
	}
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (__u64)ns};
	int rc = mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr));
	int saved = errno;
	close(ns);
	errno = saved;
	return rc;
}

/* No device node on the root filesystem can be opened (the container's
 * /dev is its own tmpfs with bound nodes): a node a template, a restored
 * backup or a --rootfs brings along, such as c 5:1 (the host's console) or
 * c 5:2 (the host's ptmx), both on the device allow-list for the
 * container's own /dev, stays dead. The container's copy of this mount has
 * the flag locked. */
static int set_nodev(int tree, const char *dir, char *err, size_t len)
{
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_NODEV};
	if (mount_setattr(tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) < 0) {
		snprintf(err, len, "cannot make %s nodev: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

int idmount_tree(const char *dir, pid_t pid, bool must_map, char *err, size_t len)
{
	int tree = open_tree(AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (tree < 0) {
		snprintf(err, len, "cannot clone the mount at %s: %s", dir, strerror(errno));
		return -1;
	}
	if (set_nodev(tree, dir, err, len) < 0) {
		close(tree);
		return -1;
	}
	if (!pid)
		return tree;
	int rc = set_idmap(tree, pid, err, len);
	if (rc == 0)
		return tree;
	if (rc == -2 || must_map || errno != EINVAL) {
		if (rc == -1)
			snprintf(err, len, "cannot idmap the mount at %s: %s", dir, strerror(errno));
		close(tree);
		return -1;
	}
	/* EINVAL: this filesystem (tmpfs before 6.3, for one) cannot be
	 * idmapped. The user's directory is not chowned behind their back. */
	kvz_warn("%s cannot be idmapped (%s): files owned by host ids outside the container's range show as nobody inside",
		 dir, strerror(EINVAL));
	return tree;
}

int idmount_place(int tree, const char *dir, char *err, size_t len)
{
	if (move_mount(tree, "", AT_FDCWD, dir, MOVE_MOUNT_F_EMPTY_PATH) < 0) {
		snprintf(err, len, "cannot mount the root filesystem on %s: %s", dir, strerror(errno));
		return -1;
	}
	return 0;
}

int idmount_send(int sock, int tree, char *err, size_t len)
{
	char go = 1;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = {.iov_base = &go, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &tree, sizeof(int));
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != 1) {
		snprintf(err, len, "cannot start the container: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int idmount_recv(int sock)
{
	char go;
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {.iov_base = &go, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}
