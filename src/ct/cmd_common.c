#include "cmd_common.h"

#include "ct.h"
#include "disk.h"
#include "log.h"
#include "parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

void ct_dir(const char *ct_root, const char *name, const char *leaf, char *out, size_t size)
{
	if (leaf)
		snprintf(out, size, "%s/%s/%s", ct_root, name, leaf);
	else
		snprintf(out, size, "%s/%s", ct_root, name);
}

int ct_idmap_path(const char *dir, char *out, size_t size, char *err, size_t len)
{
	char real[PATH_MAX];
	if (!realpath(dir, real)) {
		snprintf(err, len, "cannot resolve %s: %s", dir, strerror(errno));
		return -1;
	}
	snprintf(out, size, "%s/idmap", real);
	return 0;
}

void require_name(const char *name)
{
	if (!name)
		kvz_die("--name is required");
	if (!kvz_valid_name(name))
		kvz_die("invalid container name '%s': want [A-Za-z0-9][A-Za-z0-9_.-], at most 63 characters",
			name);
}

static bool parse_ipv4_prefix(const char *s, struct in_addr *ip, unsigned *prefix)
{
	char buf[32];
	const char *slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= sizeof(buf))
		return false;
	memcpy(buf, s, (size_t)(slash - s));
	buf[slash - s] = 0;
	uint64_t p;
	if (inet_pton(AF_INET, buf, ip) != 1 || !kvz_parse_u64(slash + 1, 1, 32, &p))
		return false;
	*prefix = (unsigned)p;
	return true;
}

bool parse_net(const char *s, struct net_opts *n, char *err, size_t len)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	memset(n, 0, sizeof(*n));
	bool have_ip = false;
	char *save;
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq)
			goto bad;
		*eq = 0;
		const char *v = eq + 1;
		if (!strcmp(kv, "bridge") && *v && strlen(v) < sizeof(n->bridge) && !strchr(v, '/'))
			snprintf(n->bridge, sizeof(n->bridge), "%s", v);
		else if (!strcmp(kv, "ip") && parse_ipv4_prefix(v, &n->ip, &n->prefix))
			have_ip = true;
		else if (!strcmp(kv, "gw") && inet_pton(AF_INET, v, &n->gw) == 1)
			n->has_gw = true;
		else
			goto bad;
	}
	if (!n->bridge[0] || !have_ip)
		goto bad;
	n->enabled = true;
	return true;
bad:
	snprintf(err, len, "invalid --net '%s': want bridge=BR,ip=A.B.C.D/P[,gw=G] (bridge name up to 15 characters)", s);
	return false;
}

int run_mounted(const char *image, const char *dir,
		int (*fn)(const char *dir, void *arg, char *err, size_t len), void *arg,
		char *err, size_t len)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, len, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(err, len, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		char msg[1024] = "";
		close(p[0]);
		if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
			snprintf(msg, sizeof(msg), "cannot create a mount namespace: %s", strerror(errno));
		else if (disk_mount(image, dir, msg, sizeof(msg)) == 0 &&
			 fn(dir, arg, msg, sizeof(msg)) == 0) {
			umount2(dir, 0);
			_exit(0);
		}
		if (!msg[0])
			snprintf(msg, sizeof(msg), "failed");
		if (write(p[1], msg, strlen(msg)) < 0)
			_exit(2);
		_exit(1);
	}
	close(p[1]);
	ssize_t n = read(p[0], err, len - 1);
	err[n > 0 ? n : 0] = 0;
	close(p[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (!err[0])
		snprintf(err, len, "helper process failed");
	return -1;
}
