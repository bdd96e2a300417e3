/* kvz: the command line of kvzd. A thin client: every subcommand is one or
 * a few API requests, except exec and console which reach the guest's
 * supervisor directly (see exec.c, console.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "http.h"
#include "log.h"

bool cli_json;

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
	{"create", cmd_create, "create ct|vm NAME [options]   define a guest and its storage"},
	{"start", cmd_start, "start NAME                     start a guest"},
	{"stop", cmd_stop, "stop NAME [--timeout S] [--force]"},
	{"destroy", cmd_destroy, "destroy NAME [--force]         remove a guest and its storage"},
	{"set", cmd_set, "set NAME [--memory M] [--cpus C] [--pids N] [--disk [N:]S] [--add-disk S[,format=F] | --remove-disk N] [--tag T]... [--no-tags] [--boot B] [--cdrom ISO|--eject [--force]] | --ha | --no-ha   live where possible (boot, cdrom: next start; disks added/removed: stopped VM)"},
	{"list", cmd_list, "list [--all]                   guests with state and usage (--all: the whole cluster)"},
	{"show", cmd_show, "show NAME                      one guest in detail"},
	{"exec", cmd_exec, "exec [-t] [--env N[=V]]... NAME -- CMD [ARGS...]   run a command in a container"},
	{"console", cmd_console, "console NAME                   attach to the console (detach: Ctrl-])"},
	{"stats", cmd_stats, "stats NAME|--host [--range 1h|24h]   usage series"},
	{"top", cmd_top, "top [--interval S] [--iterations N]   live view"},
	{"events", cmd_events, "events [--all] [--guest NAME] [--follow] [--limit N]"},
	{"host", cmd_host, "host                           host totals"},
	{"snapshot", cmd_snapshot, "snapshot create NAME [SNAP] | list NAME | restore NAME SNAP | delete NAME SNAP   [--detach]"},
	{"backup", cmd_backup, "backup create NAME [B] | list NAME | restore NAME B | delete NAME B   [--detach]   containers"},
	{"migrate", cmd_migrate, "migrate NAME --to NODE [--offline] [--copy-storage] [--downtime MS] [--bandwidth MBPS] [--pre-dumps K] [--detach]   move a guest to another node (a container: live, with CRIU)"},
	{"node", cmd_node, "node add NAME URL --token-file F | list | show NAME | remove NAME   other hosts"},
	{"cluster", cmd_cluster, "cluster init|join --etcd URL[,URL...] | leave | status   many hosts as one (etcd)"},
	{"policy", cmd_policy, "policy add FILE|- | list | show|enable|disable|remove NAME | plan [--at TIME] | approve|reject ID | log   rules that act by themselves"},
	{"image", cmd_image, "image create|info|check|convert|resize ...   disk images (raw, qcow2) on this host; needs no kvzd"},
	{"job", cmd_job, "job list [--guest NAME] | show ID | cancel ID | wait ID   long operations"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: kvz [--socket PATH] [--json] COMMAND [ARGS]\n"
		   "  --socket PATH   kvzd's socket (default $KVZ_SOCKET or /run/kvz/kvzd.sock)\n"
		   "  --json          JSON output for scripts\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %s\n", commands[i].help);
}

/* Takes --json and --socket out of argv wherever they are before "--", so
 * that both `kvz --json list` and `kvz list --json` work. */
static int extract_globals(int *argc, char **argv)
{
	int out = 1;
	bool dashdash = false;
	for (int i = 1; i < *argc; i++) {
		if (!dashdash && !strcmp(argv[i], "--"))
			dashdash = true;
		if (!dashdash && !strcmp(argv[i], "--json")) {
			cli_json = true;
			continue;
		}
		if (!dashdash && !strcmp(argv[i], "--socket")) {
			if (i + 1 >= *argc) {
				kvz_error("--socket needs a path");
				return -1;
			}
			http_set_socket(argv[++i]);
			continue;
		}
		if (!dashdash && !strncmp(argv[i], "--socket=", 9)) {
			http_set_socket(argv[i] + 9);
			continue;
		}
		argv[out++] = argv[i];
	}
	*argc = out;
	argv[out] = NULL;
	return 0;
}

int main(int argc, char **argv)
{
	kvz_log_init("kvz");
	const char *env = getenv("KVZ_SOCKET");
	if (env && *env)
		http_set_socket(env);
	if (extract_globals(&argc, argv))
		return 2;
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		kvz_error("cannot initialise libcurl");
		return 1;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name)) {
			/* getopt in the commands sees the subcommand as argv[0]. */
			int rc = commands[i].fn(argc - 1, argv + 1);
			curl_global_cleanup();
			return rc;
		}
	kvz_error("unknown command \"%s\" (kvz --help lists them)", argv[1]);
	return 2;
}
