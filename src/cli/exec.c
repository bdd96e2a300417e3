/* kvz exec [-t] [--env NAME[=VALUE]]... NAME -- CMD: runs a command in a
 * running container.
 *
 * kvz executes kvz-ct exec itself, with the command line kvzd gives in the
 * guest's "exec" field, rather than tunnelling through the API: the API
 * socket is local anyway, and so the command gets kvz's stdin, signals and
 * exit code without a streaming protocol in kvzd. kvz-ct exec relays them
 * through a new pty of the container (-t, or stdin a terminal) or pipes,
 * and passes only the variables --env names (docs/architecture.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

#define EXEC_USAGE "usage: kvz exec [-t|--tty] [--env NAME[=VALUE]]... NAME -- CMD [ARGS...]"

/* kvz-ct exec options gathered from our command line, in order. */
struct exec_args {
	const char *name;
	char **opts;
	size_t nopts;
	int cmd; /* index of the command, after "--" */
};

static int parse_args(int argc, char **argv, struct exec_args *a)
{
	a->opts = calloc((size_t)argc * 2, sizeof(char *));
	if (!a->opts) {
		kvz_error("out of memory");
		return -1;
	}
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (!strcmp(s, "--")) {
			a->cmd = i + 1;
			break;
		}
		if (!strcmp(s, "-t") || !strcmp(s, "--tty")) {
			a->opts[a->nopts++] = "--tty";
		} else if ((!strcmp(s, "-e") || !strcmp(s, "--env")) && i + 1 < argc) {
			a->opts[a->nopts++] = "--env";
			a->opts[a->nopts++] = argv[++i];
		} else if (!strncmp(s, "--env=", 6)) {
			a->opts[a->nopts++] = "--env";
			a->opts[a->nopts++] = (char *)s + 6;
		} else if (s[0] != '-' && !a->name) {
			a->name = s;
		} else {
			kvz_error("invalid argument '%s': " EXEC_USAGE, s);
			return -1;
		}
	}
	if (!a->name || !a->cmd || a->cmd >= argc) {
		kvz_error(EXEC_USAGE);
		return -1;
	}
	return 0;
}

/* The guest's "exec" prefix, our options, "--", the command. */
static char **build_argv(json_t *prefix, const struct exec_args *a, int argc, char **argv)
{
	size_t np = json_array_size(prefix);
	char **nargv = calloc(np + a->nopts + (size_t)argc + 2, sizeof(char *));
	if (!nargv)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < np; i++)
		nargv[n++] = strdup(json_string_value(json_array_get(prefix, i)));
	for (size_t i = 0; i < a->nopts; i++)
		nargv[n++] = a->opts[i];
	nargv[n++] = "--";
	for (int i = a->cmd; i < argc; i++)
		nargv[n++] = argv[i];
	nargv[n] = NULL;
	return nargv;
}

int cmd_exec(int argc, char **argv)
{
	struct exec_args a = {0};
	if (parse_args(argc, argv, &a) < 0) {
		free(a.opts);
		return 2;
	}
	json_t *g = get_guest(a.name);
	if (!g)
		return 1;
	const char *type = json_string_value(json_object_get(g, "type"));
	const char *state = json_string_value(json_object_get(g, "state"));
	json_t *prefix = json_object_get(g, "exec");
	if (strcmp(type, "ct") || !json_is_array(prefix)) {
		kvz_error("%s is a VM: exec works on containers (use kvz console)", a.name);
		json_decref(g);
		return 1;
	}
	if (strcmp(state, "running")) {
		kvz_error("container %s is not running (%s)", a.name, state);
		json_decref(g);
		return 1;
	}
	char **nargv = build_argv(prefix, &a, argc, argv);
	if (!nargv) {
		kvz_error("out of memory");
		return 1;
	}
	fflush(stdout);
	execv(nargv[0], nargv);
	kvz_error("cannot run %s: %s", nargv[0], strerror(errno));
	return 1;
}
