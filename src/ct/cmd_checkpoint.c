/* kvz-ct checkpoint / restore --dir: a running container to a directory of
 * CRIU images and back, under a new supervisor. `criu check` decides first:
 * where CRIU cannot work both refuse with one line saying why. The dump
 * itself runs in the supervisor (sup_checkpoint.c), which owns the console
 * and knows the limits in force. */
#include "cmd_common.h"
#include "criu.h"
#include "ct.h"
#include "log.h"
#include "parse.h"
#include "qmp_client.h"
#include "state.h"
#include "util.h"

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A dump of a large container under emulation takes minutes. */
#define CHECKPOINT_TIMEOUT_MS (30 * 60 * 1000)

static void require_criu(const char *what, const char *name)
{
	char why[512];
	if (criu_usable(why, sizeof(why)) < 0)
		kvz_die("cannot %s '%s': %s", what, name, why);
}

/* The supervisor exits after its teardown once the dump has ended init. */
static void wait_gone(pid_t sup, const char *name)
{
	time_t deadline = time(NULL) + 30;
	while (pid_alive(sup)) {
		if (time(NULL) > deadline)
			kvz_die("the supervisor of '%s' did not exit after its checkpoint", name);
		usleep(10000);
	}
}

/* Ctrl-C or SIGTERM cancels: the supervisor sees this process gone and
 * starts no further criu step (a step under way completes: killing criu
 * mid-dump could leave its parasite in a task). */
static void on_cancel(int sig)
{
	static const char msg[] = "kvz-ct: checkpoint cancelled: no further criu step starts "
				  "(one under way completes; after a pre-dump the container runs on)\n";
	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
	(void)n;
	_exit(128 + sig);
}

/* A connected stream socket this process inherited: a migration's page
 * server (criu page-server --ps-socket) is at its other end. */
static int page_server_fd(const char *arg)
{
	uint64_t v;
	int type = 0;
	socklen_t sl = sizeof(type);
	if (!kvz_parse_u64(arg, 3, 1 << 20, &v) ||
	    getsockopt((int)v, SOL_SOCKET, SO_TYPE, &type, &sl) < 0 || type != SOCK_STREAM)
		kvz_die("--page-server-fd %s is not a stream socket of this process", arg);
	return (int)v;
}

int cmd_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'}, {"dir", required_argument, NULL, 'd'},
		{"run-dir", required_argument, NULL, 'r'},
		{"leave-running", no_argument, NULL, 'l'}, {"pre-dumps", required_argument, NULL, 'p'},
		{"page-server-fd", required_argument, NULL, 'f'}, {"hold", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *dir = NULL, *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	bool leave = false, hold = false;
	int ps_fd = -1;
	uint64_t pre = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 'd')
			dir = optarg;
		else if (opt == 'r')
			run_dir = optarg;
		else if (opt == 'l')
			leave = true;
		else if (opt == 'h')
			hold = true;
		else if (opt == 'f')
			ps_fd = page_server_fd(optarg);
		else if (opt == 'p') {
			if (!kvz_parse_u64(optarg, 0, 10, &pre))
				kvz_die("invalid --pre-dumps '%s': want 0..10", optarg);
		} else
			kvz_die("usage: kvz-ct checkpoint --name N --dir D [--leave-running] [--pre-dumps K] "
				"[--page-server-fd FD] [--hold] [--run-dir DIR]");
	}
	if (hold && leave)
		kvz_die("--hold and --leave-running exclude each other (a hold keeps it frozen)");
	require_name(name);
	if (!dir || !*dir)
		kvz_die("kvz-ct checkpoint needs --dir D (where the images go)");
	char err[1024], abs[PATH_MAX];
	json_t *st = state_load(run_dir, name, err, sizeof(err));
	if (!st)
		kvz_die("%s", err);
	require_criu("checkpoint", name);
	/* The images hold the container's memory: private to root. */
	if (mkdir_p(dir, 0700, err, sizeof(err)) < 0)
		kvz_die("%s", err);
	if (!realpath(dir, abs))
		kvz_die("cannot resolve %s: %m", dir);
	pid_t sup = (pid_t)json_integer_value(json_object_get(st, "supervisor-pid"));
	struct qmp_client *c = qmp_client_connect(json_string_value(json_object_get(st, "qmp")),
						  CHECKPOINT_TIMEOUT_MS, err, sizeof(err));
	json_decref(st);
	if (!c)
		kvz_die("cannot reach the supervisor of '%s': %s", name, err);
	struct sigaction sa = {.sa_handler = on_cancel};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	json_t *args = json_pack("{s:s,s:b,s:I,s:i,s:b,s:b}", "dir", abs, "leave-running", leave,
				 "pre-dumps", (json_int_t)pre, "client-pid", (int)getpid(),
				 "page-server", ps_fd >= 0, "hold", hold);
	json_t *ret = NULL;
	int rc = 0;
	if (ps_fd >= 0 && qmp_client_getfd(c, "mig", ps_fd, err, sizeof(err)))
		rc = -1;
	if (rc == 0)
		rc = qmp_client_execute(c, "checkpoint", args, &ret, NULL, 0, err, sizeof(err));
	json_decref(args);
	qmp_client_close(c);
	if (rc != 0)
		kvz_die("checkpoint of '%s' failed: %s", name, err);
	/* What each criu run wrote of memory: how well the pre-dumps did. */
	size_t i;
	json_t *step;
	json_array_foreach(json_object_get(ret, "steps"), i, step) {
		const char *what = json_string_value(json_object_get(step, "step"));
		json_int_t bytes = json_integer_value(json_object_get(step, "bytes"));
		json_int_t ms = json_integer_value(json_object_get(step, "ms"));
		if (what && ps_fd < 0)
			printf("%s: %" JSON_INTEGER_FORMAT " bytes of memory written\n", what, bytes);
		else if (what && !json_object_get(step, "frozen-at"))
			printf("%s: %" JSON_INTEGER_FORMAT " bytes of memory sent, %" JSON_INTEGER_FORMAT
			       " ms\n", what, bytes, ms);
		else if (what) /* a hold: kvzd counts its downtime from the freeze
				* (CLOCK_MONOTONIC ms, the supervisor's host is ours) */
			printf("%s: %" JSON_INTEGER_FORMAT " bytes of memory sent, %" JSON_INTEGER_FORMAT
			       " ms, frozen at %" JSON_INTEGER_FORMAT ", settled in %" JSON_INTEGER_FORMAT
			       " ms\n", what, bytes, ms,
			       json_integer_value(json_object_get(step, "frozen-at")),
			       json_integer_value(json_object_get(step, "settle-ms")));
	}
	json_decref(ret);
	if (!leave && !hold)
		wait_gone(sup, name);
	return 0;
}

/* CRIU restores what the images say, namespaces included: images others
 * could have written would run as whatever they claim (host root without
 * a user namespace). Only a root-owned directory closed to others counts. */
static void require_private(const char *dir)
{
	if (dir[0] != '/')
		kvz_die("checkpoint directory '%s' is not an absolute path", dir);
	struct stat st;
	if (stat(dir, &st) < 0)
		kvz_die("cannot stat %s: %m", dir);
	if (st.st_uid != 0 || (st.st_mode & 022))
		kvz_die("checkpoint directory %s must belong to root and be writable by nobody else "
			"(its images are restored as they are)", dir);
}

/* run's arguments from the checkpoint with --detach first: the restored
 * container's supervisor runs in the background like any detached one. */
static char **run_argv_of(json_t *args, int *argc)
{
	size_t n = json_array_size(args);
	char **argv = calloc(n + 3, sizeof(*argv));
	if (!argv)
		kvz_die("out of memory");
	argv[0] = "run";
	argv[1] = "--detach";
	for (size_t i = 0; i < n; i++) {
		const char *a = json_string_value(json_array_get(args, i));
		if (!a)
			return NULL;
		argv[i + 2] = (char *)a;
	}
	*argc = (int)n + 2;
	return argv;
}

int cmd_restore_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'}, {"dir", required_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *dir = NULL;
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 'd')
			dir = optarg;
		else
			kvz_die("usage: kvz-ct restore --name N --dir D (a checkpoint), "
				"or --name N --input FILE (a backup)");
	}
	require_name(name);
	static char abs[PATH_MAX];
	if (!dir || !realpath(dir, abs))
		kvz_die("checkpoint directory '%s' does not exist", dir ? dir : "");
	require_private(abs);
	char path[PATH_MAX], err[512];
	snprintf(path, sizeof(path), "%s/kvz-ct.json", abs);
	json_error_t je;
	/* Static: the run options point into it for as long as the
	 * supervisor lives (and it stays reachable, not leaked). */
	static json_t *meta;
	meta = json_load_file(path, 0, &je);
	if (!meta)
		kvz_die("%s holds no kvz-ct checkpoint (%s)", abs, je.text);
	const char *saved = json_string_value(json_object_get(meta, "name"));
	if (!saved || strcmp(saved, name) != 0)
		kvz_die("%s is a checkpoint of '%s', not of '%s'", abs, saved ? saved : "?", name);
	require_criu("restore", name);
	int rargc = 0;
	static char **rargv; /* the same */
	rargv = run_argv_of(json_object_get(meta, "run-args"), &rargc);
	if (!rargv)
		kvz_die("%s: bad run-args", path);
	static struct run_opts o;
	run_parse(rargc, rargv, &o);
	/* The limits in force at the checkpoint, not run's original ones. */
	memset(&o.limits, 0, sizeof(o.limits));
	if (!ct_limits_from_json(&o.limits, json_object_get(meta, "limits"), err, sizeof(err)))
		kvz_die("%s: %s", path, err);
	o.restore_dir = abs;
	return run_start(&o);
}

void checkpoint_dir_staged_check(const char *dir, const char *name)
{
	require_private(dir);
	require_criu("restore", name);
}

void checkpoint_dir_check(const char *dir, const char *name)
{
	require_private(dir);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/kvz-ct.json", dir);
	json_error_t je;
	json_t *meta = json_load_file(path, 0, &je);
	if (!meta)
		kvz_die("%s holds no kvz-ct checkpoint (%s)", dir, je.text);
	const char *saved = json_string_value(json_object_get(meta, "name"));
	if (!saved || strcmp(saved, name) != 0)
		kvz_die("%s is a checkpoint of '%s', not of '%s'", dir, saved ? saved : "?", name);
	json_decref(meta);
	require_criu("restore", name);
}
