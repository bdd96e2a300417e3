#include "vm_disks.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argv_build.h"
#include "block.h"
#include "disk_admission.h"
#include "guest_driver.h"
#include "guest_ops.h"
#include "kvzd.h"
#include "parse.h"
#include "qcow2.h"
#include "storage.h"

size_t vm_disks_count(json_t *cfg)
{
	size_t n = json_array_size(json_object_get(cfg, "disks"));
	bool disk0 = cfg_str(cfg, "disk_path") ||
		     json_integer_value(json_object_get(cfg, "disk_size")) > 0;
	return n ? n : disk0;
}

bool vm_disk_at(json_t *cfg, size_t i, const char **path, uint64_t *size, bool *qcow2)
{
	json_t *o = i ? json_array_get(json_object_get(cfg, "disks"), i) : cfg;
	if (!o || (i == 0 && !vm_disks_count(cfg)))
		return false;
	const char *fmt = cfg_str(o, i ? "format" : "disk_format");
	*path = cfg_str(o, i ? "path" : "disk_path");
	*size = (uint64_t)json_integer_value(json_object_get(o, i ? "size" : "disk_size"));
	*qcow2 = fmt && !strcmp(fmt, "qcow2");
	return true;
}

void vm_disk_set_size(json_t *cfg, size_t i, uint64_t size)
{
	json_t *o = i ? json_array_get(json_object_get(cfg, "disks"), i) : cfg;
	json_object_set_new(o, i ? "size" : "disk_size", json_integer((json_int_t)size));
}

/* A qcow2 disk, over base when there is one (opened read-only here: its
 * format may be probed; its size is the disk's when none was asked). */
static int make_qcow2(const char *path, uint64_t *size, const char *base, struct op_error *e)
{
	char err[400];
	const char *base_fmt = NULL;
	if (base) {
		struct qcow2 *b;
		int fd = open(base, O_RDONLY | O_CLOEXEC);
		char magic[4] = {0};
		if (fd < 0 || pread(fd, magic, 4, 0) < 0) {
			if (fd >= 0)
				close(fd);
			return op_fail(e, 400, "disk_base %s: %s", base, strerror(errno));
		}
		bool is_qcow2 = !memcmp(magic, "QFI\xfb", 4);
		struct stat st;
		if (!is_qcow2 && fstat(fd, &st) == 0 && !*size)
			*size = (uint64_t)st.st_size;
		if (is_qcow2 && qcow2_open(base, fd, 0, &b, err, sizeof(err)) < 0) {
			close(fd);
			return op_fail(e, 400, "disk_base %s", err);
		}
		close(fd);
		/* Its own base would be a path nobody checked against the image
		 * directories: a template with a backing file is refused. */
		bool chained = is_qcow2 && qcow2_backing_name(b);
		if (is_qcow2) {
			*size = *size ? *size : qcow2_size(b);
			qcow2_close(b);
		}
		if (chained)
			return op_fail(e, 400, "disk_base %s has a backing file itself; flatten it first (kvz image convert)", base);
		base_fmt = is_qcow2 ? "qcow2" : "raw";
	}
	struct qcow2_create_opts o = {*size, 0, base, base_fmt};
	if (qcow2_create(path, &o, err, sizeof(err)) < 0)
		return op_fail(e, 500, "cannot create disk image: %s", err);
	return 0;
}

int vm_disk_make(struct kvzd *d, const char *path, uint64_t *size, bool qcow2, bool fixed,
		 const char *base, struct op_error *e)
{
	if (qcow2)
		return make_qcow2(path, size, base, e);
	char dir[300], err[400];
	snprintf(dir, sizeof(dir), "%s/images", d->state_dir);
	if (fixed && storage_free_bytes(dir) < *size)
		return op_fail(e, 409, "not enough space in %s for a fixed %llu-byte disk", dir,
			       (unsigned long long)*size);
	if (storage_create_image(path, *size, fixed, err, sizeof(err)))
		return op_fail(e, 500, "%s", err);
	return 0;
}

static bool path_in_use(json_t *disks, const char *path)
{
	size_t i;
	json_t *o;
	json_array_foreach(disks, i, o) {
		const char *p = cfg_str(o, "path");
		if (i && p && !strcmp(p, path))
			return true;
	}
	return false;
}

/* The first NAME@N.img neither another disk of the guest nor a file left
 * behind names: a removed disk's number is taken again only once gone. */
static int extra_path(struct kvzd *d, const char *name, json_t *disks, char *buf, size_t len,
		      struct op_error *e)
{
	for (int n = 1; n < 1000; n++) {
		snprintf(buf, len, "%s/images/%s@%d.img", d->state_dir, name, n);
		if (!path_in_use(disks, buf) && access(buf, F_OK) < 0 && errno == ENOENT)
			return 0;
	}
	return op_fail(e, 500, "no free disk file name for %s in %s/images", name, d->state_dir);
}

int vm_disks_make_extra(struct kvzd *d, const char *name, json_t *cfg, size_t from,
			struct op_error *e)
{
	json_t *disks = json_object_get(cfg, "disks");
	size_t first = from ? from : 1, i;
	for (i = first; i < json_array_size(disks); i++) {
		json_t *o = json_array_get(disks, i);
		char path[400];
		uint64_t size = (uint64_t)json_integer_value(json_object_get(o, "size"));
		const char *fmt = cfg_str(o, "format"), *mode = cfg_str(o, "mode");
		if (extra_path(d, name, disks, path, sizeof(path), e) ||
		    vm_disk_make(d, path, &size, fmt && !strcmp(fmt, "qcow2"),
				 mode && !strcmp(mode, "fixed"), cfg_str(o, "base"), e))
			break;
		json_object_set_new(o, "path", json_string(path));
		json_object_set_new(o, "size", json_integer((json_int_t)size));
	}
	if (i >= json_array_size(disks))
		return 0;
	while (i-- > first) {   /* the ones made here go again */
		json_t *o = json_array_get(disks, i);
		unlink(cfg_str(o, "path"));
		json_object_del(o, "path");
	}
	return -1;
}

int vm_disks_remove_extra(json_t *cfg, size_t from, struct op_error *e)
{
	json_t *disks = json_object_get(cfg, "disks");
	for (size_t i = from ? from : 1; i < json_array_size(disks); i++) {
		const char *p = cfg_str(json_array_get(disks, i), "path");
		if (p && unlink(p) < 0 && errno != ENOENT)
			return op_fail(e, 500, "cannot remove %s: %s", p, strerror(errno));
	}
	return 0;
}

uint64_t vm_disks_extra_bytes(json_t *cfg)
{
	json_t *disks = json_object_get(cfg, "disks");
	uint64_t sum = 0;
	for (size_t i = 1; i < json_array_size(disks); i++)
		sum += (uint64_t)json_integer_value(json_object_get(json_array_get(disks, i), "size"));
	return sum;
}

void vm_disks_argv(json_t *cfg, struct argv *a)
{
	json_t *disks = json_object_get(cfg, "disks");
	for (size_t i = 1; i < json_array_size(disks); i++) {
		json_t *o = json_array_get(disks, i);
		const char *p = cfg_str(o, "path"), *fmt = cfg_str(o, "format");
		if (!p)
			continue;
		arg(a, "--disk");
		/* Raw is kvz-vmm's default; it never probes a writable image. */
		if (fmt && !strcmp(fmt, "qcow2"))
			arg(a, "%s,format=qcow2", p);
		else
			arg(a, "%s", p);
	}
}

static bool stopped(json_t *g)
{
	const char *st = cfg_str(g, "state");
	return st && (!strcmp(st, "stopped") || !strcmp(st, "crashed"));
}

/* The new disk's file: disk 0's own for a VM without one, else the next
 * NAME@N.img. */
static int add_path(struct kvzd *d, const char *name, json_t *cfg, char *buf, size_t len,
		    struct op_error *e)
{
	if (vm_disks_count(cfg)) {
		if (!json_is_array(json_object_get(cfg, "disks")))
			return op_fail(e, 500, "%s: its disk list is missing", name);
		return extra_path(d, name, json_object_get(cfg, "disks"), buf, len, e);
	}
	guest_image_path(d, name, buf, len);
	if (access(buf, F_OK) == 0)
		return op_fail(e, 409, "%s already exists", buf);
	return 0;
}

static int add_disk(struct kvzd *d, json_t *g, json_t *spec, json_t *cfg, char *detail,
		    size_t len, struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	size_t n = vm_disks_count(cfg);
	json_t *o;
	char path[400], a[32];
	if (n >= VM_DISKS_MAX)
		return op_fail(e, 409, "%s has %zu disks, the most a VM has", name, n);
	if (vm_disk_parse(d->images, "add_disk", spec, &o, e))
		return -1;
	uint64_t size = (uint64_t)json_integer_value(json_object_get(o, "size"));
	const char *fmt = cfg_str(o, "format"), *base = cfg_str(o, "base");
	if (add_path(d, name, cfg, path, sizeof(path), e) ||
	    disk_admit_at(d, name, &guest_vm_driver, path, size, e) ||
	    vm_disk_make(d, path, &size, !strcmp(fmt, "qcow2"), !strcmp(cfg_str(o, "mode"), "fixed"),
			 base, e)) {
		json_decref(o);
		return -1;
	}
	json_object_set_new(o, "path", json_string(path));
	json_object_set_new(o, "size", json_integer((json_int_t)size));
	snprintf(detail, len, "disk %zu added: %s %s", n, kvz_format_size(size, a, sizeof(a)), fmt);
	if (n) {
		json_array_append_new(json_object_get(cfg, "disks"), o);
	} else {   /* disk 0: its flat keys (the store makes the list) */
		json_object_set_new(cfg, "disk_path", json_string(path));
		json_object_set_new(cfg, "disk_size", json_integer((json_int_t)size));
		json_object_set_new(cfg, "disk_format", json_string(fmt));
		json_object_set(cfg, "disk_mode", json_object_get(o, "mode"));
		if (base)
			json_object_set_new(cfg, "disk_base", json_string(base));
		json_decref(o);   /* fmt and base pointed into it */
	}
	return 0;
}

static int remove_disk(json_t *g, json_t *v, json_t *cfg, char *detail, size_t len,
		       struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	size_t n = vm_disks_count(cfg);
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return op_fail(e, 400, "remove_disk takes a disk number (1 for the second disk)");
	json_int_t i = json_integer_value(v);
	if (i == 0)
		return op_fail(e, 400, "disk 0 holds %s's system and stays; remove disks 1.. only", name);
	if ((size_t)i >= n)
		return op_fail(e, 409, "%s has no disk %lld (it has %zu)", name, (long long)i, n);
	json_t *disks = json_object_get(cfg, "disks");
	const char *p = cfg_str(json_array_get(disks, (size_t)i), "path");
	if (p && unlink(p) < 0 && errno != ENOENT)
		return op_fail(e, 500, "cannot remove %s: %s", p, strerror(errno));
	json_array_remove(disks, (size_t)i);
	snprintf(detail, len, "disk %lld removed", (long long)i);
	return 0;
}

int vm_disks_change(struct kvzd *d, json_t *g, json_t *req, json_t *cfg, char *detail,
		    size_t len, struct op_error *e)
{
	json_t *add = json_object_get(req, "add_disk"), *rm = json_object_get(req, "remove_disk");
	if (json_object_size(req) != 1)
		return op_fail(e, 400, "add_disk and remove_disk go alone, one at a time");
	if (!stopped(g))
		return op_fail(e, 409, "%s is %s: disks are added and removed while it is stopped "
			       "(no live hotplug)", cfg_str(g, "name"), cfg_str(g, "state"));
	return add ? add_disk(d, g, add, cfg, detail, len, e) : remove_disk(g, rm, cfg, detail, len, e);
}
