#include "disk.h"

#include "parse.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

int disk_image_create(const char *image, uint64_t size, char *err, size_t len)
{
	int fd = open(image, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, len, "cannot create %s: %s", image, strerror(errno));
		return -1;
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		snprintf(err, len, "cannot size %s: %s", image, strerror(errno));
		close(fd);
		unlink(image);
		return -1;
	}
	close(fd);
	const char *argv[] = {"mkfs.btrfs", "-q", "-f", image, NULL};
	if (run_quiet(argv, err, len) < 0) {
		unlink(image);
		return -1;
	}
	return 0;
}

/* A node of our own for loop device nr when /dev has none: LOOP_CTL_GET_FREE
 * may add a device whose node devtmpfs makes late, or never (a read-only
 * /dev seen on these machines makes no new nodes). Made where device nodes
 * work, opened, and removed at once. */
static int open_private_node(int nr)
{
	static const char *const dirs[] = {"/dev", "/dev/shm", "/run"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char path[64];
		snprintf(path, sizeof(path), "%s/.kvz-loop%d-%d", dirs[i], nr, (int)getpid());
		if (mknod(path, S_IFBLK | 0600, makedev(7, (unsigned)nr)) < 0)
			continue;
		int fd = open(path, O_RDWR | O_CLOEXEC);
		unlink(path);
		if (fd >= 0)
			return fd;
	}
	errno = ENOENT;
	return -1;
}

/* Opens /dev/loopNR; without that node, a private one, and then dev
 * becomes /proc/self/fd/FD: a path to the device while the fd stays open. */
static int open_loop_node(char *dev, size_t devlen, int nr)
{
	snprintf(dev, devlen, "/dev/loop%d", nr);
	for (int waited_ms = 0; waited_ms <= 200; waited_ms += 10) {
		int fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd >= 0 || errno != ENOENT)
			return fd;
		struct timespec ts = {.tv_nsec = 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	int fd = open_private_node(nr);
	if (fd >= 0)
		snprintf(dev, devlen, "/proc/self/fd/%d", fd);
	return fd;
}

int disk_loop_attach(const char *image, char *dev, size_t devlen, char *err, size_t len)
{
	int img = open(image, O_RDWR | O_CLOEXEC);
	if (img < 0) {
		snprintf(err, len, "cannot open %s: %s", image, strerror(errno));
		return -1;
	}
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		snprintf(err, len, "cannot open /dev/loop-control: %s", strerror(errno));
		close(img);
		return -1;
	}
	int loop = -1;
	/* Another process may grab the same free device between the two
	 * calls; LOOP_CONFIGURE then fails with EBUSY and we try again. */
	for (int tries = 0; tries < 20 && loop < 0; tries++) {
		int nr = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (nr < 0) {
			snprintf(err, len, "no free loop device: %s", strerror(errno));
			break;
		}
		loop = open_loop_node(dev, devlen, nr);
		if (loop < 0) {
			snprintf(err, len, "cannot open %s: %s", dev, strerror(errno));
			break;
		}
		struct loop_config cfg = {.fd = (unsigned)img};
		cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		if (ioctl(loop, LOOP_CONFIGURE, &cfg) == 0)
			break;
		snprintf(err, len, "cannot attach %s to %s: %s", image, dev, strerror(errno));
		close(loop);
		loop = -1;
		if (errno != EBUSY)
			break;
	}
	close(ctl);
	close(img);
	return loop;
}

/* The first copy of the btrfs superblock lies at 64 KiB; in it the
 * filesystem's UUID at 0x20 and the magic at 0x40 (the kernel's struct
 * btrfs_super_block, not in the uapi headers). */
#define SB_OFFSET 0x10000
#define SB_FSID 0x20
#define SB_MAGIC 0x40
#define SB_READ 0x48

/* image's filesystem UUID as text (36 characters): 1; 0 when it holds no
 * btrfs (mount says why); -1 when it cannot be read. */
static int image_fsid(const char *image, char *uuid, size_t len, char *err, size_t elen)
{
	unsigned char sb[SB_READ];
	int fd = open(image, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, elen, "cannot open %s: %s", image, strerror(errno));
		return -1;
	}
	ssize_t n = pread(fd, sb, sizeof(sb), SB_OFFSET);
	close(fd);
	if (n != (ssize_t)sizeof(sb) || memcmp(sb + SB_MAGIC, "_BHRfS_M", 8))
		return 0;
	const unsigned char *u = sb + SB_FSID;
	snprintf(uuid, len,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11],
		 u[12], u[13], u[14], u[15]);
	return 1;
}

/* Whether the loop device NAME (loopN) is backed by the file img. 1 yes,
 * 0 no (or not a loop device), -1 when it cannot be told. */
static int loop_backed_by(const char *name, const struct stat *img)
{
	char dev[64], *end;
	if (strncmp(name, "loop", 4))
		return 0;
	long nr = strtol(name + 4, &end, 10);
	if (end == name + 4 || *end || nr < 0 || nr > 1 << 20)
		return 0;
	int fd = open_loop_node(dev, sizeof(dev), (int)nr);
	if (fd < 0)
		return -1;
	struct loop_info64 info;
	int rc = ioctl(fd, LOOP_GET_STATUS64, &info);
	close(fd);
	if (rc < 0)
		return errno == ENXIO ? 0 : -1; /* ENXIO: detached meanwhile */
	return info.lo_device == img->st_dev && info.lo_inode == img->st_ino;
}

/* Whether the mounted btrfs UUID lies on image itself: one of its devices
 * (/sys/fs/btrfs/UUID/devices/) a loop device backed by image. */
static int mounted_from(const char *image, const char *uuid, char *err, size_t len)
{
	struct stat img;
	char path[128];
	if (stat(image, &img) < 0) {
		snprintf(err, len, "cannot stat %s: %s", image, strerror(errno));
		return -1;
	}
	snprintf(path, sizeof(path), "/sys/fs/btrfs/%s/devices", uuid);
	DIR *d = opendir(path);
	if (!d)
		return 0; /* unmounted meanwhile */
	int found = 0;
	struct dirent *de;
	while (found == 0 && (de = readdir(d)))
		found = loop_backed_by(de->d_name, &img);
	closedir(d);
	if (found < 0)
		snprintf(err, len, "cannot tell whether the mounted filesystem %s lies on %s", uuid,
			 image);
	else if (found)
		snprintf(err, len, "%s is mounted already", image);
	return found ? -1 : 0;
}

int disk_own_fsid(const char *image, char *err, size_t len)
{
	char uuid[40], path[96];
	int has = image_fsid(image, uuid, sizeof(uuid), err, len);
	if (has <= 0)
		return has;
	snprintf(path, sizeof(path), "/sys/fs/btrfs/%s", uuid);
	if (!path_exists(path))
		return 0;
	if (mounted_from(image, uuid, err, len) < 0)
		return -1;
	/* -m rewrites the superblocks only (the metadata keeps the old UUID
	 * as its metadata_uuid): milliseconds whatever the size, where -u
	 * rewrites every metadata block and an interrupted run leaves the
	 * filesystem unmountable (docs/architecture.md, "Private area"). */
	const char *argv[] = {"btrfstune", "-m", image, NULL};
	char why[512];
	if (run_quiet(argv, why, sizeof(why)) < 0) {
		snprintf(err, len, "%s is a copy of the mounted filesystem %s; giving it a UUID of its own: %s",
			 image, uuid, why);
		return -1;
	}
	return 0;
}

int disk_attach_mount(const char *image, const char *target, char *dev, size_t devlen,
		      char *err, size_t len)
{
	/* Twice: a copy started beside another copy of the same filesystem
	 * finds it mounted only once that one has mounted (EEXIST before). */
	for (int attempt = 0;; attempt++) {
		if (disk_own_fsid(image, err, len) < 0)
			return -1;
		int loop = disk_loop_attach(image, dev, devlen, err, len);
		if (loop < 0)
			return -1;
		if (mount(dev, target, "btrfs", 0, NULL) == 0)
			return loop;
		int e = errno;
		snprintf(err, len, "cannot mount %s on %s: %s", image, target, strerror(e));
		close(loop);
		if (e != EEXIST || attempt)
			return -1;
	}
}

int disk_mount(const char *image, const char *target, char *err, size_t len)
{
	char dev[32];
	int loop = disk_attach_mount(image, target, dev, sizeof(dev), err, len);
	if (loop < 0)
		return -1;
	close(loop);
	return 0;
}

int disk_image_size(const char *image, uint64_t *size)
{
	struct stat st;
	if (stat(image, &st) < 0)
		return -1;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int refresh_loop(const char *loopdev, char *err, size_t len)
{
	int fd = open(loopdev, O_RDWR | O_CLOEXEC);
	if (fd < 0 || ioctl(fd, LOOP_SET_CAPACITY, 0) < 0) {
		snprintf(err, len, "cannot refresh the size of %s: %s", loopdev, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int disk_grow(const char *image, const char *loopdev, const char *mountpoint,
	      uint64_t size, char *err, size_t len)
{
	uint64_t cur;
	char a[32], b[32];
	if (disk_image_size(image, &cur) < 0) {
		snprintf(err, len, "cannot stat %s: %s", image, strerror(errno));
		return -1;
	}
	if (size < cur) {
		snprintf(err, len, "disk can only grow: %s is below the current size %s",
			 kvz_format_size(size, a, sizeof(a)), kvz_format_size(cur, b, sizeof(b)));
		return -1;
	}
	if (size == cur)
		return 0;
	if (truncate(image, (off_t)size) < 0) {
		snprintf(err, len, "cannot grow %s: %s", image, strerror(errno));
		return -1;
	}
	if (refresh_loop(loopdev, err, len) < 0)
		return -1;
	int fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, len, "cannot open %s: %s", mountpoint, strerror(errno));
		return -1;
	}
	struct btrfs_ioctl_vol_args args;
	memset(&args, 0, sizeof(args));
	snprintf(args.name, sizeof(args.name), "max");
	int rc = ioctl(fd, BTRFS_IOC_RESIZE, &args);
	if (rc < 0)
		snprintf(err, len, "cannot grow the filesystem on %s: %s", mountpoint, strerror(errno));
	close(fd);
	return rc;
}
