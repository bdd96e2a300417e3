/* Install media: the ISO a VM boots its installer from, and its boot order. */
#include "install_media.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_dirs.h"
#include "iso_image.h"

int install_media_open(const struct image_dirs *dirs, const char *path, char *real,
		       size_t reallen, struct op_error *e)
{
	int fd = image_dirs_open_file(dirs, path, real, reallen);
	if (fd < 0)
		return cfg_image_refused(dirs, "cdrom", path, e);
	uint64_t size;
	char why[128];
	if (iso_image_check(fd, &size, why, sizeof(why)) < 0) {
		close(fd);
		return op_fail(e, 400, "cdrom %.200s: %s", path, why);
	}
	return fd;
}

/* Checks path and records its symlink-free form in cfg. The VM keeps its
 * CD-ROM drive from then on, empty once ejected ("cdrom_drive"), as a real
 * machine does: the devices after it keep their PCI slots (an installed
 * system's interface names depend on them) and a medium can go in live. */
static int attach(const struct image_dirs *dirs, const char *path, json_t *cfg,
		  struct op_error *e)
{
	char real[PATH_MAX];
	int fd = install_media_open(dirs, path, real, sizeof(real), e);
	if (fd < 0)
		return -1;
	close(fd);
	json_object_set_new(cfg, "cdrom", json_string(real));
	json_object_set_new(cfg, "cdrom_drive", json_true());
	return 0;
}

static bool one_of(const char *s, const char *const *list)
{
	for (; s && *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

int install_media_config(const struct image_dirs *dirs, json_t *req, json_t *cfg,
			 struct op_error *e)
{
	static const char *const firmware_boots[] = {"cdrom", "disk", "firmware", NULL};
	const char *iso = cfg_str(req, "cdrom");
	if (!iso)
		return op_fail(e, 400, "cdrom must be the absolute path of an ISO image");
	for (const char *const *k = (const char *const[]){"kernel", "initrd", "cmdline", "template",
							  "import", NULL}; *k; k++)
		if (json_object_get(req, *k))
			return op_fail(e, 400, "%s and cdrom exclude each other: a VM installed "
				       "from an ISO boots through the firmware", *k);
	const char *boot = json_object_get(req, "boot") ? cfg_str(req, "boot") : "cdrom";
	if (!one_of(boot, firmware_boots))
		return op_fail(e, 400, "boot of a VM with install media must be \"cdrom\", "
			       "\"disk\" or \"firmware\"");
	if (!strcmp(boot, "disk") && !json_object_get(req, "disk"))
		return op_fail(e, 400, "boot disk needs a disk");
	json_object_set_new(cfg, "boot", json_string(boot));
	return attach(dirs, iso, cfg, e);
}

bool install_media_in(json_t *req)
{
	return json_object_get(req, "cdrom") || json_object_get(req, "boot");
}

static void say(char *detail, size_t len, const char *what, const char *value)
{
	size_t at = strlen(detail);
	snprintf(detail + at, len - at, "%s%s %s", at ? ", " : "", what, value);
}

/* Ejecting the CD a VM boots first leaves it booting its disk. */
static void eject(json_t *cfg, char *detail, size_t len)
{
	json_object_del(cfg, "cdrom");
	say(detail, len, "cdrom", "ejected");
	const char *boot = cfg_str(cfg, "boot");
	if (boot && !strcmp(boot, "cdrom")) {
		const char *next = cfg_str(cfg, "disk_path") ? "disk" : "firmware";
		json_object_set_new(cfg, "boot", json_string(next));
		say(detail, len, "boot", next);
	}
}

static int set_boot(const char *boot, json_t *cfg, char *detail, size_t len, struct op_error *e)
{
	static const char *const boots[] = {"direct", "firmware", "disk", "cdrom", NULL};
	if (!one_of(boot, boots))
		return op_fail(e, 400, "boot must be \"direct\", \"firmware\", \"disk\" or \"cdrom\"");
	if (!cfg_str(cfg, "boot"))
		return op_fail(e, 400, "this VM boots the kernel it names: boot applies to VMs with "
			       "a system of their own (template, import, cdrom)");
	if (!strcmp(boot, "cdrom") && !cfg_str(cfg, "cdrom"))
		return op_fail(e, 409, "boot cdrom needs a CD-ROM: attach an ISO (cdrom) first");
	if ((!strcmp(boot, "disk") || !strcmp(boot, "direct")) && !cfg_str(cfg, "disk_path"))
		return op_fail(e, 409, "boot %s needs a disk, and this VM has none", boot);
	json_object_set_new(cfg, "boot", json_string(boot));
	say(detail, len, "boot", boot);
	return 0;
}

int install_media_set(const struct image_dirs *dirs, json_t *req, json_t *cfg, char *detail,
		      size_t detaillen, struct op_error *e)
{
	json_t *iso = json_object_get(req, "cdrom"), *boot = json_object_get(req, "boot");
	detail[0] = 0;
	if (iso && !json_is_null(iso) && !json_is_string(iso))
		return op_fail(e, 400, "cdrom must be the path of an ISO image, or null to eject it");
	if (boot && !json_is_string(boot))
		return op_fail(e, 400, "boot must be \"direct\", \"firmware\", \"disk\" or \"cdrom\"");
	if (json_is_string(iso)) {
		if (attach(dirs, json_string_value(iso), cfg, e))
			return -1;
		say(detail, detaillen, "cdrom", cfg_str(cfg, "cdrom"));
	} else if (iso && cfg_str(cfg, "cdrom")) {
		eject(cfg, detail, detaillen);
	}
	return boot ? set_boot(json_string_value(boot), cfg, detail, detaillen, e) : 0;
}
