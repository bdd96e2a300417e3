#include "boot_image.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "part_table.h"

#define LS_MAX (1u << 20)   /* a /boot listing longer than this is refused */
#define DEBUGFS_SECONDS 30  /* wall-clock limit of one debugfs run */
#define DEBUGFS_MEMORY (512ull << 20)

/* ---- the listing ---- */

static bool version_ok(const char *v, size_t n)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+~-";
	if (!n || n > BOOT_VERSION_MAX || v[0] == '-' || v[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!v[i] || !strchr(ok, v[i]))
			return false;
	return true;
}

struct ls_line {
	unsigned long mode;
	const char *name;
	size_t name_len;
	uint64_t size;
};

/* "/INODE/MODE/UID/GID/NAME/SIZE/": NAME may hold anything but '/' and
 * NUL, so it is what lies between the fifth slash and the last two. */
static bool ls_parse(const char *l, size_t n, struct ls_line *out)
{
	if (n < 12 || l[0] != '/' || l[n - 1] != '/')
		return false;
	const char *p = l + 1, *end = l + n;
	const char *field[4];
	for (int i = 0; i < 4; i++) {
		field[i] = p;
		const char *s = memchr(p, '/', (size_t)(end - p));
		if (!s)
			return false;
		p = s + 1;
	}
	const char *size_end = end - 1, *size_start = size_end;
	while (size_start > p && size_start[-1] != '/')
		size_start--;
	if (size_start <= p || size_start == size_end)
		return false;
	char num[24];
	size_t sn = (size_t)(size_end - size_start), mn = (size_t)(field[2] - field[1] - 1);
	if (sn >= sizeof(num) || mn == 0 || mn > 7)
		return false;
	memcpy(num, size_start, sn);
	num[sn] = 0;
	char *e;
	errno = 0;
	out->size = strtoull(num, &e, 10);
	if (*e || errno || num[0] == '-')
		return false;
	memcpy(num, field[1], mn);
	num[mn] = 0;
	out->mode = strtoul(num, &e, 8);
	if (*e)
		return false;
	out->name = p;
	out->name_len = (size_t)(size_start - 1 - p);
	return true;
}

static bool regular(unsigned long mode) { return (mode & 0170000) == 0100000; }

/* The size of regular file PREFIX+version in the listing, or 0. */
static uint64_t find_file(const char *ls, size_t len, const char *prefix, const char *ver)
{
	size_t pn = strlen(prefix), vn = strlen(ver);
	for (const char *l = ls, *end = ls + len; l < end;) {
		const char *nl = memchr(l, '\n', (size_t)(end - l));
		size_t n = nl ? (size_t)(nl - l) : (size_t)(end - l);
		struct ls_line e;
		if (ls_parse(l, n, &e) && regular(e.mode) && e.name_len == pn + vn &&
		    !memcmp(e.name, prefix, pn) && !memcmp(e.name + pn, ver, vn))
			return e.size;
		l += n + 1;
	}
	return 0;
}

bool boot_ls_pick(const char *ls, size_t len, struct boot_entry *out)
{
	bool found = false;
	for (const char *l = ls, *end = ls + len; l < end;) {
		const char *nl = memchr(l, '\n', (size_t)(end - l));
		size_t n = nl ? (size_t)(nl - l) : (size_t)(end - l);
		struct ls_line e;
		const char *v;
		size_t vn;
		if (ls_parse(l, n, &e) && regular(e.mode) && e.name_len > 8 &&
		    !memcmp(e.name, "vmlinuz-", 8) && (v = e.name + 8, vn = e.name_len - 8,
						      version_ok(v, vn)) &&
		    e.size && e.size <= BOOT_KERNEL_MAX) {
			char ver[BOOT_VERSION_MAX + 1];
			memcpy(ver, v, vn);
			ver[vn] = 0;
			uint64_t isz = find_file(ls, len, "initrd.img-", ver);
			if (isz && isz <= BOOT_INITRD_MAX &&
			    (!found || strverscmp(ver, out->version) > 0)) {
				memcpy(out->version, ver, vn + 1);
				out->kernel_size = e.size;
				out->initrd_size = isz;
				found = true;
			}
		}
		l += n + 1;
	}
	return found;
}

/* ---- debugfs, confined ---- */

static void child_limits(uint64_t fsize)
{
	struct rlimit as = {DEBUGFS_MEMORY, DEBUGFS_MEMORY}, cpu = {DEBUGFS_SECONDS, DEBUGFS_SECONDS};
	struct rlimit fs = {fsize, fsize}, core = {0, 0};
	setrlimit(RLIMIT_AS, &as);
	setrlimit(RLIMIT_CPU, &cpu);
	setrlimit(RLIMIT_FSIZE, &fs);
	setrlimit(RLIMIT_CORE, &core);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs debugfs -R req on fs; its stdout (up to LS_MAX) into *out when out
 * is not NULL. Files it writes are capped at fsize bytes. */
static int run_debugfs(const char *fs, const char *req, uint64_t fsize, char **out, size_t *outlen,
		       char *err, size_t errlen)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		child_limits(fsize);
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0 || dup2(null, 2) < 0)
			_exit(126);
		execlp("debugfs", "debugfs", "-R", req, fs, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -1;
	}
	char *buf = malloc(LS_MAX + 1);
	size_t used = 0;
	bool too_big = false, timed_out = false;
	int64_t deadline = now_ms() + DEBUGFS_SECONDS * 1000;
	for (;;) {
		int left = (int)(deadline - now_ms());
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		if (left <= 0 || poll(&pfd, 1, left) == 0) {
			timed_out = true;
			break;
		}
		char tmp[4096];
		ssize_t n = read(p[0], tmp, sizeof(tmp));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (!buf || used + (size_t)n > LS_MAX) {
			too_big = true;
			break;
		}
		memcpy(buf + used, tmp, (size_t)n);
		used += (size_t)n;
	}
	close(p[0]);
	if (timed_out || too_big)
		kill(pid, SIGKILL);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	int rc = -1;
	if (timed_out)
		snprintf(err, errlen, "debugfs took more than %d s on the image", DEBUGFS_SECONDS);
	else if (too_big || !buf)
		snprintf(err, errlen, "debugfs printed more than %u bytes about the image", LS_MAX);
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		snprintf(err, errlen, "debugfs failed on the image (%s %d)",
			 WIFEXITED(status) ? "exit" : "signal",
			 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	else
		rc = 0;
	if (rc == 0 && out) {
		buf[used] = 0;
		*out = buf;
		*outlen = used;
		buf = NULL;
	}
	free(buf);
	return rc;
}

/* dump DIR/NAME into dest, which must come out exactly size bytes. */
static int dump_file(const char *fs, const char *dir, const char *name, const char *dest,
		     uint64_t size, char *err, size_t errlen)
{
	char req[1024], part[600];
	snprintf(part, sizeof(part), "%s.partial", dest);
	unlink(part);
	snprintf(req, sizeof(req), "dump %s%s %s", dir, name, part);
	int rc = run_debugfs(fs, req, size + 1, NULL, NULL, err, errlen);
	struct stat st;
	if (rc == 0 && (stat(part, &st) < 0 || (uint64_t)st.st_size != size)) {
		snprintf(err, errlen, "%s%s did not come out of the image whole", dir, name);
		rc = -1;
	}
	if (rc == 0 && rename(part, dest) < 0) {
		snprintf(err, errlen, "cannot store %s: %s", dest, strerror(errno));
		rc = -1;
	}
	if (rc < 0)
		unlink(part);
	return rc;
}

/* A kernel in DIR of the file system at fs ("/boot/", or "/" for a
 * separate boot partition). 1 when found and dumped, 0 when not there. */
static int try_dir(const char *fs, const char *dir, const char *outdir, struct boot_files *out,
		   char *err, size_t errlen)
{
	char req[64], *ls = NULL;
	size_t n = 0;
	snprintf(req, sizeof(req), "ls -p %s", dir);
	if (run_debugfs(fs, req, 0, &ls, &n, err, errlen) < 0)
		return -1;
	struct boot_entry b;
	bool found = boot_ls_pick(ls, n, &b);
	free(ls);
	if (!found)
		return 0;
	char name[128];
	snprintf(out->kernel, sizeof(out->kernel), "%s/vmlinuz", outdir);
	snprintf(out->initrd, sizeof(out->initrd), "%s/initrd.img", outdir);
	snprintf(name, sizeof(name), "vmlinuz-%s", b.version);
	if (dump_file(fs, dir, name, out->kernel, b.kernel_size, err, errlen) < 0)
		return -1;
	snprintf(name, sizeof(name), "initrd.img-%s", b.version);
	if (dump_file(fs, dir, name, out->initrd, b.initrd_size, err, errlen) < 0) {
		unlink(out->kernel);
		return -1;
	}
	return 1;
}

static int read_head(const char *image, uint8_t *head, size_t *len, uint64_t *size, char *err,
		     size_t errlen)
{
	int fd = open(image, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "cannot read the disk image %s: %s", image,
			 fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	ssize_t n = pread(fd, head, PART_HEAD_BYTES, 0);
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "cannot read %s: %s", image, strerror(errno));
		return -1;
	}
	*len = (size_t)n;
	*size = (uint64_t)st.st_size;
	return 0;
}

int boot_image_extract(const char *image, const char *dir, struct boot_files *out, char *err,
		       size_t errlen)
{
	if (strpbrk(image, "?\n") || strpbrk(dir, " \t\n\"'\\")) {
		snprintf(err, errlen, "paths unusable with debugfs: %s, %s", image, dir);
		return -1;
	}
	uint8_t *head = malloc(PART_HEAD_BYTES); /* 17 KiB: not on an API thread's stack */
	size_t len;
	uint64_t size;
	struct part parts[PART_MAX];
	int np = -1;
	if (head && read_head(image, head, &len, &size, err, errlen) == 0)
		np = part_table_find(head, len, size, parts, PART_MAX, err, errlen);
	free(head);
	if (np < 0)
		return -1;
	if (np == 0) {
		snprintf(err, errlen, "no Linux partition in %s", image);
		return -1;
	}
	char fs[600];
	for (int i = 0; i < np; i++) {
		snprintf(fs, sizeof(fs), "%s?offset=%llu", image, (unsigned long long)parts[i].offset);
		for (const char *const *d = (const char *const[]){"/boot/", "/", NULL}; *d; d++) {
			int r = try_dir(fs, *d, dir, out, err, errlen);
			if (r < 0 && i == np - 1)
				return -1;
			if (r <= 0)
				continue;
			/* A kernel at the top of a file system is a separate /boot
			 * partition's: the root is the next Linux partition. */
			int root = parts[i].number;
			if (!strcmp(*d, "/") && i + 1 < np)
				root = parts[i + 1].number;
			if (root)
				snprintf(out->root, sizeof(out->root), "/dev/vda%d", root);
			else
				snprintf(out->root, sizeof(out->root), "/dev/vda");
			return 0;
		}
	}
	snprintf(err, errlen, "no /boot/vmlinuz-VERSION with its initrd.img-VERSION in the "
		 "Linux partitions of %s", image);
	return -1;
}
