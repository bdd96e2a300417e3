#include "template.h"

#include "archiver.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUSYBOX_BIN "/bin/busybox"

/* busybox init: nothing to bring up that the container manager has not
 * done already; no respawning gettys (the console may be /dev/null), so
 * init just sits there until SIGUSR2 (poweroff) or SIGTERM (reboot). */
static const char busybox_inittab[] =
	"::sysinit:/bin/true\n"
	"::shutdown:/bin/sync\n";

static int busybox_links(const char *root, char *err, size_t len)
{
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof(cmd), "%s --list-full", BUSYBOX_BIN);
	FILE *p = popen(cmd, "r");
	if (!p) {
		snprintf(err, len, "cannot run %s: %s", BUSYBOX_BIN, strerror(errno));
		return -1;
	}
	char line[256];
	int rc = 0;
	while (fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = 0;
		if (!line[0] || !strcmp(line, "bin/busybox"))
			continue;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", root, line);
		if (symlink("/bin/busybox", path) < 0 && errno != EEXIST) {
			snprintf(err, len, "cannot link %s: %s", path, strerror(errno));
			rc = -1;
			break;
		}
	}
	if (pclose(p) != 0 && rc == 0) {
		snprintf(err, len, "%s --list-full failed", BUSYBOX_BIN);
		rc = -1;
	}
	return rc;
}

static int build_busybox(const char *root, char *err, size_t len)
{
	static const char *const dirs[] = {"bin", "sbin", "usr/bin", "usr/sbin", "etc",
					   "etc/init.d", "proc", "sys", "dev", "tmp",
					   "root", "var/log", "run", "home"};
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		char p[PATH_MAX];
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		if (mkdir_p(p, 0755, err, len) < 0)
			return -1;
	}
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/tmp", root);
	chmod(p, 01777);
	snprintf(p, sizeof(p), "%s/bin/busybox", root);
	const char *cp[] = {"cp", BUSYBOX_BIN, p, NULL};
	if (run_quiet(cp, err, len) < 0 || busybox_links(root, err, len) < 0)
		return -1;
	static const struct { const char *path, *text; } files[] = {
		{"etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"},
		{"etc/group", "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"},
		{"etc/hostname", "busybox\n"},
		{"etc/hosts", "127.0.0.1 localhost\n"},
		{"etc/inittab", busybox_inittab},
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", root, files[i].path);
		if (write_text(p, files[i].text, err, len) < 0)
			return -1;
	}
	return 0;
}

/* The mirror apt uses: first "URIs:" line of the deb822 sources file. */
static int debian_mirror(char *out, size_t outlen, char *err, size_t len)
{
	const char *src = "/etc/apt/sources.list.d/debian.sources";
	char *text = read_text(src);
	char *p = text ? strstr(text, "URIs:") : NULL;
	if (!p) {
		snprintf(err, len, "no URIs: line in %s", src);
		free(text);
		return -1;
	}
	p += 5;
	p += strspn(p, " \t");
	snprintf(out, outlen, "%.*s", (int)strcspn(p, " \t\n"), p);
	free(text);
	return 0;
}

/* minbase has no init at all: add sysvinit-core, which runs in a container
 * and powers off on SIGPWR with the inittab line added below. */
static int build_debian(const char *root, char *err, size_t len)
{
	char mirror[512];
	if (debian_mirror(mirror, sizeof(mirror), err, len) < 0)
		return -1;
	const char *argv[] = {"debootstrap", "--variant=minbase",
			      "--include=sysvinit-core,iproute2,iputils-ping,procps",
			      "bookworm", root, mirror, NULL};
	if (run_quiet(argv, err, len) < 0)
		return -1;
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s/etc/inittab", root);
	static const char inittab[] =
		"id:2:initdefault:\n"
		"si::sysinit:/etc/init.d/rcS\n"
		"l0:0:wait:/etc/init.d/rc 0\n"
		"l2:2:wait:/etc/init.d/rc 2\n"
		"l6:6:wait:/etc/init.d/rc 6\n"
		"pf::powerwait:/sbin/init 0\n";
	return write_text(p, inittab, err, len);
}

int template_ensure(const char *name, const char *cache_dir, char *out, size_t outlen,
		    char *err, size_t len)
{
	int (*build)(const char *, char *, size_t);
	if (!strcmp(name, "busybox"))
		build = build_busybox;
	else if (!strcmp(name, "debian"))
		build = build_debian;
	else {
		snprintf(err, len, "unknown template '%s' (want busybox or debian)", name);
		return -1;
	}
	snprintf(out, outlen, "%s/%s.tar.zst", cache_dir, name);
	if (path_exists(out))
		return 0;
	if (mkdir_p(cache_dir, 0700, err, len) < 0)
		return -1;
	char tmp[PATH_MAX], part[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s/%s.build.XXXXXX", cache_dir, name);
	if (!mkdtemp(tmp)) {
		snprintf(err, len, "cannot create a build directory in %s: %s", cache_dir, strerror(errno));
		return -1;
	}
	snprintf(part, sizeof(part), "%s.part", tmp);
	int rc = build(tmp, err, len);
	if (rc == 0)
		rc = archiver_pack_dir(tmp, part, NULL, err, len);
	/* rename() makes the cache entry appear whole or not at all, even with
	 * two creates racing. */
	if (rc == 0 && rename(part, out) < 0) {
		snprintf(err, len, "cannot store %s: %s", out, strerror(errno));
		rc = -1;
	}
	unlink(part);
	rm_rf(tmp);
	return rc;
}
