/* kvz-ct exec: runs a command inside a running container by joining its
 * cgroups and namespaces (found through the init pid in NAME.json). */
#include "cmd_common.h"
#include "ct.h"
#include "log.h"
#include "namespaces.h"
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void join_cgroups(json_t *paths)
{
	size_t i;
	json_t *p;
	char buf[32], err[512];
	snprintf(buf, sizeof(buf), "%d", (int)getpid());
	json_array_foreach(paths, i, p) {
		char file[4096];
		snprintf(file, sizeof(file), "%s/cgroup.procs", json_string_value(p));
		FILE *f = fopen(file, "we");
		if (!f || fputs(buf, f) < 0 || fclose(f) != 0) {
			snprintf(err, sizeof(err), "cannot join cgroup %s: %s", json_string_value(p), strerror(errno));
			kvz_die("%s", err);
		}
	}
}

static bool same_ns(pid_t pid, const char *ns)
{
	char a[64], b[64];
	struct stat sa, sb;
	snprintf(a, sizeof(a), "/proc/%d/ns/%s", (int)pid, ns);
	snprintf(b, sizeof(b), "/proc/self/ns/%s", ns);
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev;
}

/* The user namespace goes first (it owns the others); the mount namespace
 * last but one, then the root of the container's init. */
static void enter_namespaces(pid_t pid)
{
	static const char *const order[] = {"user", "cgroup", "ipc", "uts", "net", "pid", "mnt"};
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/root", (int)pid);
	int root = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		kvz_die("cannot open %s: %m", path);
	int fds[7];
	bool userns = !same_ns(pid, "user");
	for (size_t i = 0; i < 7; i++) {
		fds[i] = -1;
		if (same_ns(pid, order[i]))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, order[i]);
		fds[i] = open(path, O_RDONLY | O_CLOEXEC);
		if (fds[i] < 0)
			kvz_die("cannot open %s: %m", path);
	}
	for (size_t i = 0; i < 7; i++) {
		if (fds[i] >= 0 && setns(fds[i], 0) < 0)
			kvz_die("cannot enter the container's %s namespace: %m", order[i]);
		if (fds[i] >= 0)
			close(fds[i]);
	}
	if (fchdir(root) < 0 || chroot(".") < 0 || chdir("/") < 0)
		kvz_die("cannot enter the container's root: %m");
	close(root);
	char err[256];
	if (userns && ns_become_root(err, sizeof(err)) < 0)
		kvz_die("%s", err);
}

static int wait_code(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			kvz_die("waitpid: %m");
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs in a child: joins the container, then forks the command, since
 * joining a pid namespace only applies to children. */
static int run_inside(pid_t init, json_t *cgroups, const struct confine_opts *conf,
		      const char *name, char **cmd)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	join_cgroups(cgroups);
	enter_namespaces(init);
	pid_t pid = fork();
	if (pid < 0)
		kvz_die("fork: %m");
	if (pid == 0) {
		char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"HOME=/root", "TERM=linux", "container=kvz", NULL};
		char err[512];
		if (confine_apply(conf, err, sizeof(err)) < 0)
			kvz_die("%s", err);
		execvpe(cmd[0], cmd, envp);
		kvz_error("cannot run '%s' in container '%s': %m", cmd[0], name);
		_exit(127);
	}
	return wait_code(pid);
}

int cmd_exec(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'},
		{"run-dir", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	int opt;
	while ((opt = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 'r')
			run_dir = optarg;
		else
			kvz_die("usage: kvz-ct exec --name N [--run-dir DIR] -- CMD [ARGS...]");
	}
	require_name(name);
	if (optind >= argc)
		kvz_die("no command: kvz-ct exec --name %s -- CMD [ARGS...]", name);
	char err[512];
	json_t *st = state_load(run_dir, name, err, sizeof(err));
	if (!st)
		kvz_die("%s", err);
	pid_t init = (pid_t)json_integer_value(json_object_get(st, "init-pid"));
	json_t *cgroups = json_incref(json_object_get(st, "cgroups"));
	/* The same confinement as the container's init, compiled here once. */
	struct confine_opts conf;
	if (confine_from_json(json_object_get(st, "confine"), &conf, err, sizeof(err)) < 0 ||
	    confine_prepare(&conf, err, sizeof(err)) < 0)
		kvz_die("container '%s': %s", name, err);
	json_decref(st);
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	/* The namespaces are entered by a child, so that this process stays
	 * where it was (LeakSanitizer, for one, cannot stop the world from
	 * inside another pid namespace). */
	pid_t pid = fork();
	if (pid < 0)
		kvz_die("fork: %m");
	if (pid == 0)
		_exit(run_inside(init, cgroups, &conf, name, argv + optind));
	json_decref(cgroups);
	confine_release(&conf);
	return wait_code(pid);
}
