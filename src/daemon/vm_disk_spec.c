/* A VM's disk as a client asks for it (vm_disk_spec.h): checked apart
 * from the files, so that the checks can be fuzzed alone. */
#include "vm_disk_spec.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "block.h"
#include "parse.h"

const struct vm_disk_keys vm_disk0_keys = {"disk_format", "disk_mode", "disk_base"};

int vm_disk_kind(const struct image_dirs *dirs, const struct vm_disk_keys *k,
		 const char **fmt, const char **mode, const char *base,
		 char *base_out, size_t outlen, struct op_error *e)
{
	if (*fmt && strcmp(*fmt, "raw") && strcmp(*fmt, "qcow2"))
		return op_fail(e, 400, "%s must be \"raw\" or \"qcow2\"", k->format);
	if (*mode && strcmp(*mode, "sparse") && strcmp(*mode, "fixed"))
		return op_fail(e, 400, "%s must be \"sparse\" or \"fixed\"", k->mode);
	if (!*fmt)
		*fmt = base ? "qcow2" : "raw";
	if (!*mode)
		*mode = "sparse";
	if (base && strcmp(*fmt, "qcow2"))
		return op_fail(e, 400, "%s needs %s qcow2", k->base, k->format);
	if (!strcmp(*fmt, "qcow2") && !strcmp(*mode, "fixed"))
		return op_fail(e, 400, "a fixed (preallocated) disk is raw; qcow2 grows");
	return base ? cfg_image_path(dirs, k->base, base, base_out, outlen, e) : 0;
}

/* e's message after "what: " (copied first: op_fail writes e->msg). */
static int prefixed(struct op_error *e, const char *what)
{
	char msg[sizeof(e->msg)];
	snprintf(msg, sizeof(msg), "%s", e->msg);
	return op_fail(e, e->status, "%s: %s", what, msg);
}

int vm_disk_parse(const struct image_dirs *dirs, const char *what, json_t *spec,
		  json_t **out, struct op_error *e)
{
	static const char *const keys[] = {"size", "format", "mode", "base", NULL};
	json_t *size_v = json_is_object(spec) ? json_object_get(spec, "size") : spec;
	uint64_t size = 0;
	*out = NULL;
	if (json_is_object(spec) && cfg_check_keys(spec, keys, e))
		return prefixed(e, what);
	char max[32];
	if (size_v && (!cfg_size(size_v, &size) || size < (1u << 20) || size % BLK_SECTOR ||
		       size > BLK_MAX_SIZE))
		return op_fail(e, 400, "%s: bad size (1M to %s, a multiple of %u, e.g. \"8G\")",
			       what, kvz_format_size(BLK_MAX_SIZE, max, sizeof(max)), BLK_SECTOR);
	const char *fmt = cfg_str(spec, "format"), *mode = cfg_str(spec, "mode");
	const char *base = cfg_str(spec, "base");
	if (!size && !base)
		return op_fail(e, 400, "%s: needs a size (or a base image to take it from)", what);
	for (const char *const *k = keys + 1; *k; k++)
		if (json_object_get(spec, *k) && !cfg_str(spec, *k))
			return op_fail(e, 400, "%s: %s must be a string", what, *k);
	char path[PATH_MAX];
	static const struct vm_disk_keys names = {"format", "mode", "base"};
	if (vm_disk_kind(dirs, &names, &fmt, &mode, base, path, sizeof(path), e))
		return prefixed(e, what);
	*out = json_pack("{s:I, s:s, s:s}", "size", (json_int_t)size, "format", fmt, "mode", mode);
	if (base)
		json_object_set_new(*out, "base", json_string(path));
	return 0;
}


bool vm_disk_extra_name_valid(const char *file, const char *name)
{
	size_t n = strlen(name);
	if (!n || strncmp(file, name, n) || file[n] != '@')
		return false;
	const char *p = file + n + 1;
	size_t digits = strspn(p, "0123456789");
	return digits >= 1 && digits <= 3 && p[0] != '0' && !strcmp(p + digits, ".img");
}
