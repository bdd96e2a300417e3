/* kvzd's command-line options of cluster mode (main.c lists them in its
 * getopt table with the codes below). Secrets for etcd come from files
 * and options, never through the API. */
#include "cluster_options.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "parse.h"
#include "token_file.h"

void cluster_options_default(struct cluster_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ttl_s = 6;
	o->max_restarts = 3;
	o->max_relocations = 3;
	o->etcd.timeout_ms = 1000;
	if (gethostname(o->name, sizeof(o->name)))
		snprintf(o->name, sizeof(o->name), "localhost");
	o->name[sizeof(o->name) - 1] = 0;
}

static int copy(char *dst, size_t len, const char *arg, const char *opt)
{
	if (strlen(arg) >= len) {
		kvz_error("--%s: too long", opt);
		return -1;
	}
	snprintf(dst, len, "%s", arg);
	return 0;
}

static int number(const char *arg, const char *opt, uint64_t min, uint64_t max, int *out)
{
	uint64_t v;
	if (!kvz_parse_u64(arg, min, max, &v)) {
		kvz_error("--%s: want %llu..%llu, got \"%s\"", opt, (unsigned long long)min,
			  (unsigned long long)max, arg);
		return -1;
	}
	*out = (int)v;
	return 0;
}

int cluster_parse_option(int c, const char *arg, struct cluster_opts *o)
{
	switch (c) {
	case CLOPT_NODE_NAME:
		if (!kvz_valid_name(arg)) {
			kvz_error("--node-name: \"%s\" is not a valid name", arg);
			return -1;
		}
		return copy(o->name, sizeof(o->name), arg, "node-name");
	case CLOPT_NODE_URL:
		return copy(o->url, sizeof(o->url), arg, "node-url");
	case CLOPT_CACERT: return copy(o->etcd.cacert, sizeof(o->etcd.cacert), arg, "etcd-cacert");
	case CLOPT_CERT: return copy(o->etcd.cert, sizeof(o->etcd.cert), arg, "etcd-cert");
	case CLOPT_KEY: return copy(o->etcd.key, sizeof(o->etcd.key), arg, "etcd-key");
	case CLOPT_USER: return copy(o->etcd.user, sizeof(o->etcd.user), arg, "etcd-user");
	case CLOPT_PASSWORD_FILE: {
		char *pw = kvz_read_token_file(arg);
		int rc = pw ? copy(o->etcd.password, sizeof(o->etcd.password), pw, "etcd-password-file") : -1;
		free(pw);
		return rc;
	}
	case CLOPT_TTL: return number(arg, "cluster-ttl", 2, 600, &o->ttl_s);
	case CLOPT_MAX_RESTARTS: return number(arg, "ha-max-restarts", 1, 100, &o->max_restarts);
	case CLOPT_MAX_RELOCATIONS: return number(arg, "ha-max-relocations", 0, 100, &o->max_relocations);
	default:
		return 1;
	}
}

int cluster_options_finish(struct cluster_opts *o, const char *listen)
{
	if (!*o->url && listen)
		snprintf(o->url, sizeof(o->url), "http://%s", listen);
	if (*o->url && !peer_url_ok(o->url)) {
		kvz_error("--node-url: want http://HOST:PORT, got \"%s\"", o->url);
		return -1;
	}
	if (*o->etcd.user && !*o->etcd.password) {
		kvz_error("--etcd-user needs --etcd-password-file");
		return -1;
	}
	return 0;
}
