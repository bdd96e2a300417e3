/* The environment a command run by kvz-ct exec gets: a fixed base (PATH,
 * HOME, TERM, container=kvz) and what the administrator names with --env,
 * never the rest of the administrator's environment. */
#ifndef KVZ_CT_EXEC_ENV_H
#define KVZ_CT_EXEC_ENV_H

#include <stddef.h>

struct exec_env {
	char **vars; /* NAME=VALUE strings, NULL-terminated */
	size_t n;
};

/* Builds the environment from the --env arguments (NAME=VALUE, or NAME to
 * copy the administrator's value; an unset NAME is left out). */
int exec_env_build(struct exec_env *e, char *const *args, size_t nargs, char *err, size_t len);
void exec_env_free(struct exec_env *e);

#endif
