/* The VM driver: kvz-vmm supervisors, raw or qcow2 disk images under images/. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "argv_build.h"
#include "guest_config.h"
#include "guest_driver.h"
#include "hostinfo.h"
#include "install_media.h"
#include "parse.h"
#include "vm_cmdline.h"
#include "vm_create.h"
#include "vm_disks.h"

static int vm_config(struct kvzd *d, json_t *req, json_t *cfg, struct op_error *e)
{
	return guest_config_vm(d->images, req, cfg, e);
}

static bool vm_disk_qcow2(json_t *cfg)
{
	const char *fmt = cfg_str(cfg, "disk_format");
	return fmt && !strcmp(fmt, "qcow2");
}

/* Disk 0 (STATE/images/NAME.img), then disks 1.. (vm_disks.h); all or
 * none. */
static int vm_create_storage(struct kvzd *d, const char *name, json_t *cfg,
			     struct op_error *e)
{
	uint64_t size = (uint64_t)json_integer_value(json_object_get(cfg, "disk_size"));
	if (vm_create_is_job(cfg))
		return 0; /* the vm-create job makes it */
	const char *base = cfg_str(cfg, "disk_base");
	bool qcow2 = vm_disk_qcow2(cfg);
	if (!size && !(qcow2 && base))
		return 0;
	char path[320];
	guest_image_path(d, name, path, sizeof(path));
	if (vm_disk_make(d, path, &size, qcow2, !strcmp(cfg_str(cfg, "disk_mode"), "fixed"),
			 base, e))
		return -1;
	if (vm_disks_make_extra(d, name, cfg, 1, e)) {
		unlink(path);
		return -1;
	}
	json_object_set_new(cfg, "disk_path", json_string(path));
	json_object_set_new(cfg, "disk_size", json_integer((json_int_t)size));
	return 0;
}

static int vm_remove_storage(struct kvzd *d, const char *name, json_t *cfg,
			     struct op_error *e)
{
	char path[320];
	const char *disk = cfg_str(cfg, "disk_path");
	if (!disk) {
		guest_image_path(d, name, path, sizeof(path));
		disk = path;
	}
	vm_create_remove_files(d, name);
	if (vm_disks_remove_extra(cfg, 1, e))
		return -1;
	if (unlink(disk) < 0 && errno != ENOENT)
		return op_fail(e, 500, "cannot remove %s: %s", disk, strerror(errno));
	return 0;
}

/* Again at each start: the operator may have narrowed --images-dir since
 * the VM was created, or the file may have been replaced by a symlink.
 * Disks 1.. are kvzd's own files: still plain files, not a link, device
 * or FIFO put in their place. */
static int vm_images_allowed(struct kvzd *d, json_t *cfg, struct op_error *e)
{
	char path[PATH_MAX];
	json_t *disks = json_object_get(cfg, "disks");
	for (size_t i = 1; i < json_array_size(disks); i++) {
		const char *p = cfg_str(json_array_get(disks, i), "path");
		struct stat st;
		if (!p || lstat(p, &st) < 0 || !S_ISREG(st.st_mode))
			return op_fail(e, 409, "disk %zu (%s) is not a plain file of kvzd's: refused",
				       i, p ? p : "never made");
	}
	for (const char *const *k = (const char *const[]){"kernel", "initrd", NULL}; *k; k++) {
		const char *p = cfg_str(cfg, *k);
		if (p && cfg_image_path(d->images, *k, p, path, sizeof(path), e)) {
			e->status = 409;
			return -1;
		}
	}
	return 0;
}

/* The ISO checked again and opened: vm_argv() hands this very file to
 * kvz-vmm (cfg "cdrom_fd", not stored). */
static int vm_cdrom_open(struct kvzd *d, json_t *cfg, struct op_error *e)
{
	const char *iso = cfg_str(cfg, "cdrom");
	char real[PATH_MAX];
	if (!iso)
		return 0;
	int fd = install_media_open(d->images, iso, real, sizeof(real), e);
	if (fd < 0) {
		e->status = 409;
		return -1;
	}
	json_object_set_new(cfg, "cdrom_fd", json_integer(fd));
	return 0;
}

static int vm_prepare_start(struct kvzd *d, const char *name, json_t *cfg, const char *qmp,
			    struct op_error *e)
{
	if (vm_images_allowed(d, cfg, e) || vm_boot_prepare(d, name, cfg, e))
		return -1;
	struct host_mem m;
	uint64_t need = (uint64_t)json_integer_value(json_object_get(cfg, "memory"));
	if (host_meminfo(&m) == 0 && need > m.available) {
		char a[32], b[32];
		return op_fail(e, 409, "not enough host memory: %s needs %s, %s available",
			       name, kvz_format_size(need, a, sizeof(a)),
			       kvz_format_size(m.available, b, sizeof(b)));
	}
	unlink(qmp);
	return vm_cdrom_open(d, cfg, e); /* last: nothing fails after it */
}

/* The kernel the user named, the one vm_boot_prepare() took out of the
 * disk (root= on its partition unless a cmdline is given), or the
 * firmware (kvz-vmm --firmware, issue 14 §2) with its boot order: disk or
 * cdrom first, or its own for boot "firmware". */
static void vm_boot_argv(json_t *cfg, struct argv *a)
{
	const char *boot = cfg_str(cfg, "boot");
	if (boot && strcmp(boot, "direct")) {
		arg(a, "--firmware");
		arg(a, "bios");
		if (strcmp(boot, "firmware")) {
			arg(a, "--boot");
			arg(a, "%s", boot);
		}
		return;
	}
	const char *kernel = cfg_str(cfg, "kernel") ? cfg_str(cfg, "kernel") : cfg_str(cfg, "boot_kernel");
	const char *initrd = cfg_str(cfg, "kernel") ? cfg_str(cfg, "initrd") : cfg_str(cfg, "boot_initrd");
	arg(a, "--kernel");
	arg(a, "%s", kernel ? kernel : "");
	if (initrd) {
		arg(a, "--initrd");
		arg(a, "%s", initrd);
	}
	if (cfg_str(cfg, "cmdline")) {
		arg(a, "--cmdline");
		arg(a, "%s", cfg_str(cfg, "cmdline"));
	} else if (cfg_str(cfg, "boot_root")) {
		arg(a, "--cmdline");
		arg(a, KVZ_VM_CMDLINE_HEAD "%s" KVZ_VM_CMDLINE_TAIL, cfg_str(cfg, "boot_root"));
	}
}

static void vm_argv(struct kvzd *d, const char *name, json_t *cfg, const char *qmp,
		    const char *console, const char *const *extra, struct argv *a)
{
	arg(a, "%s", d->vmm_bin);
	arg(a, "--name");
	arg(a, "%s", name);
	vm_boot_argv(cfg, a);
	arg(a, "--memory");
	arg(a, "%lld", (long long)json_integer_value(json_object_get(cfg, "memory")));
	arg(a, "--cpus");
	arg(a, "%lld", (long long)json_integer_value(json_object_get(cfg, "cpus")));
	arg(a, "--qmp");
	arg(a, "%s", qmp);
	arg(a, "--console-socket");
	arg(a, "%s", console);
	if (cfg_str(cfg, "disk_path")) {
		arg(a, "--disk");
		/* Raw is kvz-vmm's default; it never probes a writable image. */
		if (vm_disk_qcow2(cfg))
			arg(a, "%s,format=qcow2", cfg_str(cfg, "disk_path"));
		else
			arg(a, "%s", cfg_str(cfg, "disk_path"));
	}
	vm_disks_argv(cfg, a);
	json_t *cdrom_fd = json_object_get(cfg, "cdrom_fd");
	if (cdrom_fd) {
		a->keep_fd = (int)json_integer_value(cdrom_fd);
		arg(a, "--cdrom");
		arg(a, "/proc/self/fd/%d", a->keep_fd);
		json_object_del(cfg, "cdrom_fd");
	} else if (json_is_true(json_object_get(cfg, "cdrom_drive"))) {
		arg(a, "--cdrom");
		arg(a, "%s", "");   /* the drive, empty (install_media.c) */
	}
	if (cfg_str(cfg, "bridge")) {
		/* Tap names are at most 15 bytes. */
		char tap[16];
		snprintf(tap, sizeof(tap), "kvz%.12s", name);
		arg(a, "--net");
		if (cfg_str(cfg, "mac"))
			arg(a, "tap=%s,bridge=%s,mac=%s", tap, cfg_str(cfg, "bridge"),
			    cfg_str(cfg, "mac"));
		else
			arg(a, "tap=%s,bridge=%s", tap, cfg_str(cfg, "bridge"));
	}
	if (json_is_true(json_object_get(cfg, "balloon")))
		arg(a, "--balloon");
	/* A system of its own gets entropy from the host (virtio-rng), as a
	 * cloud image expects; without it sshd waited minutes at boot. */
	if (cfg_str(cfg, "boot"))
		arg(a, "--rng");
	for (; extra && *extra; extra++)
		arg(a, "%s", *extra);
}

/* As virsh shutdown: the ACPI power button, then the guest's own shutdown;
 * a guest that ignores it is quit (by the caller) after the timeout. */
static void vm_request_stop(const char *name, const char *qmp, pid_t pid,
			    unsigned long long start, int timeout_s, const char **how)
{
	struct op_error ignored;
	if (guest_qmp_call(name, qmp, "system_powerdown", NULL, NULL, &ignored) == 0 &&
	    !guest_wait_gone(pid, start, timeout_s * 1000, NULL))
		*how = "the guest ignored the power button: quit";
}

const struct guest_driver guest_vm_driver = {
	.kind = GUEST_VM,
	.type = "vm",
	.prog = "kvz-vmm",
	.disk_dir = "images",
	.reserves_memory = true,
	.config = vm_config,
	.create_storage = vm_create_storage,
	.remove_storage = vm_remove_storage,
	.prepare_start = vm_prepare_start,
	.argv = vm_argv,
	.request_stop = vm_request_stop,
	.set = guest_resize_vm,
	.sample = monitor_sample_vm,
	.disk_file = guest_image_path,
	.migrate_save = vm_migrate_save,
	.migrate_resume = vm_migrate_resume,
	.migrate_start = vm_migrate_start,
	.migrate_send = vm_migrate_send,
	.migrate_listen = vm_migrate_listen,
	.migrate_receive = vm_migrate_receive,
};
