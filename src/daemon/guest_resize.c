/* PATCH /v1/guests/NAME: resources of a guest, live through the
 * supervisor's QMP where it runs (balloon and block_resize for VMs,
 * kvz-ct "set" for containers), kept for the next start where it does not
 * (a stopped VM's disk grows in its image file: vm_disk_grow.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk_admission.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "guest_locks.h"
#include "guest_ops.h"
#include "install_media.h"
#include "media_live.h"
#include "parse.h"
#include "store.h"
#include "vm_disk_grow.h"
#include "vm_disks.h"

/* What goes together in a VM's PATCH: force with ejecting the CD, and
 * disk_index with a disk size. */
static int vm_set_checks(json_t *req, struct op_error *e)
{
	json_t *force = json_object_get(req, "force"), *idx = json_object_get(req, "disk_index");
	if (force && (!json_is_boolean(force) || !json_is_null(json_object_get(req, "cdrom"))))
		return op_fail(e, 400, "force is true or false, and goes with ejecting the CD "
			       "(cdrom null) only");
	if (idx && (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
		    json_integer_value(idx) >= VM_DISKS_MAX))
		return op_fail(e, 400, "disk_index is a disk number from 0 to %d", VM_DISKS_MAX - 1);
	if (idx && !json_object_get(req, "disk"))
		return op_fail(e, 400, "disk_index goes with disk (the new size of that disk)");
	return 0;
}

/* add_disk or remove_disk (vm_disks.h), alone. */
static int vm_set_disks(struct kvzd *d, json_t *g, json_t *req, struct op_error *e)
{
	const char *name = cfg_str(g, "name");
	json_t *cfg = json_deep_copy(json_object_get(g, "config"));
	char detail[200];
	pthread_mutex_lock(&d->disk_lock);   /* until the new disk is stored */
	int rc = vm_disks_change(d, g, req, cfg, detail, sizeof(detail), e);
	if (!rc && store_guest_set_config(d->store, name, cfg))
		rc = op_fail(e, 500, "store: cannot record the disks of %s", name);
	pthread_mutex_unlock(&d->disk_lock);
	if (!rc)
		store_event_add(d->store, name, "disks", detail);
	json_decref(cfg);
	return rc;
}

int guest_resize_vm(struct kvzd *d, json_t *g, json_t *req, struct op_error *e)
{
	static const char *const keys[] = {"memory", "cpus", "boot", "cdrom", "force", "disk",
		"disk_index", "add_disk", "remove_disk", NULL};
	if (cfg_check_keys(req, keys, e) || vm_set_checks(req, e))
		return -1;
	if (json_object_get(req, "add_disk") || json_object_get(req, "remove_disk"))
		return vm_set_disks(d, g, req, e);
	const char *name = cfg_str(g, "name");
	json_t *cfg = json_deep_copy(json_object_get(g, "config"));
	bool running = !strcmp(cfg_str(g, "state"), "running");
	char detail[200] = "", media[PATH_MAX + 100] = "";
	bool disk_locked = false;
	int rc = -1;
	/* For the next start, running or not: the installer's reboot, too;
	 * and live in a running VM (media_live.h). */
	bool had_cdrom = cfg_str(cfg, "cdrom") != NULL;
	if (install_media_in(req) &&
	    install_media_set(d->images, req, cfg, media, sizeof(media), e))
		goto out;
	if (running && media_live_apply(d, name, cfg_str(g, "qmp"), req, had_cdrom, cfg, media,
					sizeof(media), e))
		goto out;
	json_t *v = json_object_get(req, "memory");
	if (v) {
		uint64_t soft, mem;
		if (!cfg_size_pair(v, &soft, &mem) || mem < (16ull << 20)) {
			op_fail(e, 400, "bad memory (a size of at least 16M)");
			goto out;
		}
		uint64_t max = (uint64_t)json_integer_value(json_object_get(cfg, "memory"));
		char a[32], b[32];
		if (running) {
			if (!json_is_true(json_object_get(cfg, "balloon"))) {
				op_fail(e, 409, "%s has no balloon device: its memory can change only while stopped", name);
				goto out;
			}
			if (mem > max) {
				op_fail(e, 409, "%s: a running VM's memory can only shrink below its boot size %s (balloon); stop it to grow",
				     name, kvz_format_size(max, a, sizeof(a)));
				goto out;
			}
			json_t *args = json_pack("{s:I}", "value", (json_int_t)mem);
			int r = guest_qmp_call(name, cfg_str(g, "qmp"), "balloon", args, NULL, e);
			json_decref(args);
			if (r)
				goto out;
			json_object_set_new(cfg, "memory_target", json_integer((json_int_t)mem));
			snprintf(detail, sizeof(detail), "memory target %s (balloon)",
				 kvz_format_size(mem, a, sizeof(a)));
		} else {
			if (cfg_check_memory_fits(mem, e))
				goto out;
			json_object_set_new(cfg, "memory", json_integer((json_int_t)mem));
			json_object_set_new(cfg, "memory_target", json_integer((json_int_t)mem));
			snprintf(detail, sizeof(detail), "memory %s",
				 kvz_format_size(mem, b, sizeof(b)));
		}
	}
	v = json_object_get(req, "cpus");
	if (v) {
		double cpus;
		if (!cfg_cpus(v, &cpus) || cpus != (int)cpus || cpus > 64) {
			op_fail(e, 400, "bad cpus for a VM (a whole number from 1 to 64)");
			goto out;
		}
		if (running) {
			op_fail(e, 409, "%s: vCPUs of a running VM cannot change; stop it first", name);
			goto out;
		}
		json_object_set_new(cfg, "cpus", json_integer((json_int_t)cpus));
		size_t l = strlen(detail);
		snprintf(detail + l, sizeof(detail) - l, "%scpus %d", l ? ", " : "", (int)cpus);
	}
	/* Last: the only change that cannot be taken back once made. */
	v = json_object_get(req, "disk");
	if (v) {
		pthread_mutex_lock(&d->disk_lock);   /* until the size is stored */
		disk_locked = true;
		size_t idx = (size_t)json_integer_value(json_object_get(req, "disk_index"));
		if (vm_disk_grow(d, g, cfg, idx, v, running, detail, sizeof(detail), e))
			goto out;
	}
	store_guest_set_config(d->store, name, cfg);
	if (json_object_get(req, "memory") || json_object_get(req, "cpus") || v)
		store_event_add(d->store, name, "resized", detail);
	if (media[0])
		store_event_add(d->store, name, "media", media);
	rc = 0;
out:
	if (disk_locked)
		pthread_mutex_unlock(&d->disk_lock);
	json_decref(cfg);
	return rc;
}

int guest_resize_ct(struct kvzd *d, json_t *g, json_t *req, struct op_error *e)
{
	static const char *const keys[] = {"memory", "cpus", "pids", "disk", NULL};
	if (cfg_check_keys(req, keys, e))
		return -1;
	const char *name = cfg_str(g, "name");
	json_t *cfg = json_deep_copy(json_object_get(g, "config"));
	json_t *args = json_object();
	bool running = !strcmp(cfg_str(g, "state"), "running");
	bool disk_locked = false;
	int rc = -1;
	uint64_t soft, hard, disk;
	double cpus;
	json_t *v;
	if ((v = json_object_get(req, "memory"))) {
		if (!cfg_size_pair(v, &soft, &hard)) {
			op_fail(e, 400, "bad memory (SOFT:HARD or SIZE, e.g. \"512M:1G\")");
			goto out;
		}
		if (cfg_check_memory_fits(hard, e))
			goto out;
		char s[64];
		snprintf(s, sizeof(s), "%llu:%llu", (unsigned long long)soft, (unsigned long long)hard);
		json_object_set_new(args, "memory", json_string(s));
		json_object_set_new(cfg, "memory_soft", json_integer((json_int_t)soft));
		json_object_set_new(cfg, "memory_hard", json_integer((json_int_t)hard));
	}
	if ((v = json_object_get(req, "cpus"))) {
		if (!cfg_cpus(v, &cpus)) {
			op_fail(e, 400, "bad cpus (a number above 0, e.g. 0.5)");
			goto out;
		}
		json_object_set_new(args, "cpus", json_real(cpus));
		json_object_set_new(cfg, "cpus", json_real(cpus));
	}
	if ((v = json_object_get(req, "pids"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 1) {
			op_fail(e, 400, "bad pids (a whole number above 0)");
			goto out;
		}
		json_object_set(args, "pids", v);
		json_object_set(cfg, "pids", v);
	}
	if ((v = json_object_get(req, "disk"))) {
		if (!cfg_size(v, &disk) || disk < (16ull << 20)) {
			op_fail(e, 400, "bad disk size (at least 16M)");
			goto out;
		}
		if (!running) {
			op_fail(e, 409, "%s: a container's disk grows while it runs; start it first", name);
			goto out;
		}
		/* Held until the new size is stored (disk_admission.h). */
		pthread_mutex_lock(&d->disk_lock);
		disk_locked = true;
		if (disk_admit(d, name, &guest_ct_driver, disk, e))
			goto out;
		char s[32];
		snprintf(s, sizeof(s), "%llu", (unsigned long long)disk);
		json_object_set_new(args, "disk", json_string(s));
		json_object_set_new(cfg, "disk_size", json_integer((json_int_t)disk));
	}
	if (running && guest_qmp_call(name, cfg_str(g, "qmp"), "set", args, NULL, e))
		goto out;
	store_guest_set_config(d->store, name, cfg);
	char *detail = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
	store_event_add(d->store, name, "resized", detail);
	free(detail);
	rc = 0;
out:
	if (disk_locked)
		pthread_mutex_unlock(&d->disk_lock);
	json_decref(args);
	json_decref(cfg);
	return rc;
}

/* Tags are kvzd's own record, whatever the guest's state: checked before
 * anything changes, stored after the driver's part succeeded. */
static int set_tags(struct kvzd *d, const char *name, json_t *tags)
{
	json_t *g = store_guest_get(d->store, name);
	json_t *cfg = g ? json_deep_copy(json_object_get(g, "config")) : NULL;
	int rc = -1;
	if (cfg) {
		json_object_set(cfg, "tags", tags);
		rc = store_guest_set_config(d->store, name, cfg);
	}
	if (!rc) {
		char *list = json_dumps(tags, JSON_COMPACT);
		store_event_add(d->store, name, "tagged", list ? list : "");
		free(list);
	}
	json_decref(cfg);
	json_decref(g);
	return rc;
}

int guest_set(struct kvzd *d, const char *name, json_t *req, struct op_error *e)
{
	if (!json_is_object(req) || !json_object_size(req))
		return op_fail(e, 400, "the body must be a JSON object with what to change");
	json_t *tagged = json_object();
	if (cfg_tags(req, tagged, e)) {
		json_decref(tagged);
		return -1;
	}
	json_t *rest = json_copy(req);
	json_object_del(rest, "tags");
	guest_lock(d, name);
	json_t *g = guest_get_or_404(d, name, e);
	int rc = -1;
	if (g) {
		const char *state = cfg_str(g, "state");
		if (!json_object_size(rest))
			rc = 0;
		else if (strcmp(state, "running") && strcmp(state, "stopped") && strcmp(state, "crashed"))
			op_fail(e, 409, "guest %s is %s; try again", name, state);
		else
			rc = guest_driver_of(g)->set(d, g, rest, e);
	}
	json_t *tags = json_object_get(tagged, "tags");
	if (!rc && tags && set_tags(d, name, tags))
		rc = op_fail(e, 500, "store: cannot record the tags of %s", name);
	guest_unlock(d, name);
	json_decref(g);
	json_decref(rest);
	json_decref(tagged);
	return rc;
}
