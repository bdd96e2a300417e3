/* A VM's disks on the command line: `--disk SIZE[,format=F][,mode=M]
 * [,base=PATH]` once per disk at create, `--add-disk` the same at set,
 * `--disk N:SIZE` to grow disk N (docs/api.md: "disks", "add_disk",
 * "disk_index"). */
#include "disk_opts.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "parse.h"

/* One "key=value" of a disk spec into o. */
static int spec_field(const char *opt, const char *kv, json_t *o)
{
	const char *eq = strchr(kv, '=');
	size_t n = eq ? (size_t)(eq - kv) : 0;
	char abs[PATH_MAX];
	if (!eq || !eq[1]) {
		kvz_error("%s: \"%s\": want format=raw|qcow2, mode=sparse|fixed or base=PATH", opt, kv);
		return -1;
	}
	if (n == 6 && !strncmp(kv, "format", n))
		json_object_set_new(o, "format", json_string(eq + 1));
	else if (n == 4 && !strncmp(kv, "mode", n))
		json_object_set_new(o, "mode", json_string(eq + 1));
	else if (n == 4 && !strncmp(kv, "base", n) && realpath(eq + 1, abs))
		json_object_set_new(o, "base", json_string(abs));
	else if (n == 4 && !strncmp(kv, "base", n))
		return kvz_error("%s: base %s: no such file", opt, eq + 1), -1;
	else
		return kvz_error("%s: unknown disk option \"%.*s\" (format, mode, base)", opt, (int)n, kv), -1;
	return 0;
}

int disk_spec_parse(const char *opt, const char *s, json_t **out)
{
	char *copy = strdup(s), *save = NULL;
	json_t *o = json_object();
	uint64_t size;
	int rc = -1;
	char *tok = copy ? strtok_r(copy, ",", &save) : NULL;
	if (!tok || !kvz_parse_size(tok, &size)) {
		kvz_error("%s: bad size \"%s\" (SIZE[,format=raw|qcow2][,mode=sparse|fixed][,base=PATH], "
			  "e.g. 4G,format=qcow2)", opt, tok ? tok : s);
		goto out;
	}
	json_object_set_new(o, "size", json_string(tok));
	while ((tok = strtok_r(NULL, ",", &save)))
		if (spec_field(opt, tok, o))
			goto out;
	rc = 0;
out:
	free(copy);
	if (rc)
		json_decref(o);
	*out = rc ? NULL : o;
	return rc;
}

int disks_finish(json_t *req, json_t *specs)
{
	json_t *d0 = json_array_get(specs, 0);
	if (!d0)
		return 0;
	/* One plain --disk SIZE: the request as before there were several. */
	if (json_array_size(specs) == 1 && json_object_size(d0) == 1) {
		json_object_set(req, "disk", json_object_get(d0, "size"));
		return 0;
	}
	static const char *const flat[][2] = {{"disk_format", "format"}, {"disk_mode", "mode"},
					      {"disk_base", "base"}};
	for (size_t i = 0; i < sizeof(flat) / sizeof(flat[0]); i++) {
		json_t *v = json_object_get(req, flat[i][0]);
		if (v && json_object_get(d0, flat[i][1])) {
			kvz_error("--%s and the first --disk's %s=: give one",
				  !strcmp(flat[i][1], "format") ? "disk-format" :
				  !strcmp(flat[i][1], "mode") ? "disk-mode" : "disk-base", flat[i][1]);
			return -1;
		}
		if (v)
			json_object_set(d0, flat[i][1], v);
		json_object_del(req, flat[i][0]);
	}
	json_object_set(req, "disks", specs);
	return 0;
}

int disk_grow_arg(json_t *req, const char *s)
{
	const char *colon = strchr(s, ':');
	uint64_t idx = 0, size;
	if (colon) {
		char num[16];
		size_t n = (size_t)(colon - s);
		if (n == 0 || n >= sizeof(num))
			return kvz_error("--disk: bad disk number in \"%s\" (N:SIZE, e.g. 1:20G)", s), -1;
		memcpy(num, s, n);
		num[n] = 0;
		if (!kvz_parse_u64(num, 0, 63, &idx))
			return kvz_error("--disk: bad disk number \"%s\" (N:SIZE, e.g. 1:20G)", num), -1;
	}
	const char *sz = colon ? colon + 1 : s;
	if (!kvz_parse_size(sz, &size))
		return kvz_error("--disk: bad size \"%s\" ([N:]SIZE, e.g. 20G or 1:20G)", sz), -1;
	json_object_set_new(req, "disk", json_string(sz));
	if (colon)
		json_object_set_new(req, "disk_index", json_integer((json_int_t)idx));
	return 0;
}
