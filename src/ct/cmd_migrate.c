/* The two ends of a container's migration that are not a checkpoint
 * (cmd_checkpoint.c --page-server-fd --hold): `kvz-ct page-server`, the
 * target's receiving of the pages, and `kvz-ct release`, the source's
 * ending of a hold once the target runs the container (or resuming it
 * when the migration failed). kvzd drives both (docs/architecture.md,
 * "Container migration"). */
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
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define RELEASE_TIMEOUT_MS 30000

/* The images of a migration: pre-1 .. pre-K (each the parent of the
 * next), then the final dump's in the directory itself. */
static void session_dir(const char *dir, int i, int pre, char *out, size_t size,
			char *prev, size_t psize)
{
	if (i <= pre)
		snprintf(out, size, "%s/pre-%d", dir, i);
	else
		snprintf(out, size, "%s", dir);
	prev[0] = 0;
	if (i > 1 && i <= pre)
		snprintf(prev, psize, "../pre-%d", i - 1);
	else if (i > pre && pre > 0)
		snprintf(prev, psize, "pre-%d", pre);
}

/* kvz-ct page-server --dir D --fd N --pre-dumps K: K + 1 page server
 * sessions on socket N, in the order the source's checkpoint
 * --page-server-fd --pre-dumps K sends them. */
int cmd_page_server(int argc, char **argv)
{
	static const struct option opts[] = {
		{"dir", required_argument, NULL, 'd'}, {"fd", required_argument, NULL, 'f'},
		{"pre-dumps", required_argument, NULL, 'p'}, {NULL, 0, NULL, 0},
	};
	const char *dir = NULL;
	uint64_t fd = 0, pre = 0;
	bool have_fd = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'd')
			dir = optarg;
		else if (opt == 'f' && kvz_parse_u64(optarg, 0, 1 << 20, &fd))
			have_fd = true;
		else if (opt == 'p' && kvz_parse_u64(optarg, 0, 10, &pre))
			continue;
		else
			kvz_die("usage: kvz-ct page-server --dir D --fd N [--pre-dumps K (0..10)]");
	}
	int type = 0;
	socklen_t sl = sizeof(type);
	if (!have_fd || getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0 ||
	    type != SOCK_STREAM)
		kvz_die("kvz-ct page-server needs --fd N, a connected stream socket of this process");
	if (!dir || dir[0] != '/')
		kvz_die("kvz-ct page-server needs --dir D, an absolute path");
	char err[1024], why[512];
	if (criu_usable(why, sizeof(why)) < 0)
		kvz_die("cannot receive a migration's pages: %s", why);
	if (mkdir_p(dir, 0700, err, sizeof(err)) < 0)
		kvz_die("%s", err);
	for (int i = 1; i <= (int)pre + 1; i++) {
		char sub[PATH_MAX], prev[32];
		session_dir(dir, i, (int)pre, sub, sizeof(sub), prev, sizeof(prev));
		if (mkdir(sub, 0700) < 0 && i <= (int)pre)
			kvz_die("cannot create %s: %m", sub);
		if (criu_page_server(sub, prev[0] ? prev : NULL, (int)fd, err, sizeof(err)) < 0)
			kvz_die("%s", err);
	}
	return 0;
}

/* kvz-ct release --name N (--end | --resume) [--run-dir DIR]. */
int cmd_release(int argc, char **argv)
{
	static const struct option opts[] = {
		{"name", required_argument, NULL, 'n'}, {"run-dir", required_argument, NULL, 'r'},
		{"end", no_argument, NULL, 'e'}, {"resume", no_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	const char *name = NULL, *run_dir = KVZ_CT_DEFAULT_RUNDIR;
	int end = -1, opt;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == 'n')
			name = optarg;
		else if (opt == 'r')
			run_dir = optarg;
		else if (opt == 'e' || opt == 'c')
			end = opt == 'e';
		else
			end = -2;
	}
	if (end < 0)
		kvz_die("usage: kvz-ct release --name N (--end | --resume) [--run-dir DIR]");
	require_name(name);
	char err[1024];
	json_t *st = state_load(run_dir, name, err, sizeof(err));
	if (!st)
		kvz_die("%s", err);
	struct qmp_client *c = qmp_client_connect(json_string_value(json_object_get(st, "qmp")),
						  RELEASE_TIMEOUT_MS, err, sizeof(err));
	json_decref(st);
	if (!c)
		kvz_die("cannot reach the supervisor of '%s': %s", name, err);
	json_t *args = json_pack("{s:b}", "end", end);
	int rc = qmp_client_execute(c, "release", args, NULL, NULL, 0, err, sizeof(err));
	json_decref(args);
	qmp_client_close(c);
	if (rc != 0)
		kvz_die("cannot release '%s': %s", name, err);
	return 0;
}
