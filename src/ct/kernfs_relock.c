/* After a CRIU restore: the container's /proc and /sys (with their masks and
 * read-only binds) are made by CRIU inside the restored namespaces, so the
 * kernel does not lock them and the container's root could unmount a mask
 * or bind an unmasked proc elsewhere. They are replaced here by a tree built
 * as at a start (kernfs_mount) whose submounts are locked:
 *
 *   builder (host root, a private mount namespace): a tmpfs on the scratch
 *     directory, kernfs_mount into it; then a user namespace of its own and
 *     a copy of its mount namespace, which the kernel locks whole (as it
 *     does for the container's copy at a start); open_tree() clones /proc
 *     and /sys from that copy recursively (the clone's top is unlocked, its
 *     submounts keep the lock) and sends both descriptors back;
 *   installer (host root): enters the container's mount namespace, detaches
 *     CRIU's /proc and /sys and moves the clones into their place.
 *
 * The installer is a child of the supervisor (setns() into a mount
 * namespace needs a single-threaded caller), the builder a child of it. */
#include "kernfs.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const tops[] = {"proc", "sys"};
#define NTOPS (sizeof(tops) / sizeof(tops[0]))

static int say(int fd, const char *what, const char *path)
{
	dprintf(fd, "cannot %s %s: %s", what, path, strerror(errno));
	return 1;
}

static int send_fds(int sock, const int *fds)
{
	char byte = 0;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int) * NTOPS)];
		struct cmsghdr align;
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int) * NTOPS);
	memcpy(CMSG_DATA(h), fds, sizeof(int) * NTOPS);
	return sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int recv_fds(int sock, int *fds)
{
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int) * NTOPS)];
		struct cmsghdr align;
	} u;
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			   .msg_controllen = sizeof(u.buf)};
	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	if (!h || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS ||
	    h->cmsg_len != CMSG_LEN(sizeof(int) * NTOPS))
		return -1;
	memcpy(fds, CMSG_DATA(h), sizeof(int) * NTOPS);
	return 0;
}

static int build(const char *scratch, pid_t init, const struct cgroup *cg, int sock, int err_fd)
{
	char err[512] = "", path[PATH_MAX];
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return say(err_fd, "make", "a private mount namespace");
	if (mount("kvz-relock", scratch, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755") < 0)
		return say(err_fd, "mount a tmpfs on", scratch);
	for (size_t i = 0; i < NTOPS; i++) {
		snprintf(path, sizeof(path), "%s/%s", scratch, tops[i]);
		if (mkdir(path, 0555) < 0)
			return say(err_fd, "make", path);
	}
	if (kernfs_mount(scratch, init, cg, err, sizeof(err)) < 0) {
		dprintf(err_fd, "%s", err);
		return 1;
	}
	/* The copy follows the working directory: the tops are found from it
	 * (unmapped in the new user namespace, we could not walk the path). */
	if (chdir(scratch) < 0)
		return say(err_fd, "enter", scratch);
	if (unshare(CLONE_NEWUSER) < 0 || unshare(CLONE_NEWNS) < 0)
		return say(err_fd, "make", "a locked copy of the kernel file systems");
	int fds[NTOPS];
	for (size_t i = 0; i < NTOPS; i++) {
		fds[i] = open_tree(AT_FDCWD, tops[i], OPEN_TREE_CLONE | AT_RECURSIVE | OPEN_TREE_CLOEXEC);
		if (fds[i] < 0)
			return say(err_fd, "clone", tops[i]);
	}
	return send_fds(sock, fds) < 0 ? say(err_fd, "send", "the locked trees") : 0;
}

static int install(pid_t init, const int *fds, int err_fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)init);
	int ns = open(path, O_RDONLY | O_CLOEXEC);
	struct stat theirs, ours;
	if (ns < 0 || fstat(ns, &theirs) < 0 || stat("/proc/self/ns/mnt", &ours) < 0)
		return say(err_fd, "inspect", path);
	/* Never detach the supervisor's (the host's) /proc and /sys. */
	if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev) {
		dprintf(err_fd, "the restored init %d shares the supervisor's mount namespace", (int)init);
		return 1;
	}
	if (setns(ns, CLONE_NEWNS) < 0)
		return say(err_fd, "enter", path);
	close(ns);
	for (size_t i = 0; i < NTOPS; i++) {
		snprintf(path, sizeof(path), "/%s", tops[i]);
		if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL)
			return say(err_fd, "detach CRIU's", path);
		if (move_mount(fds[i], "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
			return say(err_fd, "put the locked tree on", path);
	}
	return 0;
}

struct relock_args {
	const char *scratch;
	pid_t init;
	const struct cgroup *cg;
};

static int relock(void *arg, int err_fd)
{
	const struct relock_args *a = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return say(err_fd, "create", "a socket pair");
	pid_t pid = fork();
	if (pid < 0)
		return say(err_fd, "fork", "the builder");
	if (pid == 0) {
		close(sv[0]);
		_exit(build(a->scratch, a->init, a->cg, sv[1], err_fd));
	}
	close(sv[1]);
	int fds[NTOPS];
	int got = recv_fds(sv[0], fds);
	close(sv[0]);
	if (wait_exit_code(pid) != 0 || got < 0)
		return 1; /* the builder said why */
	return install(a->init, fds, err_fd);
}

int kernfs_relock(const char *scratch, pid_t init, const struct cgroup *cg, char *err, size_t len)
{
	struct relock_args a = {.scratch = scratch, .init = init, .cg = cg};
	char msg[512];
	if (run_in_child(relock, &a, msg, sizeof(msg)) == 0)
		return 0;
	snprintf(err, len, "cannot lock the restored container's /proc and /sys: %s",
		 msg[0] ? msg : "the helper died");
	return -1;
}
