/* Device allow-list of a container (see devices.h). */
#include "devices.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* runc's and LXC's defaults, without their "mknod anything" rule: only these
 * nodes can be created, and only these can be opened. */
static const struct dev_rule builtin[] = {
	{'c', 1, 3, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* null */
	{'c', 1, 5, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* zero */
	{'c', 1, 7, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* full */
	{'c', 1, 8, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* random */
	{'c', 1, 9, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* urandom */
	{'c', 5, 0, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* tty */
	{'c', 5, 1, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* console */
	{'c', 5, 2, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},   /* ptmx */
	/* pts: the kernel opens a pty slave only through its own devpts
	 * instance, so a node made elsewhere cannot reach the host's ptys. */
	{'c', 136, DEV_ANY, DEV_MKNOD | DEV_READ | DEV_WRITE, ""},
};
#define N_BUILTIN (sizeof(builtin) / sizeof(builtin[0]))

static int parse_access(const char *s, unsigned *access)
{
	*access = 0;
	for (; *s; s++) {
		unsigned bit = *s == 'r' ? DEV_READ : *s == 'w' ? DEV_WRITE : *s == 'm' ? DEV_MKNOD : 0;
		if (!bit || (*access & bit))
			return -1;
		*access |= bit;
	}
	return *access ? 0 : -1;
}

int devices_parse(const char *arg, struct dev_list *l, char *err, size_t len)
{
	if (l->n >= DEV_MAX_EXTRA) {
		snprintf(err, len, "too many --device options (at most %d)", DEV_MAX_EXTRA);
		return -1;
	}
	struct dev_rule *r = &l->extra[l->n];
	const char *colon = strchr(arg, ':');
	size_t plen = colon ? (size_t)(colon - arg) : strlen(arg);
	if (plen == 0 || plen >= sizeof(r->path) || arg[0] != '/') {
		snprintf(err, len, "--device '%s': want an absolute PATH[:rwm]", arg);
		return -1;
	}
	char given[sizeof(r->path)];
	memcpy(given, arg, plen);
	given[plen] = 0;
	r->access = DEV_READ | DEV_WRITE | DEV_MKNOD;
	if (colon && parse_access(colon + 1, &r->access) < 0) {
		snprintf(err, len, "--device '%s': access must be letters of 'rwm'", arg);
		return -1;
	}
	/* Resolved, so that links (/dev/disk/by-id/...) and ".." cannot place
	 * the node outside the container's /dev. */
	char real[PATH_MAX];
	struct stat st;
	if (!realpath(given, real) || stat(real, &st) < 0) {
		snprintf(err, len, "--device %s: %s", given, strerror(errno));
		return -1;
	}
	if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(err, len, "--device %s is not a character or block device", given);
		return -1;
	}
	if (strlen(real) >= sizeof(r->path)) {
		snprintf(err, len, "--device %s: path too long", given);
		return -1;
	}
	memcpy(r->path, real, strlen(real) + 1);
	r->type = S_ISCHR(st.st_mode) ? 'c' : 'b';
	r->major = (long)major(st.st_rdev);
	r->minor = (long)minor(st.st_rdev);
	l->n++;
	return 0;
}

void devices_container_path(const struct dev_rule *r, char *out, size_t size)
{
	const char *base = strrchr(r->path, '/') + 1;
	if (!strncmp(r->path, "/dev/", 5))
		snprintf(out, size, "%s", r->path);
	else
		snprintf(out, size, "/dev/%s", base);
}

/* ---- cgroup v1: the devices controller ---- */

static void v1_line(const struct dev_rule *r, char *out, size_t size)
{
	char maj[24] = "*", min[24] = "*";
	if (r->major != DEV_ANY)
		snprintf(maj, sizeof(maj), "%ld", r->major);
	if (r->minor != DEV_ANY)
		snprintf(min, sizeof(min), "%ld", r->minor);
	snprintf(out, size, "%c %s:%s %s%s%s", r->type, maj, min, r->access & DEV_READ ? "r" : "",
		 r->access & DEV_WRITE ? "w" : "", r->access & DEV_MKNOD ? "m" : "");
}

static int v1_apply(const struct cgroup *cg, const struct dev_list *l, char *err, size_t len)
{
	char dir[PATH_MAX], line[64];
	cgroup_v1_top(cg, "devices", dir, sizeof(dir));
	if (access(dir, F_OK) < 0) {
		snprintf(err, len, "cannot confine devices: no devices cgroup %s (is the v1 devices "
			 "controller mounted?)", dir);
		return -1;
	}
	if (cg_write(dir, "devices.deny", "a", err, len) < 0)
		return -1;
	for (size_t i = 0; i < N_BUILTIN + l->n; i++) {
		v1_line(i < N_BUILTIN ? &builtin[i] : &l->extra[i - N_BUILTIN], line, sizeof(line));
		if (cg_write(dir, "devices.allow", line, err, len) < 0)
			return -1;
	}
	return 0;
}

/* ---- cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program ----
 *
 * Hand-built like crun's and runc's (a dozen instructions per rule; compiling
 * a BPF object would need clang and a map for a list this small):
 *   r2 = ctx->access_type; r3 = r2 & 0xffff (device type); r2 >>= 16 (access)
 *   r4 = ctx->major; r5 = ctx->minor
 *   per rule: type, major, minor must match and the access asked for must be
 *   in the rule's, else on to the next rule; a match returns 1 (allow)
 *   at the end: return 0 (deny) */

#define MAX_INSNS (8 + 8 * (N_BUILTIN + DEV_MAX_EXTRA))

struct prog {
	struct bpf_insn insn[MAX_INSNS];
	size_t n;
};

static void emit(struct prog *p, __u8 code, __u8 dst, __u8 src, __s16 off, __s32 imm)
{
	p->insn[p->n++] = (struct bpf_insn){.code = code, .dst_reg = dst, .src_reg = src,
					    .off = off, .imm = imm};
}

static void emit_rule(struct prog *p, const struct dev_rule *r)
{
	size_t jumps[4], nj = 0;
	jumps[nj++] = p->n;
	emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_3, 0, 0,
	     r->type == 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK);
	if (r->major != DEV_ANY) {
		jumps[nj++] = p->n;
		emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, 0, (__s32)r->major);
	}
	if (r->minor != DEV_ANY) {
		jumps[nj++] = p->n;
		emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, 0, (__s32)r->minor);
	}
	/* Same bit values as BPF_DEVCG_ACC_MKNOD/READ/WRITE. */
	emit(p, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_2, 0, 0);
	emit(p, BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_6, 0, 0, (__s32)(~r->access & 7));
	jumps[nj++] = p->n;
	emit(p, BPF_JMP | BPF_JNE | BPF_K, BPF_REG_6, 0, 0, 0);
	emit(p, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1);
	emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	for (size_t i = 0; i < nj; i++)
		p->insn[jumps[i]].off = (__s16)(p->n - jumps[i] - 1);
}

static void build_prog(struct prog *p, const struct dev_list *l)
{
	p->n = 0;
	emit(p, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0); /* access_type */
	emit(p, BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_2, 0, 0);
	emit(p, BPF_ALU64 | BPF_AND | BPF_K, BPF_REG_3, 0, 0, 0xffff);
	emit(p, BPF_ALU64 | BPF_RSH | BPF_K, BPF_REG_2, 0, 0, 16);
	emit(p, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, 4, 0); /* major */
	emit(p, BPF_LDX | BPF_MEM | BPF_W, BPF_REG_5, BPF_REG_1, 8, 0); /* minor */
	for (size_t i = 0; i < N_BUILTIN + l->n; i++)
		emit_rule(p, i < N_BUILTIN ? &builtin[i] : &l->extra[i - N_BUILTIN]);
	emit(p, BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
	emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

static int v2_apply(const struct cgroup *cg, const struct dev_list *l, char *err, size_t len)
{
	static struct prog p; /* 5 KiB of instructions: kept off the stack */
	build_prog(&p, l);
	char log[4096] = "", dir[PATH_MAX];
	/* libbpf retries with the verifier's log only when the load fails. */
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .log_buf = log, .log_size = sizeof(log));
	int prog = bpf_prog_load(BPF_PROG_TYPE_CGROUP_DEVICE, "kvz_devices", "GPL", p.insn, p.n, &opts);
	if (prog < 0) {
		log[strcspn(log, "\n")] = 0;
		snprintf(err, len, "cannot load the device filter: %s%s%s", strerror(-prog),
			 log[0] ? ": " : "", log);
		return -1;
	}
	json_t *paths = cgroup_paths(cg); /* v2: the container's one cgroup */
	snprintf(dir, sizeof(dir), "%s", json_string_value(json_array_get(paths, 0)));
	json_decref(paths);
	int cgfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = cgfd < 0 ? -errno : bpf_prog_attach(prog, cgfd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI);
	if (rc < 0)
		snprintf(err, len, "cannot attach the device filter to %s: %s", dir, strerror(-rc));
	if (cgfd >= 0)
		close(cgfd);
	close(prog); /* the attachment holds the program until the cgroup goes */
	return rc < 0 ? -1 : 0;
}

int devices_apply(const struct cgroup *cg, const struct dev_list *l, char *err, size_t len)
{
	return cg->version == 2 ? v2_apply(cg, l, err, len) : v1_apply(cg, l, err, len);
}
