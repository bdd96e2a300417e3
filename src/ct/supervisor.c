#include "supervisor.h"

#include "disk.h"
#include "idmount.h"
#include "kernfs.h"
#include "log.h"
#include "namespaces.h"
#include "netlink.h"
#include "qmp_server.h"
#include "state.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define CGROUP_ROOT "/sys/fs/cgroup"

/* The root filesystem is mounted in a mount namespace private to the
 * supervisor (and copied into the container's): nothing shows on the host,
 * and it all goes away with the supervisor, even on SIGKILL. */
static int mount_ns(char *err, size_t len)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		snprintf(err, len, "cannot create the supervisor's mount namespace: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int mount_root(struct supervisor *s, char *err, size_t len)
{
	const struct run_opts *o = s->o;
	if (o->rootfs) {
		struct stat st;
		if (!realpath(o->rootfs, s->target) || stat(s->target, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, len, "root filesystem '%s' is not a directory", o->rootfs);
			return -1;
		}
		if (mount(s->target, s->target, NULL, MS_BIND | MS_REC, NULL) < 0) {
			snprintf(err, len, "cannot bind-mount %s: %s", s->target, strerror(errno));
			return -1;
		}
		s->mounted = true;
		return 0;
	}
	ct_dir(o->ct_root, o->name, "private.img", s->image, sizeof(s->image));
	ct_dir(o->ct_root, o->name, "root", s->target, sizeof(s->target));
	if (!path_exists(s->image)) {
		snprintf(err, len, "container '%s' has no private area %s (run kvz-ct create, or give --rootfs)",
			 o->name, s->image);
		s->image[0] = 0;
		return -1;
	}
	if (mkdir_p(s->target, 0755, err, len) < 0)
		return -1;
	/* Kept open: loopdev may name it (/proc/self/fd/N, disk.h), and `set
	 * --disk` opens loopdev; autoclear frees the device once both this fd
	 * and the mount are gone. */
	s->loop_fd = disk_attach_mount(s->image, s->target, s->loopdev, sizeof(s->loopdev), err, len);
	s->mounted = s->loop_fd >= 0;
	return s->mounted ? 0 : -1;
}

/* The container's own range from CTROOT/NAME/idmap (a new one for a
 * private area made before ranges existed or copied from another), or a
 * range for this run with --rootfs. */
static int setup_idmap(struct supervisor *s, char *err, size_t len)
{
	const struct run_opts *o = s->o;
	if (o->privileged)
		return 0;
	if (o->rootfs) {
		s->idmap_run_fd = idmap_alloc_run(o->name, &s->idmap, err, len);
		return s->idmap_run_fd < 0 ? -1 : 0;
	}
	char dir[PATH_MAX], path[PATH_MAX];
	ct_dir(o->ct_root, o->name, NULL, dir, sizeof(dir));
	if (ct_idmap_path(dir, path, sizeof(path), err, len) < 0)
		return -1;
	return idmap_claim(path, &s->idmap, err, len);
}

/* The container's cgroups go under the caller's own (OWN/kvz/NAME), so
 * that whoever runs kvz-ct (a systemd unit, a delegated subtree, kvzd)
 * keeps them inside its own limits and accounting. */
static int setup_cgroup(struct supervisor *s, char *err, size_t len)
{
	/* With --detach our parent waits in the caller's cgroup until we run. */
	pid_t self[2] = {getpid(), getppid()};
	if (cgroup_init(&s->cg, CGROUP_ROOT, 0, s->o->name, err, len) < 0 ||
	    cgroup_locate(&s->cg, "/proc/self/cgroup", err, len) < 0 ||
	    cgroup_vacate(&s->cg, self, s->o->detach ? 2 : 1, err, len) < 0)
		return -1;
	s->cg_made = true;
	if (cgroup_create(&s->cg, err, len) < 0 ||
	    devices_apply(&s->cg, &s->o->devices, err, len) < 0)
		return -1;
	s->limits = s->o->limits;
	s->limits.has_disk = false;
	return cgroup_apply(&s->cg, &s->limits, &s->limits, err, len);
}

/* A bridge made here gets the gateway address, so that the host is
 * reachable from the containers behind it. */
static int setup_bridge(struct supervisor *s, char *err, size_t len)
{
	const struct net_opts *n = &s->o->net;
	bool created;
	if (!n->enabled)
		return 0;
	if (nl_bridge_ensure(n->bridge, &created, err, len) < 0)
		return -1;
	s->bridge_created = created;
	if (created && n->has_gw && nl_addr_add(n->bridge, n->gw, n->prefix, err, len) < 0)
		return -1;
	return 0;
}

static int setup_veth(struct supervisor *s, char *err, size_t len)
{
	if (!s->o->net.enabled)
		return 0;
	const struct net_opts *n = &s->o->net;
	snprintf(s->veth, sizeof(s->veth), "kvz%dh", (int)s->init_pid);
	net_filter_mac(s->o->name, n->ip, s->mac);
	if (nl_veth_create(s->veth, "eth0", s->init_pid, s->mac, err, len) < 0) {
		s->veth[0] = 0;
		return -1;
	}
	/* The filter is in place before the port joins the bridge, and the
	 * container's eth0 stays down until its process is let go. */
	return sup_veth_attach(s, err, len);
}

int sup_veth_attach(struct supervisor *s, char *err, size_t len)
{
	const struct net_opts *n = &s->o->net;
	net_filter_mac(s->o->name, n->ip, s->mac);
	return net_filter_install(&s->filter, s->o->name, s->veth, s->mac, n->ip, err, len) < 0 ||
			       nl_link_set_master(s->veth, n->bridge, err, len) < 0
		       ? -1
		       : nl_link_up(s->veth, err, len);
}

/* Reads what the container's first process reports: nothing (EOF at its
 * exec) means it runs. */
static int wait_child_ready(int fd, char *err, size_t len)
{
	char buf[512];
	size_t used = 0;
	ssize_t n;
	while ((n = read(fd, buf + used, sizeof(buf) - 1 - used)) > 0)
		used += (size_t)n;
	if (used == 0)
		return 0;
	buf[used] = 0;
	snprintf(err, len, "%s", buf);
	return -1;
}

/* The container's console belongs to its root, as a host's console to
 * the host's: sysvinit and getty reopen /dev/console. */
int sup_own_console(struct supervisor *s, char *err, size_t len)
{
	if (!s->has_console || s->o->privileged)
		return 0;
	if (fchown(s->con.slave_fd, s->idmap.uid, s->idmap.gid) < 0) {
		snprintf(err, len, "cannot give the console to the container: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* The container's view of the root is mounted apart from the plain mount
 * at target, on RUNDIR/.root of our own mount namespace (the directory is
 * shared by every supervisor and stays empty on the host): stacked on
 * target, it would be what ".." leads back into from inside the plain
 * mount, which `backup` of a running container walks. */
int sup_make_stage(struct supervisor *s, char *err, size_t len)
{
	snprintf(s->stage, sizeof(s->stage), "%s/.root", s->o->run_dir);
	if (mkdir(s->stage, 0700) < 0 && errno != EEXIST) {
		snprintf(err, len, "cannot create %s: %s", s->stage, strerror(errno));
		return -1;
	}
	return 0;
}

/* The user namespace's maps; the root filesystem mounted again on the
 * stage, idmapped to that namespace (idmount.h); the cgroup, the veth,
 * /proc and /sys on it (kernfs.h); then the go, with a descriptor of it
 * for the child to enter. */
static int prepare_child(struct supervisor *s, int sync, char *err, size_t len)
{
	if (!s->o->privileged && (ns_write_id_maps(s->init_pid, &s->idmap, err, len) < 0 ||
				  sup_own_console(s, err, len) < 0))
		return -1;
	if (sup_make_stage(s, err, len) < 0)
		return -1;
	int tree = idmount_tree(s->target, s->o->privileged ? 0 : s->init_pid, !s->o->rootfs,
				err, len);
	if (tree < 0)
		return -1;
	int rc = idmount_place(tree, s->stage, err, len) < 0 ||
			 cgroup_attach(&s->cg, s->init_pid, err, len) < 0 ||
			 setup_veth(s, err, len) < 0 ||
			 kernfs_mount(s->stage, s->init_pid, &s->cg, err, len) < 0 ||
			 idmount_send(sync, tree, err, len) < 0
		 ? -1 : 0;
	close(tree);
	return rc;
}

static int start_container(struct supervisor *s, char *err, size_t len)
{
	int sync[2], errp[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sync) < 0) {
		snprintf(err, len, "socketpair: %s", strerror(errno));
		return -1;
	}
	if (pipe2(errp, O_CLOEXEC) < 0) {
		snprintf(err, len, "pipe: %s", strerror(errno));
		close(sync[0]);
		close(sync[1]);
		return -1;
	}
	struct child_cfg cfg = {
		.o = s->o,
		.console_slave = s->has_console ? s->con.slave_fd : -1,
		.console = s->has_console ? s->con.slave_path : NULL,
		.null_stdio = s->o->detach,
		.sync_fd = sync[0], .err_fd = errp[1],
	};
	s->init_pid = ns_spawn(&cfg, err, len);
	close(sync[0]);
	close(errp[1]);
	int rc = -1;
	if (s->init_pid < 0) {
		s->init_pid = 0;
		goto out;
	}
	/* sync[1] stays open until the child execs (idmount.h's go, and
	 * container_main's check that we are alive). */
	if (prepare_child(s, sync[1], err, len) < 0)
		goto out;
	rc = wait_child_ready(errp[0], err, len);
out:
	if (sync[1] >= 0)
		close(sync[1]);
	close(errp[0]);
	return rc;
}

void sup_mark(struct supervisor *s, const char *phase)
{
	if (s->times)
		json_object_set_new(s->times, phase, json_integer(now_ms() - s->t0));
}

static int write_state(struct supervisor *s, char *err, size_t len)
{
	json_t *st = json_pack("{s:s,s:i,s:i,s:s,s:o,s:s,s:s,s:s,s:i}",
			       "name", s->o->name, "supervisor-pid", (int)getpid(),
			       "init-pid", (int)s->init_pid, "qmp", s->qmp_path,
			       "cgroups", cgroup_paths(&s->cg), "rootfs", s->target,
			       "image", s->image, "loop", s->loopdev, "cgroup-version", s->cg.version);
	json_object_set_new(st, "veth", s->veth[0] ? json_string(s->veth) : json_null());
	json_object_set_new(st, "idmap", s->o->privileged ? json_null() : idmap_to_json(&s->idmap));
	json_object_set_new(st, "confine", confine_to_json(&s->o->confine));
	char mac[18];
	net_filter_mac_str(s->mac, mac, sizeof(mac));
	json_object_set_new(st, "mac", s->veth[0] ? json_string(mac) : json_null());
	json_object_set_new(st, "nft-table", s->filter.table[0] ? json_string(s->filter.table) : json_null());
	json_object_set_new(st, "console-socket",
			    s->o->console_socket ? json_string(s->o->console_socket) : json_null());
	sup_mark(s, "state");
	json_object_set(st, "start-ms", s->times);
	if (s->thawed_at)
		json_object_set_new(st, "thawed-at-ms", json_integer(s->thawed_at));
	int rc = state_write(s->o->run_dir, s->o->name, st, err, len);
	json_decref(st);
	return rc;
}

static int start_qmp(struct supervisor *s, char *err, size_t len)
{
	char link[PATH_MAX];
	state_path(s->o->run_dir, s->o->name, "qmp", link, sizeof(link));
	snprintf(s->qmp_path, sizeof(s->qmp_path), "%s", s->o->qmp_path ? s->o->qmp_path : link);
	if (sup_qmp_start(s, err, len) < 0)
		return -1;
	if (strcmp(s->qmp_path, link) != 0) {
		unlink(link);
		if (symlink(s->qmp_path, link) < 0) {
			snprintf(err, len, "cannot link %s: %s", link, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* What each kind of init takes as "power off": busybox init SIGUSR2,
 * systemd SIGRTMIN+4, sysvinit SIGPWR (our debian template's inittab maps it
 * to `init 0`); a plain command gets SIGTERM. */
static int stop_signal(pid_t pid)
{
	char path[64], exe[PATH_MAX], comm[32] = "";
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	ssize_t n = readlink(path, exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	FILE *f = fopen(path, "re");
	if (f) {
		if (!fgets(comm, sizeof(comm), f))
			comm[0] = 0;
		fclose(f);
	}
	comm[strcspn(comm, "\n")] = 0;
	const char *base = strrchr(exe, '/') ? strrchr(exe, '/') + 1 : exe;
	if (!strcmp(base, "systemd"))
		return SIGRTMIN + 4;
	if (!strcmp(comm, "init"))
		return !strcmp(base, "busybox") ? SIGUSR2 : SIGPWR;
	return SIGTERM;
}

static void begin_stop(struct supervisor *s, int timeout)
{
	pthread_mutex_lock(&s->lock);
	bool already = s->stopping;
	s->stopping = true;
	pthread_mutex_unlock(&s->lock);
	if (!already)
		kill(s->init_pid, stop_signal(s->init_pid));
	struct itimerspec its = {.it_value = {.tv_sec = timeout, .tv_nsec = timeout ? 0 : 1}};
	if (timerfd_settime(s->timer_fd, 0, &its, NULL) < 0)
		kill(s->init_pid, SIGKILL);
}

static int exit_code_of(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Returns true once init has exited. */
static bool on_signal(struct supervisor *s)
{
	struct signalfd_siginfo si;
	if (read(s->sig_fd, &si, sizeof(si)) != sizeof(si))
		return false;
	if (si.ssi_signo != SIGCHLD) {
		begin_stop(s, 10);
		return false;
	}
	int status;
	pid_t pid;
	bool done = false;
	/* Only our own thread's children: criu, which a checkpoint runs on
	 * the QMP thread, is waited for there. */
	while ((pid = waitpid(-1, &status, WNOHANG | __WNOTHREAD)) > 0)
		if (pid == s->init_pid) {
			s->exit_code = exit_code_of(status);
			s->init_pid = 0;
			done = true;
		}
	return done;
}

static void on_request(struct supervisor *s)
{
	struct sup_request r;
	if (read(s->ctl[0], &r, sizeof(r)) != sizeof(r))
		return;
	pthread_mutex_lock(&s->lock);
	bool held = s->held;
	pthread_mutex_unlock(&s->lock);
	/* Held for a migration: a stop ends it at once (its state is on its
	 * way elsewhere; a frozen init would not answer a stop signal). */
	if (held)
		sup_release(s, true, NULL, 0);
	else if (r.cmd == 'q')
		kill(s->init_pid, SIGKILL);
	else
		begin_stop(s, r.timeout);
}

static void main_loop(struct supervisor *s)
{
	for (;;) {
		struct pollfd pfd[6] = {
			{.fd = s->sig_fd, .events = POLLIN},
			{.fd = s->ctl[0], .events = POLLIN},
			{.fd = s->timer_fd, .events = POLLIN},
		};
		int ncon = s->has_console ? console_pollfds(&s->con, pfd + 3) : 0;
		if (poll(pfd, (nfds_t)(3 + ncon), -1) < 0) {
			if (errno == EINTR)
				continue;
			kvz_error("poll: %s", strerror(errno));
			kill(s->init_pid, SIGKILL);
		}
		if (ncon)
			console_handle(&s->con, pfd + 3, ncon);
		if (pfd[0].revents & POLLIN && on_signal(s))
			return;
		if (pfd[1].revents & POLLIN)
			on_request(s);
		if (pfd[2].revents & POLLIN) {
			uint64_t ticks;
			if (read(s->timer_fd, &ticks, sizeof(ticks)) > 0)
				kill(s->init_pid, SIGKILL);
		}
	}
}

static void kill_init(struct supervisor *s)
{
	if (s->init_pid <= 0)
		return;
	kill(s->init_pid, SIGKILL);
	while (waitpid(s->init_pid, NULL, 0) < 0 && errno == EINTR)
		;
	s->init_pid = 0;
}

/* Undoes whatever was done, in reverse; safe at any point of the set-up. */
static void teardown(struct supervisor *s)
{
	char err[512];
	qmp_server_stop(s->qmp);
	s->qmp = NULL;
	if (s->mig_fd >= 0)
		close(s->mig_fd);
	s->mig_fd = -1;
	/* Frozen tasks die only once thawed (cgroup v1). */
	if (s->held)
		sup_release(s, true, NULL, 0);
	kill_init(s);
	if (s->has_console)
		console_close(&s->con);
	/* The kernel deletes the pair itself when the container's network
	 * namespace goes; only a veth still there is worth a warning. */
	if (s->veth[0] && if_nametoindex(s->veth) && nl_link_del(s->veth, err, sizeof(err)) < 0 &&
	    if_nametoindex(s->veth))
		kvz_warn("%s", err);
	net_filter_remove(&s->filter);
	if (s->cg_made && cgroup_destroy(&s->cg, err, sizeof(err)) < 0)
		kvz_warn("%s", err);
	if (s->mounted && umount2(s->target, MNT_DETACH) < 0)
		kvz_warn("cannot unmount %s: %s", s->target, strerror(errno));
	if (s->loop_fd >= 0)
		close(s->loop_fd);
	s->loop_fd = -1;
	if (s->idmap_run_fd >= 0)
		idmap_release_run(s->idmap_run_fd, &s->idmap);
	s->idmap_run_fd = -1;
	state_remove(s->o->run_dir, s->o->name);
	close(s->lock_fd);
}

static int setup_loop_fds(struct supervisor *s, char *err, size_t len)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Blocked before any thread starts, so that only the signalfd sees
	 * them; the container's process unblocks them before exec. */
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0 ||
	    (s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC)) < 0 ||
	    pipe2(s->ctl, O_CLOEXEC) < 0) {
		snprintf(err, len, "cannot set up the supervisor loop: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null < 0)
		return;
	dup2(null, 0);
	dup2(null, 1);
	dup2(null, 2);
	close(null);
}

/* A staged restore: until the migration says its images and private
 * area are complete ('g' on go_fd), nothing touches them; EOF (kvzd gave
 * up or died) or a stop signal calls the restore off. */
static int wait_go(struct supervisor *s, char *err, size_t len)
{
	struct pollfd p[2] = {{.fd = s->o->go_fd, .events = POLLIN}, {.fd = s->sig_fd, .events = POLLIN}};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, len, "waiting for the restore's go: %s", strerror(errno));
			return -1;
		}
		struct signalfd_siginfo si;
		if (p[1].revents & POLLIN && read(s->sig_fd, &si, sizeof(si)) == sizeof(si) &&
		    si.ssi_signo != SIGCHLD) {
			snprintf(err, len, "stopped before its restore began");
			return -1;
		}
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		char c = 0;
		ssize_t n = read(s->o->go_fd, &c, 1);
		close(s->o->go_fd);
		if (n == 1 && c == 'g')
			return 0;
		snprintf(err, len, "the restore was called off before it began");
		return -1;
	}
}

/* The parts of a start that need neither the private area mounted nor a
 * checkpoint's images: a staged restore does them while both arrive. */
static int set_up_host(struct supervisor *s, char *err, size_t len)
{
	const struct run_opts *o = s->o;
	if (setup_idmap(s, err, len) < 0 || setup_cgroup(s, err, len) < 0 || setup_bridge(s, err, len) < 0)
		return -1;
	sup_mark(s, "cgroup-bridge");
	if (o->console_socket) {
		if (console_open(&s->con, o->console_socket, err, len) < 0)
			return -1;
		s->has_console = true;
	}
	return 0;
}

static int set_up(struct supervisor *s, char *err, size_t len)
{
	const struct run_opts *o = s->o;
	bool staged = o->restore_dir && o->go_fd >= 0;
	if (setup_loop_fds(s, err, len) < 0 || mount_ns(err, len) < 0)
		return -1;
	if (staged && (set_up_host(s, err, len) < 0 || wait_go(s, err, len) < 0))
		return -1;
	if (staged)
		sup_mark(s, "go");
	if (mount_root(s, err, len) < 0)
		return -1;
	sup_mark(s, "mount");
	if (!staged && set_up_host(s, err, len) < 0)
		return -1;
	int started = o->restore_dir ? sup_restore(s, err, len) : start_container(s, err, len);
	sup_mark(s, o->restore_dir ? "restored" : "started");
	return started < 0 || start_qmp(s, err, len) < 0 ||
			       write_state(s, err, len) < 0
		       ? -1
		       : 0;
}

int supervisor_run(const struct run_opts *o, int notify_fd)
{
	static struct supervisor sup; /* large (console ring); one per process */
	struct supervisor *s = &sup;
	memset(s, 0, sizeof(*s));
	s->o = o;
	s->sig_fd = s->timer_fd = s->ctl[0] = s->ctl[1] = s->idmap_run_fd = s->loop_fd = -1;
	s->mig_fd = -1;
	s->t0 = now_ms();
	s->times = json_object();
	pthread_mutex_init(&s->lock, NULL);
	char err[1024] = "";
	s->lock_fd = state_lock(o->run_dir, o->name, err, sizeof(err));
	if (s->lock_fd < 0) {
		kvz_error("%s", err);
		return 1;
	}
	if (set_up(s, err, sizeof(err)) < 0) {
		teardown(s);
		/* A bridge made for a container that never ran goes too; once a
		 * container has run, the bridge stays for the others on it. */
		char e2[256];
		if (s->bridge_created && nl_link_del(s->o->net.bridge, e2, sizeof(e2)) < 0)
			kvz_warn("%s", e2);
		kvz_error("%s", err);
		return 1;
	}
	if (notify_fd >= 0) {
		if (write(notify_fd, "ok", 2) != 2)
			kvz_warn("cannot notify the parent: %s", strerror(errno));
		close(notify_fd);
		detach_stdio();
	}
	main_loop(s);
	/* A checkpoint ends the container on purpose: the SHUTDOWN says so and
	 * counts as clean (its dump finishes before teardown stops QMP). */
	pthread_mutex_lock(&s->lock);
	bool checkpointed = s->checkpointed;
	pthread_mutex_unlock(&s->lock);
	if (checkpointed)
		s->exit_code = 0;
	json_t *ev = json_pack("{s:i}", "exit-code", s->exit_code);
	if (checkpointed)
		json_object_set_new(ev, "reason", json_string("checkpoint"));
	qmp_server_emit(s->qmp, "SHUTDOWN", ev);
	teardown(s);
	return s->exit_code;
}
