/* kvz exec NAME -- CMD: runs a command in a running container.
 *
 * kvz executes kvz-ct exec itself, with the command line kvzd gives in the
 * guest's "exec" field, rather than tunnelling through the API: the API
 * socket is local anyway, and so the command gets kvz's real terminal,
 * stdin, signals and exit code without a streaming protocol in kvzd. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "log.h"

int cmd_exec(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--")) {
		kvz_error("usage: kvz exec NAME -- CMD [ARGS...]");
		return 2;
	}
	json_t *g = get_guest(argv[1]);
	if (!g)
		return 1;
	const char *type = json_string_value(json_object_get(g, "type"));
	const char *state = json_string_value(json_object_get(g, "state"));
	json_t *prefix = json_object_get(g, "exec");
	if (strcmp(type, "ct") || !json_is_array(prefix)) {
		kvz_error("%s is a VM: exec works on containers (use kvz console)", argv[1]);
		json_decref(g);
		return 1;
	}
	if (strcmp(state, "running")) {
		kvz_error("container %s is not running (%s)", argv[1], state);
		json_decref(g);
		return 1;
	}
	size_t np = json_array_size(prefix);
	char **nargv = calloc(np + (size_t)argc, sizeof(char *));
	if (!nargv) {
		kvz_error("out of memory");
		return 1;
	}
	size_t n = 0;
	for (size_t i = 0; i < np; i++)
		nargv[n++] = strdup(json_string_value(json_array_get(prefix, i)));
	nargv[n++] = "--";
	for (int i = 3; i < argc; i++)
		nargv[n++] = argv[i];
	nargv[n] = NULL;
	fflush(stdout);
	execv(nargv[0], nargv);
	kvz_error("cannot run %s: %s", nargv[0], strerror(errno));
	return 1;
}
