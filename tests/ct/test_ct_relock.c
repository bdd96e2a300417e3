/* kernfs_relock (kernfs_relock.c) on this host, without CRIU: a stand-in
 * "restored container" (its own user, mount, pid and net namespaces) makes
 * /proc, masks over /proc/timer_list and /proc/uptime and a read-only /sys
 * itself, as CRIU does on restore, so none of them is locked. Before the
 * relock its root can unmount the uptime mask (the stand-in is faithful);
 * after it, unmounting the timer_list mask or /proc/sys fails and
 * /sys cannot be made writable. Exit 77 (skip) where it cannot run. */
#include "kernfs.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SKIP 77

static char root[] = "/tmp/kvz-relock-XXXXXX";
static char scratch[] = "/tmp/kvz-relock-scratch-XXXXXX";

static void die(const char *what)
{
	fprintf(stderr, "test_ct_relock: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int put(int fd, char c)
{
	return write(fd, &c, 1) == 1 ? 0 : -1;
}

static char get(int fd)
{
	char c = 0;
	return read(fd, &c, 1) == 1 ? c : 0;
}

static const char *mnt_errno(int rc)
{
	return rc == 0 ? "0" : strerrorname_np(errno);
}

/* pid 1 of the stand-in: the tree as CRIU leaves it, then the attacks. */
static int container(int to_test, int from_test)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/proc", root);
	if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("mount proc");
	const char *masks[] = {"/proc/timer_list", "/proc/uptime"};
	for (int i = 0; i < 2; i++) {
		snprintf(p, sizeof(p), "%s%s", root, masks[i]);
		if (mount("/dev/null", p, NULL, MS_BIND, NULL) < 0)
			die("mask");
	}
	snprintf(p, sizeof(p), "%s/proc/sys", root);
	if (mount(p, p, NULL, MS_BIND, NULL) < 0 ||
	    mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0)
		die("proc/sys read-only");
	snprintf(p, sizeof(p), "%s/sys", root);
	if (mount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
		die("mount sysfs");
	snprintf(p, sizeof(p), "%s/old", root);
	if (chdir(root) < 0 || syscall(SYS_pivot_root, ".", "old") < 0 || chdir("/") < 0 ||
	    umount2("/old", MNT_DETACH) < 0)
		die("pivot_root");
	int before = umount2("/proc/uptime", 0);
	printf("BEFORE uptime=%s\n", mnt_errno(before));
	fflush(stdout);
	if (put(to_test, 'r') < 0 || get(from_test) != 'g')
		return 1;
	int masked = umount2("/proc/timer_list", 0); /* kvz-ct masks it (kcore: not on every kernel) */
	printf("AFTER timer_list=%s", mnt_errno(masked));
	int procsys = umount2("/proc/sys", 0);
	printf(" procsys=%s", mnt_errno(procsys));
	int sysrw = mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND, NULL);
	printf(" sysrw=%s\n", mnt_errno(sysrw));
	fflush(stdout);
	if (before != 0)
		return 2; /* the stand-in's tree was locked already: proves nothing */
	return masked == 0 || procsys == 0 || sysrw == 0 ? 3 : 0;
}

static int write_map(pid_t pid, const char *file, const char *map)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, map, strlen(map));
	close(fd);
	return n == (ssize_t)strlen(map) ? 0 : -1;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("SKIP: needs root (namespaces, mounts)\n");
		return SKIP;
	}
	if (!mkdtemp(root) || !mkdtemp(scratch))
		die("mkdtemp");
	char p[256];
	const char *dirs[] = {"proc", "sys", "old"};
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		if (mkdir(p, 0755) < 0)
			die("mkdir");
	}
	int up[2], down[2], ready[2];
	if (pipe(up) < 0 || pipe(down) < 0 || pipe(ready) < 0)
		die("pipe");
	pid_t outer = fork();
	if (outer == 0) {
		/* The user namespace's maps are written by the test (host root). */
		if (unshare(CLONE_NEWUSER) < 0 || put(ready[1], 'u') < 0 || get(down[0]) != 'm')
			_exit(SKIP);
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0 ||
		    unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("ct", root, "tmpfs", 0, "mode=755") < 0)
			_exit(SKIP);
		for (int i = 0; i < 3; i++) {
			snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
			if (mkdir(p, 0755) < 0)
				_exit(1);
		}
		pid_t init = fork();
		if (init == 0)
			_exit(container(up[1], down[0]));
		close(up[1]);
		printf("INIT %d\n", (int)init);
		fflush(stdout);
		put(ready[1], 'i');
		if (write(ready[1], &init, sizeof(init)) != sizeof(init))
			_exit(1);
		int st;
		waitpid(init, &st, 0);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
	}
	close(up[1]);
	close(ready[1]);
	if (get(ready[0]) != 'u')
		die("the stand-in did not start");
	if (write_map(outer, "uid_map", "0 0 65536") < 0 || write_map(outer, "setgroups", "deny") < 0 ||
	    write_map(outer, "gid_map", "0 0 65536") < 0)
		die("write the maps");
	put(down[1], 'm');
	pid_t init_ns;
	if (get(ready[0]) != 'i' || read(ready[0], &init_ns, sizeof(init_ns)) != sizeof(init_ns)) {
		int st;
		waitpid(outer, &st, 0);
		printf("SKIP: cannot make the stand-in's namespaces here\n");
		return SKIP;
	}
	if (get(up[0]) != 'r')
		die("the stand-in's tree");
	/* The init's pid as this (the host's) pid namespace sees it. */
	pid_t init = -1;
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)outer, (int)outer);
	FILE *f = fopen(path, "r");
	if (!f || !fgets(line, sizeof(line), f) || (init = (pid_t)atoi(line)) <= 0)
		die("find the stand-in's init");
	fclose(f);
	struct cgroup cg = {.version = 1};
	snprintf(cg.root, sizeof(cg.root), "%s", scratch); /* no hierarchies: an empty view */
	char err[512];
	int rc = kernfs_relock(scratch, init, &cg, err, sizeof(err));
	if (rc < 0)
		printf("RELOCK-ERROR %s\n", err);
	fflush(stdout);
	put(down[1], 'g');
	int st;
	waitpid(outer, &st, 0);
	rmdir(scratch);
	for (int i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", root, dirs[i]);
		rmdir(p);
	}
	rmdir(root);
	return rc < 0 ? 1 : WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
