#include "namespaces.h"

#include "idmount.h"
#include "netlink.h"
#include "rootfs.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static __attribute__((noreturn)) void child_fail(const struct child_cfg *cfg, const char *msg)
{
	dprintf(cfg->err_fd, "%s", msg);
	_exit(127);
}

static int setup_net(const struct net_opts *n, char *err, size_t len)
{
	if (nl_link_up("lo", err, len) < 0)
		return -1;
	if (!n->enabled)
		return 0;
	if (nl_addr_add("eth0", n->ip, n->prefix, err, len) < 0 ||
	    nl_link_up("eth0", err, len) < 0)
		return -1;
	return n->has_gw ? nl_route_default("eth0", n->gw, err, len) : 0;
}

/* Like vzctl: the container's own boot scripts (Debian's hostname.sh) set
 * the hostname from /etc/hostname, so --hostname goes there too. A root
 * without /etc or a read-only one just keeps its file. */
static void write_etc_hostname(const char *host)
{
	int fd = open("/etc/hostname", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return;
	if (dprintf(fd, "%s\n", host) < 0) {
		/* nothing else to do: the kernel hostname is set already */
	}
	close(fd);
}

static int setup_console(const struct child_cfg *cfg, char *err, size_t len)
{
	if (setsid() < 0 && errno != EPERM) {
		snprintf(err, len, "setsid: %s", strerror(errno));
		return -1;
	}
	if (cfg->console_slave < 0 && !cfg->null_stdio)
		return 0;
	if (cfg->console_slave < 0) {
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) {
			snprintf(err, len, "cannot open /dev/null: %s", strerror(errno));
			return -1;
		}
		if (null > 2)
			close(null);
		return 0;
	}
	if (ioctl(cfg->console_slave, TIOCSCTTY, 0) < 0 || dup2(cfg->console_slave, 0) < 0 ||
	    dup2(cfg->console_slave, 1) < 0 || dup2(cfg->console_slave, 2) < 0) {
		snprintf(err, len, "cannot attach the console: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int ns_become_root(char *err, size_t len)
{
	if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0) {
		snprintf(err, len, "cannot become root in the user namespace: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static __attribute__((noreturn)) void container_main(const struct child_cfg *cfg)
{
	char err[512] = "";
	const struct run_opts *o = cfg->o;
	/* A container does not outlive its supervisor (SIGKILLed, crashed):
	 * nobody would reap it, answer QMP or clean up after it. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
		_exit(127);
	int root = idmount_recv(cfg->sync_fd);
	if (root < 0)
		_exit(127); /* the supervisor gave up before us */
	/* The root as the supervisor mounted it, with /proc and /sys on it:
	 * entered by descriptor, so that our mapped root never walks host
	 * paths it may not be allowed to (CTROOT/NAME is 0700). */
	if (fchdir(root) < 0)
		_exit(127);
	close(root);
	const char *host = o->hostname ? o->hostname : o->name;
	if (!o->privileged && ns_become_root(err, sizeof(err)) < 0)
		child_fail(cfg, err);
	/* A change of effective uid clears the parent-death signal. Set again;
	 * the supervisor keeps its end of sync_fd until we exec, so a hang-up
	 * means it died in between. */
	struct pollfd alive = {.fd = cfg->sync_fd, .events = POLLIN};
	if (!o->privileged && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 ||
			       poll(&alive, 1, 0) != 0))
		_exit(127);
	close(cfg->sync_fd);
	/* The cgroup namespace is made only now, once the supervisor has moved
	 * us into our cgroup, so that this cgroup is the container's "/". */
	if (unshare(CLONE_NEWCGROUP) < 0)
		snprintf(err, sizeof(err), "cannot create the cgroup namespace: %s", strerror(errno));
	/* The mount namespace is made only now too, once the supervisor has
	 * mounted the root, /proc, /sys and their masks (kernfs.c): our user
	 * namespace gets them as a locked copy, and the working directory
	 * follows into it. */
	else if (unshare(CLONE_NEWNS) < 0)
		snprintf(err, sizeof(err), "cannot create the mount namespace: %s", strerror(errno));
	else if (sethostname(host, strlen(host)) < 0)
		snprintf(err, sizeof(err), "cannot set hostname '%s': %s", host, strerror(errno));
	if (err[0])
		child_fail(cfg, err);
	if (setup_net(&o->net, err, sizeof(err)) < 0 ||
	    rootfs_enter(cfg->console, &o->devices, err, sizeof(err)) < 0)
		child_fail(cfg, err);
	if (o->hostname)
		write_etc_hostname(o->hostname);
	if (setup_console(cfg, err, sizeof(err)) < 0)
		child_fail(cfg, err);
	if (cfg->console_slave > 2)
		close(cfg->console_slave);
	char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=/root", "TERM=linux", "container=kvz", NULL};
	signal(SIGPIPE, SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* Nothing of the caller's but stdio: an inherited descriptor is a
	 * handle on a host file inside the container (and one CRIU cannot
	 * dump: its file is on none of the container's mounts). */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		snprintf(err, sizeof(err), "close_range: %s", strerror(errno));
		child_fail(cfg, err);
	}
	if (confine_apply(&o->confine, err, sizeof(err)) < 0)
		child_fail(cfg, err);
	execvpe(o->argv[0], o->argv, envp);
	snprintf(err, sizeof(err), "cannot run '%s' in the container: %s", o->argv[0], strerror(errno));
	child_fail(cfg, err);
}

pid_t ns_spawn(const struct child_cfg *cfg, char *err, size_t len)
{
	struct clone_args args;
	memset(&args, 0, sizeof(args));
	/* No CLONE_NEWNS: the child unshares its mount namespace once the
	 * supervisor has mounted its root, /proc and /sys (kernfs.c). */
	args.flags = CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
	if (!cfg->o->privileged)
		args.flags |= CLONE_NEWUSER;
	args.exit_signal = SIGCHLD;
	long pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		snprintf(err, len, "cannot create the container's namespaces: %s%s", strerror(errno),
			 errno == EPERM && !cfg->o->privileged
				 ? " (the kernel refuses a user namespace to a chrooted process)" : "");
		return -1;
	}
	if (pid == 0)
		container_main(cfg);
	return (pid_t)pid;
}

static int write_map(pid_t pid, const char *file, uint32_t base, uint32_t count,
		     char *err, size_t len)
{
	char path[64], map[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	snprintf(map, sizeof(map), "0 %u %u\n", base, count);
	return write_text(path, map, err, len);
}

int ns_write_id_maps(pid_t pid, const struct idmap *m, char *err, size_t len)
{
	return write_map(pid, "uid_map", m->uid, m->count, err, len) < 0
		       ? -1 : write_map(pid, "gid_map", m->gid, m->count, err, len);
}
