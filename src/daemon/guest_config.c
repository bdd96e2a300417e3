/* Turning a create request into a guest's stored configuration, and the
 * value checks create and set share. */
#include "guest_config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "hostinfo.h"
#include "image_dirs.h"
#include "install_media.h"
#include "parse.h"
#include "vm_disk_spec.h"

int op_fail(struct op_error *e, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	e->status = status;
	return -1;
}

/* A size given as a JSON string ("512M") or number of bytes. */
bool cfg_size(json_t *v, uint64_t *out)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return true;
	}
	return json_is_string(v) && kvz_parse_size(json_string_value(v), out);
}

bool cfg_size_pair(json_t *v, uint64_t *soft, uint64_t *hard)
{
	if (json_is_integer(v) && json_integer_value(v) > 0) {
		*soft = *hard = (uint64_t)json_integer_value(v);
		return true;
	}
	return json_is_string(v) && kvz_parse_size_pair(json_string_value(v), soft, hard);
}

bool cfg_cpus(json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return *out > 0 && *out <= 1024;
	}
	return json_is_string(v) && kvz_parse_cpus(json_string_value(v), out);
}

const char *cfg_str(json_t *req, const char *key)
{
	return json_string_value(json_object_get(req, key));
}

/* Rejects keys this type of guest does not know, so a typo is not ignored. */
int cfg_check_keys(json_t *req, const char *const *allowed, struct op_error *e)
{
	const char *key;
	json_t *val;
	json_object_foreach(req, key, val) {
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = !strcmp(*a, key);
		if (!ok)
			return op_fail(e, 400, "unknown field \"%s\"", key);
	}
	return 0;
}

#define MAX_TAGS 16

int cfg_tags(json_t *req, json_t *cfg, struct op_error *e)
{
	json_t *v = json_object_get(req, "tags");
	if (!v)
		return 0;
	if (!json_is_array(v) || json_array_size(v) > MAX_TAGS)
		return op_fail(e, 400, "tags must be a list of at most %d names", MAX_TAGS);
	json_t *tags = json_array();
	size_t i;
	json_t *t;
	json_array_foreach(v, i, t) {
		const char *s = json_string_value(t);
		if (!s || !kvz_valid_name(s)) {
			json_decref(tags);
			return op_fail(e, 400, "bad tag (letters, digits, '_', '.', '-'; up to 63)");
		}
		bool seen = false;
		for (size_t j = 0; j < json_array_size(tags) && !seen; j++)
			seen = !strcmp(json_string_value(json_array_get(tags, j)), s);
		if (!seen)
			json_array_append_new(tags, json_string(s));
	}
	json_object_set_new(cfg, "tags", tags);
	return 0;
}

int cfg_check_memory_fits(uint64_t bytes, struct op_error *e)
{
	struct host_mem m;
	if (host_meminfo(&m) == 0 && bytes > m.total) {
		char a[32], b[32];
		return op_fail(e, 409, "not enough host memory: %s requested, host has %s",
			    kvz_format_size(bytes, a, sizeof(a)),
			    kvz_format_size(m.total, b, sizeof(b)));
	}
	return 0;
}

static int parse_net(json_t *req, json_t *cfg, bool want_ip, struct op_error *e)
{
	const char *bridge = cfg_str(req, "bridge");
	const char *ip = cfg_str(req, "ip");
	const char *gw = cfg_str(req, "gw");
	const char *mac = cfg_str(req, "mac");
	if ((ip || gw) && !want_ip)
		return op_fail(e, 400, "ip and gw apply to containers; a VM configures its own address");
	if (ip && !bridge)
		bridge = "kvzbr0";
	if (gw && !ip)
		return op_fail(e, 400, "gw needs ip");
	if (want_ip && bridge && !ip)
		return op_fail(e, 400, "a container on a bridge needs ip (A.B.C.D/P)");
	for (const char *const *s = (const char *const[]){bridge, ip, gw, mac, NULL}; *s; s++)
		if (strpbrk(*s, ", =") || strlen(*s) > 64)
			return op_fail(e, 400, "bad network value \"%s\"", *s);
	if (ip && !strchr(ip, '/'))
		return op_fail(e, 400, "ip must be ADDRESS/PREFIX, got \"%s\"", ip);
	if (bridge)
		json_object_set_new(cfg, "bridge", json_string(bridge));
	if (ip)
		json_object_set_new(cfg, "ip", json_string(ip));
	if (gw)
		json_object_set_new(cfg, "gw", json_string(gw));
	if (mac)
		json_object_set_new(cfg, "mac", json_string(mac));
	return 0;
}

int cfg_image_path(const struct image_dirs *dirs, const char *key, const char *path,
		   char *out, size_t outlen, struct op_error *e)
{
	if (image_dirs_resolve(dirs, path, out, outlen) == 0)
		return 0;
	return cfg_image_refused(dirs, key, path, e);
}

int cfg_image_refused(const struct image_dirs *dirs, const char *key, const char *path,
		      struct op_error *e)
{
	/* One message for missing, forbidden and not-a-file alike: the reply
	 * must not tell what exists outside the image directories. */
	char list[600];
	image_dirs_list(dirs, list, sizeof(list));
	return op_fail(e, 400, "%s %.200s: not a readable file in the image directories (%.250s)",
		       key, path, list);
}

/* kernel and initrd, stored as found: without symlinks. */
static int vm_images(const struct image_dirs *dirs, json_t *req, json_t *cfg,
		     struct op_error *e)
{
	char path[PATH_MAX];
	const char *kernel = cfg_str(req, "kernel");
	if (cfg_image_path(dirs, "kernel", kernel, path, sizeof(path), e))
		return -1;
	json_object_set_new(cfg, "kernel", json_string(path));
	const char *initrd = cfg_str(req, "initrd");
	if (!initrd)
		return 0;
	if (cfg_image_path(dirs, "initrd", initrd, path, sizeof(path), e))
		return -1;
	json_object_set_new(cfg, "initrd", json_string(path));
	return 0;
}

static bool ipv4_prefix_ok(const char *s, bool want_prefix)
{
	char a[32];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	struct in_addr in;
	uint64_t p;
	if (n >= sizeof(a) || !slash != !want_prefix)
		return false;
	memcpy(a, s, n);
	a[n] = 0;
	return inet_pton(AF_INET, a, &in) == 1 &&
	       (!want_prefix || (kvz_parse_u64(slash + 1, 1, 32, &p)));
}

/* A credential given as text; the CLI read it from a file of the user's. */
static int secret_ok(json_t *req, const char *key, struct op_error *e)
{
	json_t *v = json_object_get(req, key);
	if (!v)
		return 0;
	const char *s = json_string_value(v);
	if (!s || !s[0] || strlen(s) > 16384)
		return op_fail(e, 400, "%s must be non-empty text of at most 16 KiB", key);
	if (!strcmp(key, "root_password") && strchr(s, '\n'))
		return op_fail(e, 400, "root_password must be one line");
	return 0;
}

/* A VM with a system of its own: template (a disk made from the container
 * templates) or import (a raw disk of another machine, copied), booted
 * directly from its disk or by firmware (vm_create.h). */
static int vm_source(const struct image_dirs *dirs, json_t *req, json_t *cfg, uint64_t *disk,
		     struct op_error *e)
{
	const char *tmpl = cfg_str(req, "template"), *imp = cfg_str(req, "import");
	const char *boot = cfg_str(req, "boot");
	if (tmpl && imp)
		return op_fail(e, 400, "template and import exclude each other");
	if (cfg_str(req, "kernel") || cfg_str(req, "initrd"))
		return op_fail(e, 400, "a VM from a template or an import boots the kernel in its disk: "
			       "no kernel or initrd");
	if (boot && strcmp(boot, "direct") && strcmp(boot, "firmware"))
		return op_fail(e, 400, "boot must be \"direct\" or \"firmware\"");
	json_object_set_new(cfg, "boot", json_string(boot ? boot : "direct"));
	/* The template's and the import's disk is a raw file made by the job:
	 * a format or an allocation asked for would be ignored or, for qcow2,
	 * make the VM read its raw disk as qcow2. */
	for (const char *const *k = (const char *const[]){"disk_format", "disk_mode", "disk_base",
							  NULL}; *k; k++)
		if (json_object_get(req, *k))
			return op_fail(e, 400, "%s applies to a VM with a kernel of yours; a template's "
				       "or an import's disk is a sparse raw image", *k);
	if (imp) {
		char path[PATH_MAX];
		struct stat st;
		if (cfg_image_path(dirs, "import", imp, path, sizeof(path), e))
			return -1;
		if (stat(path, &st) < 0 || st.st_size < 1024 * 1024)
			return op_fail(e, 400, "import %.200s: not a disk image of at least 1M", imp);
		if (json_object_get(req, "disk"))
			return op_fail(e, 400, "an imported VM's disk is the size of its image: no disk");
		for (const char *const *k = (const char *const[]){"ssh_key", "root_password", "ip",
								  "gw", "hostname", NULL}; *k; k++)
			if (json_object_get(req, *k))
				return op_fail(e, 400, "%s applies to templates; an imported "
					       "system keeps its own", *k);
		json_object_set_new(cfg, "import", json_string(path));
		*disk = (uint64_t)st.st_size;
		return 0;
	}
	if (strcmp(tmpl, "debian"))
		return op_fail(e, 400, "unknown VM template \"%s\" (debian)", tmpl);
	json_object_set_new(cfg, "template", json_string(tmpl));
	const char *host = cfg_str(req, "hostname") ? cfg_str(req, "hostname") : cfg_str(req, "name");
	if (!host || !kvz_valid_name(host) || strchr(host, '_'))
		return op_fail(e, 400, "bad hostname (letters, digits, '-' and '.')");
	json_object_set_new(cfg, "hostname", json_string(host));
	const char *ip = cfg_str(req, "ip"), *gw = cfg_str(req, "gw");
	if (ip && !ipv4_prefix_ok(ip, true))
		return op_fail(e, 400, "ip must be A.B.C.D/P, got \"%.64s\"", ip);
	if (gw && (!ip || !ipv4_prefix_ok(gw, false)))
		return op_fail(e, 400, "gw must be an address A.B.C.D and needs ip");
	if (ip)
		json_object_set_new(cfg, "guest_ip", json_string(ip));
	if (gw)
		json_object_set_new(cfg, "guest_gw", json_string(gw));
	if (secret_ok(req, "ssh_key", e) || secret_ok(req, "root_password", e))
		return -1;
	if (!*disk)
		*disk = 4ull << 30;
	return 0;
}

/* disk_format raw (default) or qcow2, disk_mode sparse (default) or fixed,
 * and disk_base: an image in the image directories under a qcow2 disk
 * (its size when none is given). */
static int vm_disk_format(const struct image_dirs *dirs, json_t *req, json_t *cfg,
			  struct op_error *e)
{
	const char *fmt = cfg_str(req, "disk_format"), *mode = cfg_str(req, "disk_mode");
	const char *base = cfg_str(req, "disk_base");
	char path[PATH_MAX];
	if (vm_disk_kind(dirs, &vm_disk0_keys, &fmt, &mode, base, path, sizeof(path), e))
		return -1;
	json_object_set_new(cfg, "disk_format", json_string(fmt));
	json_object_set_new(cfg, "disk_mode", json_string(mode));
	if (base)
		json_object_set_new(cfg, "disk_base", json_string(path));
	return 0;
}

/* "disks": every disk of a new VM in order. Disk 0 becomes the flat keys
 * the rest of the request is read by (in r, a copy of req); disks 1.. go
 * to cfg "disks" after a placeholder for disk 0 (the store fills it). */
static int vm_disk_list(const struct image_dirs *dirs, json_t *r, json_t *cfg,
			struct op_error *e)
{
	json_t *list = json_object_get(r, "disks");
	if (!list)
		return 0;
	if (!json_is_array(list) || !json_array_size(list) || json_array_size(list) > VM_DISKS_MAX)
		return op_fail(e, 400, "disks must be a list of 1 to %d disks", VM_DISKS_MAX);
	for (const char *const *k = (const char *const[]){"disk", "disk_format", "disk_mode",
							  "disk_base", NULL}; *k; k++)
		if (json_object_get(r, *k))
			return op_fail(e, 400, "give \"disks\" or \"%s\", not both", *k);
	if (cfg_str(r, "template") || cfg_str(r, "import"))
		return op_fail(e, 400, "a template's or an import's VM starts with its one disk; "
			       "add more once it is made (kvz set NAME --add-disk SIZE)");
	json_t *d0;
	if (vm_disk_parse(dirs, "disks[0]", json_array_get(list, 0), &d0, e))
		return -1;
	json_object_set(r, "disk", json_object_get(d0, "size"));
	json_object_set(r, "disk_format", json_object_get(d0, "format"));
	json_object_set(r, "disk_mode", json_object_get(d0, "mode"));
	if (json_object_get(d0, "base"))
		json_object_set(r, "disk_base", json_object_get(d0, "base"));
	json_decref(d0);
	json_t *out = json_array();
	json_array_append_new(out, json_object());
	for (size_t i = 1; i < json_array_size(list); i++) {
		char what[32];
		json_t *o;
		snprintf(what, sizeof(what), "disks[%zu]", i);
		if (vm_disk_parse(dirs, what, json_array_get(list, i), &o, e)) {
			json_decref(out);
			return -1;
		}
		json_array_append_new(out, o);
	}
	json_object_set_new(cfg, "disks", out);
	json_object_del(r, "disks");
	return 0;
}

static int vm_config_from(const struct image_dirs *dirs, json_t *req, json_t *cfg,
			  struct op_error *e);

int guest_config_vm(const struct image_dirs *dirs, json_t *req, json_t *cfg,
		    struct op_error *e)
{
	json_t *r = json_copy(req);
	int rc = vm_disk_list(dirs, r, cfg, e) ? -1 : vm_config_from(dirs, r, cfg, e);
	json_decref(r);
	return rc;
}

static int vm_config_from(const struct image_dirs *dirs, json_t *req, json_t *cfg,
			  struct op_error *e)
{
	static const char *const keys[] = {"name", "type", "kernel", "initrd", "cmdline",
		"memory", "cpus", "disk", "disk_mode", "disk_format", "disk_base", "bridge", "mac", "balloon", "autostart", "tags",
		"template", "import", "boot", "hostname", "ssh_key", "root_password", "ip", "gw",
		"cdrom", NULL};
	bool own_system = cfg_str(req, "template") || cfg_str(req, "import");
	bool media = json_object_get(req, "cdrom") != NULL;
	if (!own_system && (json_object_get(req, "ip") || json_object_get(req, "gw")))
		return op_fail(e, 400, "ip and gw apply to containers and VM templates; a VM with "
			       "a kernel of yours configures its own address");
	if (!own_system && !media && !cfg_str(req, "kernel"))
		return op_fail(e, 400, "a VM needs \"kernel\" (an absolute path), \"template\", "
			       "\"import\" or \"cdrom\"");
	if (cfg_check_keys(req, keys, e))
		return -1;
	uint64_t disk = 0;
	json_t *v = json_object_get(req, "disk");
	if (v && (!cfg_size(v, &disk) || disk < 1024 * 1024))
		return op_fail(e, 400, "bad disk size (at least 1M, e.g. \"8G\")");
	if (media ? install_media_config(dirs, req, cfg, e) :
	    own_system ? vm_source(dirs, req, cfg, &disk, e) : vm_images(dirs, req, cfg, e))
		return -1;
	if (cfg_str(req, "cmdline"))
		json_object_set_new(cfg, "cmdline", json_string(cfg_str(req, "cmdline")));
	/* An installer wants more than a kernel of the user's. */
	uint64_t mem = (media ? 1024ull : own_system ? 512ull : 256ull) << 20, soft;
	v = json_object_get(req, "memory");
	if (v && (!cfg_size_pair(v, &soft, &mem) || mem < (16ull << 20)))
		return op_fail(e, 400, "bad memory for a VM (a size of at least 16M, e.g. \"1G\")");
	if (cfg_check_memory_fits(mem, e))
		return -1;
	json_object_set_new(cfg, "memory", json_integer((json_int_t)mem));
	json_object_set_new(cfg, "memory_target", json_integer((json_int_t)mem));
	double cpus = 1;
	v = json_object_get(req, "cpus");
	if (v && (!cfg_cpus(v, &cpus) || cpus != (int)cpus || cpus > 64))
		return op_fail(e, 400, "bad cpus for a VM (a whole number from 1 to 64)");
	json_object_set_new(cfg, "cpus", json_integer((json_int_t)cpus));
	json_object_set_new(cfg, "disk_size", json_integer((json_int_t)disk));
	if (vm_disk_format(dirs, req, cfg, e))
		return -1;
	v = json_object_get(req, "balloon");
	json_object_set_new(cfg, "balloon", json_boolean(v ? json_is_true(v) : true));
	/* A template VM's address is written into its disk; kvzd's part is the
	 * bridge, as for a container. */
	json_t *net = json_pack("{}");
	for (const char *const *k = (const char *const[]){"bridge", "mac", NULL}; *k; k++)
		if (json_object_get(req, *k))
			json_object_set(net, *k, json_object_get(req, *k));
	if (cfg_str(req, "ip") && !cfg_str(req, "bridge"))
		json_object_set_new(net, "bridge", json_string("kvzbr0"));
	int rc = parse_net(net, cfg, false, e);
	json_decref(net);
	return rc;
}

/* "PATH[:rwm]" naming a char or block device node of the host. kvz-ct checks
 * again at each start (the node may have gone since). */
static bool device_ok(json_t *v)
{
	const char *s = json_string_value(v);
	if (!s || s[0] != '/')
		return false;
	char path[PATH_MAX];
	const char *colon = strchr(s, ':');
	size_t n = colon ? (size_t)(colon - s) : strlen(s);
	if (n >= sizeof(path) || (colon && (!colon[1] || strspn(colon + 1, "rwm") != strlen(colon + 1))))
		return false;
	memcpy(path, s, n);
	path[n] = 0;
	struct stat st;
	return stat(path, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode));
}

/* devices, seccomp, no_new_privs: passed to kvz-ct run as they are. */
static int parse_confine(json_t *req, json_t *cfg, struct op_error *e)
{
	json_t *v = json_object_get(req, "devices");
	if (v) {
		size_t i;
		json_t *d;
		if (!json_is_array(v) || json_array_size(v) > 32)
			return op_fail(e, 400, "devices must be an array of at most 32 \"PATH[:rwm]\"");
		json_array_foreach(v, i, d)
			if (!device_ok(d))
				return op_fail(e, 400, "bad device \"%s\" (a host char or block device node, "
					       "PATH[:rwm])", json_is_string(d) ? json_string_value(d) : "?");
		json_object_set(cfg, "devices", v);
	}
	const char *sec = cfg_str(req, "seccomp");
	struct stat st;
	if (sec && strcmp(sec, "default") && strcmp(sec, "off") &&
	    (sec[0] != '/' || stat(sec, &st) < 0 || !S_ISREG(st.st_mode) || access(sec, R_OK)))
		return op_fail(e, 400, "seccomp must be \"default\", \"off\" or the absolute path of "
			       "a readable profile file");
	if (sec)
		json_object_set_new(cfg, "seccomp", json_string(sec));
	if (json_is_true(json_object_get(req, "no_new_privs")))
		json_object_set_new(cfg, "no_new_privs", json_true());
	return 0;
}

int guest_config_ct(json_t *req, json_t *cfg, struct op_error *e)
{
	static const char *const keys[] = {"name", "type", "template", "memory", "cpus",
		"pids", "disk", "bridge", "ip", "gw", "command", "autostart", "privileged", "devices",
		"seccomp", "no_new_privs", "tags", NULL};
	if (cfg_check_keys(req, keys, e))
		return -1;
	const char *tmpl = cfg_str(req, "template");
	if (!tmpl)
		tmpl = "busybox";
	if (strcmp(tmpl, "busybox") && strcmp(tmpl, "debian"))
		return op_fail(e, 400, "unknown template \"%s\" (busybox or debian)", tmpl);
	json_object_set_new(cfg, "template", json_string(tmpl));
	json_t *priv = json_object_get(req, "privileged");
	if (priv && !json_is_boolean(priv))
		return op_fail(e, 400, "privileged must be true or false");
	json_object_set_new(cfg, "privileged", json_boolean(json_is_true(priv)));
	uint64_t soft = 0, hard = 0;
	json_t *v = json_object_get(req, "memory");
	if (v && !cfg_size_pair(v, &soft, &hard))
		return op_fail(e, 400, "bad memory \"%s\" (SOFT:HARD or SIZE, e.g. \"512M:1G\")",
			    json_is_string(v) ? json_string_value(v) : "?");
	if (cfg_check_memory_fits(hard, e))
		return -1;
	json_object_set_new(cfg, "memory_soft", json_integer((json_int_t)soft));
	json_object_set_new(cfg, "memory_hard", json_integer((json_int_t)hard));
	double cpus = 0;
	v = json_object_get(req, "cpus");
	if (v && !cfg_cpus(v, &cpus))
		return op_fail(e, 400, "bad cpus (a number above 0, e.g. 0.5)");
	json_object_set_new(cfg, "cpus", json_real(cpus));
	json_int_t pids = 0;
	v = json_object_get(req, "pids");
	if (v && (!json_is_integer(v) || (pids = json_integer_value(v)) < 1))
		return op_fail(e, 400, "bad pids (a whole number above 0)");
	json_object_set_new(cfg, "pids", json_integer(pids));
	uint64_t disk = 1ull << 30;
	v = json_object_get(req, "disk");
	if (v && (!cfg_size(v, &disk) || disk < (16ull << 20)))
		return op_fail(e, 400, "bad disk size (at least 16M, e.g. \"4G\")");
	json_object_set_new(cfg, "disk_size", json_integer((json_int_t)disk));
	v = json_object_get(req, "command");
	if (v) {
		if (!json_is_array(v) || !json_array_size(v) || json_array_size(v) > 32)
			return op_fail(e, 400, "command must be a non-empty array of strings");
		size_t i;
		json_t *s;
		json_array_foreach(v, i, s)
			if (!json_is_string(s))
				return op_fail(e, 400, "command must be a non-empty array of strings");
		json_object_set(cfg, "command", v);
	} else {
		json_object_set_new(cfg, "command", json_pack("[s]", "/sbin/init"));
	}
	if (parse_confine(req, cfg, e) < 0)
		return -1;
	return parse_net(req, cfg, true, e);
}
