/* Disks made for live migrations without shared storage
 * (migration_storage.h). */
#include "migration_storage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk_admission.h"
#include "guest_config.h"
#include "log.h"
#include "qcow2.h"
#include "storage.h"
#include "vm_disk_spec.h"
#include "vm_disks.h"

static bool is_qcow2(json_t *cfg)
{
	const char *fmt = cfg_str(cfg, "disk_format");
	return fmt && !strcmp(fmt, "qcow2");
}

int mig_storage_size(json_t *cfg, uint64_t *size, struct op_error *e)
{
	json_t *s = json_object_get(cfg, "disk_size");
	if (json_is_integer(s) && json_integer_value(s) > 0) {
		*size = (uint64_t)json_integer_value(s);
		return 0;
	}
	const char *path = cfg_str(cfg, "disk_path");
	char err[300];
	if (!path)
		return op_fail(e, 400, "the guest has no disk");
	if (is_qcow2(cfg)) {
		struct qcow2 *q;
		if (qcow2_open(path, -1, O_RDONLY, &q, err, sizeof(err)) < 0)
			return op_fail(e, 409, "disk %s: %s", path, err);
		*size = qcow2_size(q);
		qcow2_close(q);
		return 0;
	}
	struct stat st;
	if (stat(path, &st) < 0)
		return op_fail(e, 409, "disk %s: %s", path, strerror(errno));
	*size = (uint64_t)st.st_size;
	return 0;
}

static int make_file(const char *path, uint64_t size, bool qcow2, struct op_error *e)
{
	char err[400];
	if (qcow2) {
		struct qcow2_create_opts o = {size, 0, NULL, NULL};
		if (qcow2_create(path, &o, err, sizeof(err)) < 0) {
			unlink(path);
			return op_fail(e, 500, "cannot create the disk for the copy: %s", err);
		}
		return 0;
	}
	if (storage_create_image(path, size, false, err, sizeof(err)))
		return op_fail(e, 500, "%s", err);
	return 0;
}

/* Disks 1.. of cfg made empty at the paths place_extras() gave them,
 * each path appended to made; on failure the ones made here go again. */
static int make_extras(json_t *cfg, json_t *made, struct op_error *e)
{
	json_t *disks = json_object_get(cfg, "disks");
	for (size_t i = 1; i < json_array_size(disks); i++) {
		json_t *o = json_array_get(disks, i);
		const char *p = cfg_str(o, "path"), *fmt = cfg_str(o, "format");
		uint64_t size = (uint64_t)json_integer_value(json_object_get(o, "size"));
		if (!p || !size)
			return op_fail(e, 400, "disk %zu to copy needs its path and size", i);
		if (make_file(p, size, fmt && !strcmp(fmt, "qcow2"), e))
			return -1;
		json_array_append_new(made, json_string(p));
		json_object_del(o, "base");   /* the copy is whole */
	}
	return 0;
}

static void remove_listed(json_t *list)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v) {
		const char *p = json_string_value(v);
		if (p && unlink(p) < 0 && errno != ENOENT)
			kvz_warn("cannot remove %s: %s", p, strerror(errno));
	}
}

int mig_storage_create(struct kvzd *d, const char *name, const struct guest_driver *drv,
		       json_t *cfg, const char *where, struct op_error *e)
{
	char path[PATH_MAX];   /* where may be cfg's own string, replaced below */
	snprintf(path, sizeof(path), "%s", where);
	uint64_t size = (uint64_t)json_integer_value(json_object_get(cfg, "disk_size"));
	if (!size)
		return op_fail(e, 400, "a disk to copy needs its disk_size");
	json_t *made = json_array();
	/* The record comes later: every disk admitted at once under
	 * disk_lock and made at once, so that a concurrent create sees the
	 * files' promise. */
	pthread_mutex_lock(&d->disk_lock);
	int rc = disk_admit(d, name, drv, size + vm_disks_extra_bytes(cfg), e);
	if (rc == 0)
		rc = make_file(path, size, is_qcow2(cfg), e);
	if (rc == 0) {
		json_array_append_new(made, json_string(path));
		rc = make_extras(cfg, made, e);
	}
	if (rc)
		remove_listed(made);
	pthread_mutex_unlock(&d->disk_lock);
	if (rc) {
		json_decref(made);
		return -1;
	}
	json_object_set_new(cfg, "disk_path", json_string(path));
	json_object_set_new(cfg, "incoming_disks", made);
	json_object_del(cfg, "disk_base");
	return 0;
}

void mig_storage_remove(json_t *cfg)
{
	/* "incoming_disk": one disk, as a kvzd before several disks wrote. */
	const char *p = cfg_str(cfg, "incoming_disk");
	if (p && unlink(p) < 0 && errno != ENOENT)
		kvz_warn("cannot remove %s: %s", p, strerror(errno));
	remove_listed(json_object_get(cfg, "incoming_disks"));
}

int mig_storage_take_extras(struct kvzd *d, const char *name, json_t *cfg, struct op_error *e)
{
	json_t *in = json_object_get(cfg, "disks");
	size_t n = json_array_size(in);
	if (in && !json_is_array(in))
		return op_fail(e, 400, "\"disks\" must be a list");
	if (n > VM_DISKS_MAX)
		return op_fail(e, 400, "%s comes with %zu disks; a VM has at most %d", name, n,
			       VM_DISKS_MAX);
	json_t *out = json_array();
	json_array_append_new(out, json_object());   /* disk 0: the store's, from the flat keys */
	for (size_t i = 1; i < n; i++) {
		json_t *o = json_array_get(in, i), *spec, *parsed = NULL;
		char what[32];
		snprintf(what, sizeof(what), "disks[%zu]", i);
		const char *src = cfg_str(o, "path");
		const char *file = src ? strrchr(src, '/') : NULL;
		file = file ? file + 1 : src;
		if (!file || !vm_disk_extra_name_valid(file, name)) {
			json_decref(out);
			return op_fail(e, 400, "%s: the source's file must be %s@N.img", what, name);
		}
		/* Checked as a client's disk; the base (a path of the source's)
		 * is not taken: the header of a qcow2 names it anyway. */
		spec = json_object();
		for (const char *const *k = (const char *const[]){"size", "format", "mode", NULL}; *k; k++)
			if (json_object_get(o, *k))
				json_object_set(spec, *k, json_object_get(o, *k));
		int rc = vm_disk_parse(d->images, what, spec, &parsed, e);
		json_decref(spec);
		if (rc) {
			json_decref(out);
			return -1;
		}
		json_object_set_new(parsed, "src", json_string(file));
		json_array_append_new(out, parsed);
	}
	if (n > 1)
		json_object_set_new(cfg, "disks", out);
	else {
		json_decref(out);
		json_object_del(cfg, "disks");
	}
	return 0;
}

int mig_storage_place_extras(struct kvzd *d, const char *name, json_t *cfg, bool shared,
			     struct op_error *e)
{
	json_t *disks = json_object_get(cfg, "disks");
	for (size_t i = 1; i < json_array_size(disks); i++) {
		json_t *o = json_array_get(disks, i);
		char p[PATH_MAX];
		if (shared) {
			/* The source's image dir is this one: its very file. */
			snprintf(p, sizeof(p), "%s/images/%s", d->state_dir, cfg_str(o, "src"));
			if (access(p, R_OK | W_OK) < 0)
				return op_fail(e, 409, "disk %zu: %s is not in the shared image dir (%s)", i,
					       p, strerror(errno));
		} else {
			snprintf(p, sizeof(p), "%s/images/%s@%zu.img", d->state_dir, name, i);
			if (access(p, F_OK) == 0)
				return op_fail(e, 409, "%s already exists on this host", p);
		}
		json_object_set_new(o, "path", json_string(p));
		json_object_del(o, "src");
	}
	return 0;
}
