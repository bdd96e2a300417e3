#include "vm_create.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "argv_build.h"
#include "boot_image.h"
#include "file_copy.h"
#include "guest_config.h"
#include "log.h"
#include "store.h"

#define SECRET_MAX 16384

bool vm_create_is_job(json_t *cfg)
{
	return json_object_get(cfg, "template") || json_object_get(cfg, "import");
}

static void secrets_dir(struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/secrets/%s", d->state_dir, name);
}

static void boot_dir(struct kvzd *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/boot/%s", d->state_dir, name);
}

/* What a killed kvz-ct vm-image left beside the disk (IMG.stage.XXXXXX). */
static void remove_stage_dirs(struct kvzd *d, const char *name)
{
	char dir[300], prefix[128];
	snprintf(dir, sizeof(dir), "%s/images", d->state_dir);
	snprintf(prefix, sizeof(prefix), "%s.img.stage.", name);
	DIR *dp = opendir(dir);
	struct dirent *de;
	while (dp && (de = readdir(dp)))
		if (!strncmp(de->d_name, prefix, strlen(prefix))) {
			char p[600];
			snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
			remove_tree(p);
		}
	if (dp)
		closedir(dp);
}

void vm_create_remove_files(struct kvzd *d, const char *name)
{
	char p[400];
	remove_stage_dirs(d, name);
	secrets_dir(d, name, p, sizeof(p));
	remove_tree(p);
	boot_dir(d, name, p, sizeof(p));
	remove_tree(p);
}

/* A private directory (0700) beneath STATE/sub/, made fresh. */
static int private_dir(struct kvzd *d, const char *sub, const char *name, char *out, size_t len,
		       struct op_error *e)
{
	char parent[300];
	snprintf(parent, sizeof(parent), "%s/%s", d->state_dir, sub);
	snprintf(out, len, "%s/%s", parent, name);
	if ((mkdir(parent, 0700) < 0 && errno != EEXIST) || (mkdir(out, 0700) < 0 && errno != EEXIST))
		return op_fail(e, 500, "cannot create %s: %s", out, strerror(errno));
	return 0;
}

static int write_secret(const char *dir, const char *file, const char *text, struct op_error *e)
{
	char p[600];
	snprintf(p, sizeof(p), "%s/%s", dir, file);
	unlink(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	size_t n = strlen(text);
	if (fd < 0 || write(fd, text, n) != (ssize_t)n || write(fd, "\n", 1) != 1) {
		if (fd >= 0)
			close(fd);
		return op_fail(e, 500, "cannot write %s: %s", p, strerror(errno));
	}
	return close(fd) < 0 ? op_fail(e, 500, "cannot write %s", p) : 0;
}

json_t *vm_create_submit(struct kvzd *d, const char *name, json_t *req, struct op_error *e)
{
	char dir[400];
	if (private_dir(d, "secrets", name, dir, sizeof(dir), e))
		return NULL;
	const char *key = cfg_str(req, "ssh_key"), *pw = cfg_str(req, "root_password");
	if ((key && write_secret(dir, "ssh_key", key, e)) ||
	    (pw && write_secret(dir, "root_password", pw, e))) {
		remove_tree(dir);
		return NULL;
	}
	json_t *params = json_pack("{s:b, s:b}", "ssh_key", key != NULL, "root_password", pw != NULL);
	json_t *job = job_submit(d, &vm_create_job, name, params, e);
	json_decref(params);
	if (!job)
		remove_tree(dir);
	return job;
}

/* ---- the job ---- */

/* "progress PHASE DONE TOTAL" from kvz-ct vm-image. */
static void parse_progress(struct job *j, char *line)
{
	char phase[32];
	unsigned long long done, total;
	if (sscanf(line, "progress %31s %llu %llu", phase, &done, &total) == 3)
		job_progress(j, phase, done, total);
}

/* Runs argv in a process group of its own, reading its progress lines,
 * until it ends or the job is cancelled (then the group is killed: apt,
 * mkfs and debugfs with it). Its last stderr line into err. */
static int run_helper(struct job *j, char *const argv[], const char *logp, char *err, size_t len)
{
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0) {
		snprintf(err, len, "pipe: %s", strerror(errno));
		return -1;
	}
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives kvzd's job */
		int null = open("/dev/null", O_RDONLY);
		int log = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(out[1], 1) < 0 || dup2(log, 2) < 0)
			_exit(126);
		execv(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(out[1]);
	if (pid < 0) {
		close(out[0]);
		snprintf(err, len, "fork: %s", strerror(errno));
		return -1;
	}
	char buf[1024];
	size_t used = 0;
	bool cancelled = false;
	for (;;) {
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		if (job_cancelled(j)) {
			cancelled = true;
			kill(-pid, SIGKILL);
			break;
		}
		if (poll(&p, 1, 200) <= 0)
			continue;
		ssize_t n = read(out[0], buf + used, sizeof(buf) - 1 - used);
		if (n <= 0)
			break;
		used += (size_t)n;
		buf[used] = 0;
		char *nl;
		while ((nl = strchr(buf, '\n'))) {
			*nl = 0;
			parse_progress(j, buf);
			used -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, used + 1);
		}
		if (used == sizeof(buf) - 1)
			used = 0; /* a line too long to be progress */
	}
	close(out[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (cancelled) {
		snprintf(err, len, "cancelled");
		return -1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	char tail[512] = "";
	FILE *f = fopen(logp, "r");
	while (f && fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		if (buf[0])
			snprintf(tail, sizeof(tail), "%.500s", buf);
	}
	if (f)
		fclose(f);
	snprintf(err, len, "%s", tail[0] ? tail : "kvz-ct vm-image failed");
	return -1;
}

static int make_from_template(struct kvzd *d, struct job *j, const char *name, json_t *cfg,
			      json_t *params, const char *img, struct op_error *e)
{
	char sec[400], logp[500], err[600];
	secrets_dir(d, name, sec, sizeof(sec));
	snprintf(logp, sizeof(logp), "%s/logs/%s.create.log", d->state_dir, name);
	struct argv a = {0};
	arg(&a, "%s", d->ct_bin);
	arg(&a, "vm-image");
	arg(&a, "--template");
	arg(&a, "%s", cfg_str(cfg, "template"));
	arg(&a, "--out");
	arg(&a, "%s", img);
	arg(&a, "--size");
	arg(&a, "%lld", (long long)json_integer_value(json_object_get(cfg, "disk_size")));
	arg(&a, "--hostname");
	arg(&a, "%s", cfg_str(cfg, "hostname"));
	if (cfg_str(cfg, "guest_ip")) {
		arg(&a, "--ip");
		arg(&a, "%s", cfg_str(cfg, "guest_ip"));
	}
	if (cfg_str(cfg, "guest_gw")) {
		arg(&a, "--gw");
		arg(&a, "%s", cfg_str(cfg, "guest_gw"));
	}
	if (json_is_true(json_object_get(params, "ssh_key"))) {
		arg(&a, "--ssh-key");
		arg(&a, "%s/ssh_key", sec);
	}
	if (json_is_true(json_object_get(params, "root_password"))) {
		arg(&a, "--root-password-file");
		arg(&a, "%s/root_password", sec);
	}
	int rc = run_helper(j, a.v, logp, err, sizeof(err));
	argv_free(&a);
	unlink(logp);
	return rc ? op_fail(e, 500, "%s", err) : 0;
}

static bool import_progress(void *arg, uint64_t done, uint64_t total)
{
	struct job *j = arg;
	job_progress(j, "copy", done, total);
	return !job_cancelled(j);
}

static int make_from_import(struct job *j, json_t *cfg, const char *img, struct op_error *e)
{
	char err[600];
	bool reflinked;
	if (file_clone(cfg_str(cfg, "import"), img, import_progress, j, &reflinked, err, sizeof(err)))
		return op_fail(e, 500, "%s", err);
	return 0;
}

static int vm_create_run(struct kvzd *d, struct job *j, const char *name, json_t *params,
			 struct op_error *e)
{
	json_t *g = store_guest_get(d->store, name);
	if (!g || strcmp(cfg_str(g, "state"), "creating")) {
		json_decref(g);
		return op_fail(e, 409, "guest %s is not being created", name);
	}
	json_t *cfg = json_deep_copy(json_object_get(g, "config"));
	json_decref(g);
	char img[320];
	guest_image_path(d, name, img, sizeof(img));
	int rc = cfg_str(cfg, "template") ? make_from_template(d, j, name, cfg, params, img, e)
					  : make_from_import(j, cfg, img, e);
	/* The image must boot the way it is asked to before the VM exists. */
	if (rc == 0) {
		json_object_set_new(cfg, "disk_path", json_string(img));
		job_progress(j, "check-boot", 0, 0);
		rc = vm_boot_prepare(d, name, cfg, e);
	}
	if (rc == 0 && job_cancelled(j))
		rc = op_fail(e, 409, "cancelled");
	char sec[400];
	secrets_dir(d, name, sec, sizeof(sec));
	remove_tree(sec);
	if (rc) {
		unlink(img);
		vm_create_remove_files(d, name);
		store_guest_delete(d->store, name);
		store_event_add(d->store, name, "create-failed", e->msg);
		json_decref(cfg);
		return -1;
	}
	json_object_del(cfg, "boot_kernel");
	json_object_del(cfg, "boot_initrd");
	json_object_del(cfg, "boot_root");
	store_guest_set_config(d->store, name, cfg);
	store_guest_set_state(d->store, name, "stopped");
	store_event_add(d->store, name, "created", "vm");
	json_decref(cfg);
	return 0;
}

/* A kvzd that died under the job: guests_adopt_all() has removed the
 * "creating" record and its disk (vm_remove_storage); the rest here. */
static void vm_create_recover(struct kvzd *d, json_t *job)
{
	const char *name = json_string_value(json_object_get(job, "guest"));
	json_t *g = name ? store_guest_get(d->store, name) : NULL;
	if (name && !g)
		vm_create_remove_files(d, name);
	json_decref(g);
}

const struct job_kind vm_create_job = {
	.type = "vm-create",
	.run = vm_create_run,
	.recover = vm_create_recover,
};

/* ---- boot ---- */

int vm_boot_prepare(struct kvzd *d, const char *name, json_t *cfg, struct op_error *e)
{
	const char *boot = cfg_str(cfg, "boot");
	if (!boot || strcmp(boot, "direct") || cfg_str(cfg, "kernel"))
		return 0;
	if (!cfg_str(cfg, "disk_path"))
		return op_fail(e, 409, "%s has no disk to boot from", name);
	char dir[400], err[600];
	if (private_dir(d, "boot", name, dir, sizeof(dir), e))
		return -1;
	struct boot_files b;
	if (boot_image_extract(cfg_str(cfg, "disk_path"), dir, &b, err, sizeof(err)))
		return op_fail(e, 409, "%s: cannot boot it directly: %s", name, err);
	json_object_set_new(cfg, "boot_kernel", json_string(b.kernel));
	json_object_set_new(cfg, "boot_initrd", json_string(b.initrd));
	json_object_set_new(cfg, "boot_root", json_string(b.root));
	return 0;
}
