#include "exec_env.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static bool valid_name(const char *s, size_t n)
{
	if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

/* A terminal type is a short terminfo name; anything else (escape
 * sequences, paths) is not passed on. */
static bool sane_term(const char *t)
{
	size_t n = t ? strlen(t) : 0;
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)t[i]) || strchr("+-._", t[i])))
			return false;
	return true;
}

/* Sets NAME=VALUE, replacing an earlier value of NAME. */
static int env_set(struct exec_env *e, const char *name, size_t nlen, const char *value)
{
	char *var;
	if (asprintf(&var, "%.*s=%s", (int)nlen, name, value) < 0)
		return -1;
	for (size_t i = 0; i < e->n; i++)
		if (!strncmp(e->vars[i], var, nlen + 1)) {
			free(e->vars[i]);
			e->vars[i] = var;
			return 0;
		}
	char **grown = realloc(e->vars, (e->n + 2) * sizeof(char *));
	if (!grown) {
		free(var);
		return -1;
	}
	e->vars = grown;
	e->vars[e->n++] = var;
	e->vars[e->n] = NULL;
	return 0;
}

static int add_arg(struct exec_env *e, const char *arg, char *err, size_t len)
{
	const char *eq = strchr(arg, '=');
	size_t nlen = eq ? (size_t)(eq - arg) : strlen(arg);
	if (!valid_name(arg, nlen)) {
		snprintf(err, len, "invalid --env '%s': want NAME=VALUE or NAME ([A-Za-z_][A-Za-z0-9_]*)", arg);
		return -1;
	}
	const char *value = eq ? eq + 1 : getenv(arg);
	if (!value)
		return 0;
	if (env_set(e, arg, nlen, value) < 0) {
		snprintf(err, len, "out of memory");
		return -1;
	}
	return 0;
}

int exec_env_build(struct exec_env *e, char *const *args, size_t nargs, char *err, size_t len)
{
	const char *term = getenv("TERM");
	e->vars = NULL;
	e->n = 0;
	if (env_set(e, "PATH", 4, BASE_PATH) < 0 || env_set(e, "HOME", 4, "/root") < 0 ||
	    env_set(e, "TERM", 4, sane_term(term) ? term : "linux") < 0 ||
	    env_set(e, "container", 9, "kvz") < 0) {
		snprintf(err, len, "out of memory");
		exec_env_free(e);
		return -1;
	}
	for (size_t i = 0; i < nargs; i++)
		if (add_arg(e, args[i], err, len) < 0) {
			exec_env_free(e);
			return -1;
		}
	return 0;
}

void exec_env_free(struct exec_env *e)
{
	for (size_t i = 0; i < e->n; i++)
		free(e->vars[i]);
	free(e->vars);
	e->vars = NULL;
	e->n = 0;
}
