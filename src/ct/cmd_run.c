/* kvz-ct run: parses the options and becomes the container's supervisor
 * (in the foreground, or in a detached child with --detach). */
#include "cmd_common.h"
#include "criu.h"
#include "ct.h"
#include "log.h"
#include "parse.h"
#include "supervisor.h"
#include "util.h"

#include <ctype.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { O_ROOTFS = 256, O_CTROOT, O_HOSTNAME, O_MEMORY, O_SWAP, O_CPUS, O_CPUW, O_CPUSET,
       O_PIDS, O_IOW, O_NET, O_QMP, O_CONSOLE, O_DETACH, O_RUNDIR, O_PRIVILEGED, O_NAME,
       O_SECCOMP, O_DEVICE, O_NNP, O_CAP_ADD, O_CAP_DROP, O_RESTORE,
       O_GO_FD, O_LAZY };

static const struct option run_options[] = {
	{"name", required_argument, NULL, O_NAME},
	{"rootfs", required_argument, NULL, O_ROOTFS},
	{"ct-root", required_argument, NULL, O_CTROOT},
	{"hostname", required_argument, NULL, O_HOSTNAME},
	{"memory", required_argument, NULL, O_MEMORY},
	{"swap", required_argument, NULL, O_SWAP},
	{"cpus", required_argument, NULL, O_CPUS},
	{"cpu-weight", required_argument, NULL, O_CPUW},
	{"cpuset", required_argument, NULL, O_CPUSET},
	{"pids", required_argument, NULL, O_PIDS},
	{"io-weight", required_argument, NULL, O_IOW},
	{"net", required_argument, NULL, O_NET},
	{"qmp", required_argument, NULL, O_QMP},
	{"console-socket", required_argument, NULL, O_CONSOLE},
	{"detach", no_argument, NULL, O_DETACH},
	{"run-dir", required_argument, NULL, O_RUNDIR},
	{"privileged", no_argument, NULL, O_PRIVILEGED},
	{"seccomp", required_argument, NULL, O_SECCOMP},
	{"device", required_argument, NULL, O_DEVICE},
	{"no-new-privs", no_argument, NULL, O_NNP},
	{"cap-add", required_argument, NULL, O_CAP_ADD},
	{"cap-drop", required_argument, NULL, O_CAP_DROP},
	{"restore", required_argument, NULL, O_RESTORE},
	{"restore-go-fd", required_argument, NULL, O_GO_FD},
	{"lazy-pages", no_argument, NULL, O_LAZY},
	{NULL, 0, NULL, 0},
};

static bool valid_hostname(const char *h)
{
	size_t n = strlen(h);
	if (n == 0 || n > 63 || h[0] == '-' || h[0] == '.')
		return false;
	for (const char *p = h; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return false;
	return true;
}

/* --restore-go-fd N: an inherited pipe's read end, kept from criu and
 * the container (close-on-exec). */
static int go_fd_of(const char *arg)
{
	uint64_t v;
	struct stat st;
	if (!kvz_parse_u64(arg, 3, 1 << 20, &v) || fstat((int)v, &st) < 0 || !S_ISFIFO(st.st_mode) ||
	    fcntl((int)v, F_SETFD, FD_CLOEXEC) < 0)
		kvz_die("--restore-go-fd %s is not a pipe of this process", arg);
	return (int)v;
}

static const char *limit_key(int opt)
{
	switch (opt) {
	case O_MEMORY: return "memory";
	case O_SWAP: return "swap";
	case O_CPUS: return "cpus";
	case O_CPUW: return "cpu-weight";
	case O_CPUSET: return "cpuset";
	case O_PIDS: return "pids";
	case O_IOW: return "io-weight";
	default: return NULL;
	}
}

/* Like OpenVZ's and Proxmox's defaults, a container never runs unbounded:
 * a fork or memory bomb inside stays inside. Options given override. */
static void default_limits(struct ct_limits *l)
{
	char err[128];
	if (!l->has_pids && !ct_limit_parse(l, "pids", KVZ_CT_DEFAULT_PIDS, err, sizeof(err)))
		kvz_die("%s", err);
	if (!l->has_memory && !ct_limit_parse(l, "memory", KVZ_CT_DEFAULT_MEMORY, err, sizeof(err)))
		kvz_die("%s", err);
}

void run_parse(int argc, char **argv, struct run_opts *o)
{
	char err[512];
	int opt;
	o->ct_root = KVZ_CT_DEFAULT_ROOT;
	o->run_dir = KVZ_CT_DEFAULT_RUNDIR;
	o->go_fd = -1;
	o->run_argc = argc - 1;
	o->run_argv = argv + 1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "+", run_options, NULL)) != -1) {
		const char *key = limit_key(opt);
		if (key) {
			if (!ct_limit_parse(&o->limits, key, optarg, err, sizeof(err)))
				kvz_die("%s", err);
			continue;
		}
		switch (opt) {
		case O_NAME: o->name = optarg; break;
		case O_ROOTFS: o->rootfs = optarg; break;
		case O_CTROOT: o->ct_root = optarg; break;
		case O_HOSTNAME: o->hostname = optarg; break;
		case O_QMP: o->qmp_path = optarg; break;
		case O_CONSOLE: o->console_socket = optarg; break;
		case O_DETACH: o->detach = true; break;
		case O_RUNDIR: o->run_dir = optarg; break;
		/* A migration's target (kvzd): this command line, but the
		 * processes of the checkpoint there instead of CMD. */
		case O_RESTORE: o->restore_dir = optarg; break;
		case O_GO_FD: o->go_fd = go_fd_of(optarg); break;
		case O_LAZY: o->lazy_pages = true; break;
		case O_PRIVILEGED: o->privileged = true; break;
		case O_NNP: o->confine.no_new_privs = true; break;
		case O_SECCOMP:
			if (seccomp_profile_parse(optarg, &o->confine.seccomp, err, sizeof(err)) < 0)
				kvz_die("%s", err);
			break;
		case O_CAP_ADD:
		case O_CAP_DROP: {
			uint64_t m = caps_mask_of(optarg);
			if (!m)
				kvz_die("unknown capability '%s' (a capabilities(7) name such as "
					"sys_admin, or all)", optarg);
			*(opt == O_CAP_ADD ? &o->confine.caps.add : &o->confine.caps.drop) |= m;
			break;
		}
		case O_DEVICE:
			if (devices_parse(optarg, &o->devices, err, sizeof(err)) < 0)
				kvz_die("%s", err);
			break;
		case O_NET:
			if (!parse_net(optarg, &o->net, err, sizeof(err)))
				kvz_die("%s", err);
			break;
		default: kvz_die("usage: kvz-ct run --name N [OPTIONS] -- CMD [ARGS...]");
		}
	}
	require_name(o->name);
	default_limits(&o->limits);
	if (o->hostname && !valid_hostname(o->hostname))
		kvz_die("invalid --hostname '%s'", o->hostname);
	if (optind >= argc)
		kvz_die("no command to run: kvz-ct run --name %s [OPTIONS] -- CMD [ARGS...]", o->name);
	o->argv = argv + optind;
	if (confine_prepare(&o->confine, err, sizeof(err)) < 0)
		kvz_die("%s", err);
	if (o->privileged)
		kvz_warn("--privileged: no user namespace, container root is host root");
}

/* --detach: the supervisor runs in a child in a session of its own; we
 * return once it says the container runs (its own stderr carries the one
 * error line otherwise). */
static int detach(const struct run_opts *o)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		kvz_die("pipe: %m");
	pid_t pid = fork();
	if (pid < 0)
		kvz_die("fork: %m");
	if (pid == 0) {
		close(p[0]);
		setsid();
		exit(supervisor_run(o, p[1]));
	}
	close(p[1]);
	char buf[2];
	ssize_t n = read(p[0], buf, sizeof(buf));
	close(p[0]);
	return n == 2 ? 0 : 1;
}

int run_start(const struct run_opts *o)
{
	if (geteuid() != 0)
		kvz_die("kvz-ct %s needs root (namespaces, cgroups, loop devices)",
			o->restore_dir ? "restore" : "run");
	if (o->detach)
		return detach(o);
	return supervisor_run(o, -1);
}

/* CRIU opens the userfaultfd in each restored task, i.e. inside the
 * container's user namespace, without UFFD_USER_MODE_ONLY (3.17): the
 * kernel allows that to a task without CAP_SYS_PTRACE in the host's
 * namespace only with vm.unprivileged_userfaultfd=1, a host-wide setting
 * left to the administrator. */
static void lazy_pages_check(const struct run_opts *o)
{
	char why[512];
	if (criu_lazy_usable(why, sizeof(why)) < 0)
		kvz_die("cannot restore '%s' lazily: %s", o->name, why);
	if (o->privileged)
		return;
	char *v = read_text("/proc/sys/vm/unprivileged_userfaultfd");
	bool allowed = v && v[0] == '1';
	free(v);
	if (!allowed)
		kvz_die("cannot restore '%s' lazily: its tasks open the userfaultfd inside the "
			"container's user namespace, which needs vm.unprivileged_userfaultfd=1 here", o->name);
}

int cmd_run(int argc, char **argv)
{
	static struct run_opts o;
	run_parse(argc, argv, &o);
	if (o.go_fd >= 0 && !o.restore_dir)
		kvz_die("--restore-go-fd is for a staged --restore");
	if (o.lazy_pages && !o.restore_dir)
		kvz_die("--lazy-pages is for --restore");
	if (o.lazy_pages)
		lazy_pages_check(&o);
	/* Staged: the images are still on their way; the supervisor checks
	 * them once told to go. */
	if (o.restore_dir && o.go_fd >= 0)
		checkpoint_dir_staged_check(o.restore_dir, o.name);
	else if (o.restore_dir)
		checkpoint_dir_check(o.restore_dir, o.name);
	return run_start(&o);
}
