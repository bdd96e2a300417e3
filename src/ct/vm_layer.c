/* The cached VM layer of a template (vm_image.h): the template's tree plus
 * a kernel and the machine's basics, as a partitioned ext4 disk image. */
#include "vm_image.h"

#include "archiver.h"
#include "part_table.h"
#include "template.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LAYER_PACKAGES "linux-image-amd64 udev openssh-server ifupdown isc-dhcp-client acpid"

/* What a VM does not need of the kernel's modules and the docs: about
 * 250 MB less to copy per VM. dpkg honours it for later upgrades too. */
static const char dpkg_excludes[] =
	"path-exclude=/usr/share/doc/*\n"
	"path-exclude=/usr/share/man/*\n"
	"path-exclude=/usr/share/locale/*\n"
	"path-exclude=/lib/firmware/*\n"
	"path-exclude=/usr/lib/firmware/*\n"
	"path-exclude=/lib/modules/*/kernel/sound/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/gpu/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/media/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/net/wireless/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/net/ethernet/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/net/can/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/infiniband/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/staging/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/bluetooth/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/usb/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/iio/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/isdn/*\n"
	"path-exclude=/lib/modules/*/kernel/drivers/mtd/*\n"
	"path-exclude=/lib/modules/*/kernel/net/bluetooth/*\n"
	"path-exclude=/lib/modules/*/kernel/net/wireless/*\n"
	"path-exclude=/lib/modules/*/kernel/net/mac80211/*\n";

/* sysvinit: the container template's inittab plus a getty on the serial
 * console (the only console kvz-vmm has) and Ctrl-Alt-Del. */
static const char vm_inittab[] =
	"id:2:initdefault:\n"
	"si::sysinit:/etc/init.d/rcS\n"
	"l0:0:wait:/etc/init.d/rc 0\n"
	"l1:1:wait:/etc/init.d/rc 1\n"
	"l2:2:wait:/etc/init.d/rc 2\n"
	"l6:6:wait:/etc/init.d/rc 6\n"
	"ca:12345:ctrlaltdel:/sbin/shutdown -t1 -a -r now\n"
	"pf::powerwait:/sbin/init 0\n"
	"T0:2345:respawn:/sbin/getty -L ttyS0 115200 vt100\n";

static const struct {
	const char *path, *text;
} layer_files[] = {
	{"etc/dpkg/dpkg.cfg.d/kvz-vm", dpkg_excludes},
	/* A small initramfs with what a kvz VM's root needs, instead of
	 * "most" (every storage driver); virtio-rng at once, or the first
	 * getrandom() (sshd's) can wait minutes for entropy in a VM. */
	{"etc/initramfs-tools/conf.d/kvz-vm", "MODULES=list\n"},
	{"usr/share/initramfs-tools/modules.d/kvz-vm",
	 "virtio_pci\nvirtio_blk\nvirtio_net\nvirtio_rng\next4\ncrc32c_generic\n"},
	{"etc/fstab", "LABEL=kvzroot / ext4 errors=remount-ro 0 1\n"},
	{"etc/inittab", vm_inittab},
};

static int write_layer_files(const char *root, char *err, size_t len)
{
	for (size_t i = 0; i < sizeof(layer_files) / sizeof(layer_files[0]); i++) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s", root, layer_files[i].path);
		char *slash = strrchr(p, '/');
		*slash = 0;
		if (mkdir_p(p, 0755, err, len) < 0)
			return -1;
		*slash = '/';
		if (write_text(p, layer_files[i].text, err, len) < 0)
			return -1;
	}
	return 0;
}

/* apt in a chroot of its own mount namespace: /dev and /proc mounted there
 * vanish with it, whatever happens. */
static int install_packages(const char *root, char *err, size_t len)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/etc/resolv.conf", root);
	const char *cp[] = {"cp", "/etc/resolv.conf", p, NULL};
	if (path_exists("/etc/resolv.conf") && run_quiet(cp, err, len) < 0)
		return -1;
	char script[PATH_MAX * 2 + 512];
	snprintf(script, sizeof(script),
		 "mount --bind /dev '%s/dev' && mount -t proc proc '%s/proc' && "
		 "chroot '%s' sh -c 'export DEBIAN_FRONTEND=noninteractive; "
		 "apt-get -q update && apt-get -q -y --no-install-recommends "
		 "-o Dpkg::Options::=--force-confold install " LAYER_PACKAGES " >&2 && "
		 "apt-get clean && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_* /etc/resolv.conf'",
		 root, root, root);
	const char *argv[] = {"unshare", "--mount", "--propagation", "private", "sh", "-c",
			      script, NULL};
	return run_quiet(argv, err, len);
}

/* Predictable interface names would depend on the PCI slot: a VM's one
 * NIC is eth0, whatever boots it. */
static int layer_links(const char *root, char *err, size_t len)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/etc/udev/rules.d", root);
	if (mkdir_p(p, 0755, err, len) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/etc/udev/rules.d/80-net-setup-link.rules", root);
	if (symlink("/dev/null", p) < 0 && errno != EEXIST) {
		snprintf(err, len, "cannot link %s: %s", p, strerror(errno));
		return -1;
	}
	return 0;
}

/* nftw() passes no argument to its callback: the sum lives here, used by
 * one build at a time (vm_layer_ensure holds the cache lock). */
static uint64_t tree_bytes;

static int count_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)path, (void)type, (void)ftw;
	tree_bytes += (uint64_t)st->st_blocks * 512 + 4096;
	return 0;
}

/* A file system with a quarter free over what the tree takes, behind a
 * 1 MiB gap that keeps the partition aligned and leaves room for a boot
 * loader. */
static int make_disk(const char *tree, const char *img, char *err, size_t len)
{
	tree_bytes = 0;
	if (nftw(tree, count_one, 32, FTW_PHYS | FTW_MOUNT) < 0) {
		snprintf(err, len, "cannot measure %s: %s", tree, strerror(errno));
		return -1;
	}
	uint64_t fs = (tree_bytes + tree_bytes / 4 + (128ull << 20)) & ~((1ull << 20) - 1);
	int fd = open(img, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)(VM_IMAGE_PART_OFFSET + fs)) < 0) {
		snprintf(err, len, "cannot create %s: %s", img, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	uint8_t mbr[PART_SECTOR] = {0};
	part_table_write_mbr(mbr, 0x6b767a30, VM_IMAGE_PART_OFFSET / PART_SECTOR,
			     (uint32_t)(fs / PART_SECTOR));
	ssize_t w = pwrite(fd, mbr, sizeof(mbr), 0);
	close(fd);
	if (w != (ssize_t)sizeof(mbr)) {
		snprintf(err, len, "cannot write the partition table of %s", img);
		return -1;
	}
	char off[64], blocks[32];
	snprintf(off, sizeof(off), "offset=%u", VM_IMAGE_PART_OFFSET);
	snprintf(blocks, sizeof(blocks), "%lluk", (unsigned long long)(fs >> 10));
	const char *mkfs[] = {"mkfs.ext4", "-q", "-F", "-L", "kvzroot", "-d", tree, "-E", off,
			      img, blocks, NULL};
	return run_quiet(mkfs, err, len);
}

/* Build directories a killed build left behind (under the lock: none is
 * in use). */
static void remove_stale(const char *cache_dir, const char *prefix)
{
	DIR *d = opendir(cache_dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			char p[PATH_MAX];
			snprintf(p, sizeof(p), "%s/%s", cache_dir, e->d_name);
			rm_rf(p);
		}
	if (d)
		closedir(d);
}

static int build_layer(const char *template, const char *cache_dir, const char *out,
		       vm_image_progress progress, char *err, size_t len)
{
	char tar[PATH_MAX], tree[PATH_MAX], part[PATH_MAX], prefix[128];
	progress("template", 0, 0);
	if (template_ensure(template, cache_dir, tar, sizeof(tar), err, len) < 0)
		return -1;
	snprintf(prefix, sizeof(prefix), "%s-vm.build.", template);
	remove_stale(cache_dir, prefix);
	snprintf(tree, sizeof(tree), "%s/%sXXXXXX", cache_dir, prefix);
	if (!mkdtemp(tree)) {
		snprintf(err, len, "cannot create a build directory in %s: %s", cache_dir,
			 strerror(errno));
		return -1;
	}
	snprintf(part, sizeof(part), "%s.img", tree);
	progress("layer", 0, 0);
	int rc = archiver_unpack(tar, tree, err, len);
	if (rc == 0)
		rc = write_layer_files(tree, err, len);
	/* The link before the kernel's package, whose initramfs takes it. */
	if (rc == 0)
		rc = layer_links(tree, err, len);
	if (rc == 0)
		rc = install_packages(tree, err, len);
	if (rc == 0)
		rc = make_disk(tree, part, err, len);
	if (rc == 0 && rename(part, out) < 0) {
		snprintf(err, len, "cannot store %s: %s", out, strerror(errno));
		rc = -1;
	}
	unlink(part);
	rm_rf(tree);
	return rc;
}

int vm_layer_ensure(const char *template, const char *cache_dir, char *out, size_t outlen,
		    vm_image_progress progress, char *err, size_t len)
{
	if (strcmp(template, "debian")) {
		snprintf(err, len, "no VM template '%s' (want debian)", template);
		return -1;
	}
	snprintf(out, outlen, "%s/%s-vm.img", cache_dir, template);
	if (path_exists(out))
		return 0;
	if (mkdir_p(cache_dir, 0700, err, len) < 0)
		return -1;
	/* One build at a time; a second waits and finds it made. */
	char lockp[PATH_MAX];
	snprintf(lockp, sizeof(lockp), "%s/.%s-vm.lock", cache_dir, template);
	int lk = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lk < 0 || flock(lk, LOCK_EX) < 0) {
		snprintf(err, len, "cannot lock %s: %s", lockp, strerror(errno));
		if (lk >= 0)
			close(lk);
		return -1;
	}
	int rc = path_exists(out) ? 0 : build_layer(template, cache_dir, out, progress, err, len);
	close(lk);
	return rc;
}
