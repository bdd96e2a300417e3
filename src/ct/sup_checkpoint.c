/* Checkpoint and restore, the supervisor's side. CRIU (criu.h) dumps the
 * container's init with its namespaces; what CRIU does not keep goes into
 * DIR/kvz-ct.json beside its images: run's arguments (so that restore sets
 * the cgroup, bridge, confinement and console up as run did), the limits
 * in force (`set` may have changed them), the id range and the console's
 * tty. See docs/architecture.md, "kvz-ct checkpoint and restore". */
#include "supervisor.h"

#include "criu.h"
#include "kernfs.h"
#include "log.h"
#include "idmount.h"
#include "namespaces.h"
#include "netlink.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define META "kvz-ct.json"

static json_t *meta_of(struct supervisor *s, const char *console_tty)
{
	const struct run_opts *o = s->o;
	json_t *args = json_array();
	for (int i = 0; i < o->run_argc; i++) {
		/* A staged restore's fd means nothing to a later restore, and
		 * how this one restored is no choice for the next. */
		if (!strcmp(o->run_argv[i], "--restore-go-fd")) {
			i++;
			continue;
		}
		if (!strncmp(o->run_argv[i], "--restore-go-fd=", 16) ||
		    !strcmp(o->run_argv[i], "--lazy-pages"))
			continue;
		json_array_append_new(args, json_string(o->run_argv[i]));
	}
	pthread_mutex_lock(&s->lock);
	json_t *limits = ct_limits_to_json(&s->limits);
	pthread_mutex_unlock(&s->lock);
	return json_pack("{s:i,s:s,s:o,s:o,s:o,s:s?}", "version", 1, "name", o->name, "run-args", args,
			 "limits", limits, "idmap", o->privileged ? json_null() : idmap_to_json(&s->idmap),
			 "console-tty", console_tty);
}

/* Where the images go, as the client sees dir: its path resolved through
 * /proc/PID/root of the client, which waits for our answer. Our own mount
 * namespace is a private copy made when the container started and misses
 * what was mounted since (a tmpfs, NFS for a migration). */
static int open_dir(const char *dir, pid_t client, char *err, size_t len)
{
	char where[PATH_MAX + 32];
	if (client > 0)
		snprintf(where, sizeof(where), "/proc/%d/root%s", (int)client, dir);
	else
		snprintf(where, sizeof(where), "%s", dir);
	int fd = open(where, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		snprintf(err, len, "cannot open checkpoint directory %s: %s", dir, strerror(errno));
	return fd;
}

/* Cancel: the client (kvz-ct checkpoint) ended by Ctrl-C or SIGTERM. Only
 * seen between criu runs: a criu killed mid-dump could leave its parasite
 * in a task; each run either completes or lets the tasks run on. */
static int cancelled(pid_t client, const char *after, char *err, size_t len)
{
	if (client <= 0 || pid_alive(client))
		return 0;
	snprintf(err, len, "cancelled (the client went away) after %s; the container runs on", after);
	return -1;
}

/* Bytes the peer acknowledged on a TCP socket (0 for another kind): what
 * a criu run sent to the page server. */
static uint64_t sent_on(int fd)
{
	struct tcp_info ti;
	socklen_t sl = sizeof(ti);
	if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &sl) < 0 ||
	    sl < offsetof(struct tcp_info, tcpi_bytes_acked) + sizeof(ti.tcpi_bytes_acked))
		return 0;
	return ti.tcpi_bytes_acked;
}

/* What one criu run wrote of memory into sub (under dfd; "." for dfd
 * itself): the sizes of its pages-*.img, or with a page server what went
 * over its socket; appended to steps as step with the run's duration. */
static void record_step(json_t *steps, int dfd, const char *sub, const char *step, uint64_t net,
			int64_t ms)
{
	if (!steps)
		return;
	int fd = openat(dfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	json_int_t bytes = (json_int_t)net;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		struct stat st;
		if (strncmp(e->d_name, "pages-", 6) || n < 10 || strcmp(e->d_name + n - 4, ".img") ||
		    fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		bytes += st.st_size;
	}
	closedir(d);
	json_array_append_new(steps, json_pack("{s:s,s:I,s:I}", "step", step, "bytes", bytes, "ms",
					       (json_int_t)ms));
}

/* One criu run, recorded as step. */
static int dump_step(const struct criu_dump *d, int dfd, const char *sub, const char *step,
		     json_t *steps, char *err, size_t len)
{
	uint64_t before = sent_on(d->ps_fd);
	int64_t t0 = now_ms();
	if (criu_dump(d, err, len) < 0)
		return -1;
	record_step(steps, dfd, sub, step, sent_on(d->ps_fd) - before, now_ms() - t0);
	return 0;
}

/* Iterative pre-dumps (soft-dirty tracking) while the container runs:
 * DIR/pre-1 .. pre-N, each holding only what changed since the one
 * before, so that the final dump, the only one that freezes the container
 * for long, writes little. Sets last to the last one's name ("" with
 * none). */
static int pre_dumps(struct supervisor *s, int dfd, const struct sup_checkpoint_opts *c,
		     json_t *steps, char *last, size_t size, char *err, size_t len)
{
	last[0] = 0;
	for (int i = 1; i <= c->pre; i++) {
		if (cancelled(c->client, last[0] ? last : "no pre-dump", err, len) < 0)
			return -1;
		char name[16], sub[64], shown[PATH_MAX], prev[32];
		snprintf(name, sizeof(name), "pre-%d", i);
		snprintf(sub, sizeof(sub), "/proc/self/fd/%d/%s", dfd, name);
		snprintf(shown, sizeof(shown), "%s/%s", c->dir, name);
		snprintf(prev, sizeof(prev), "../pre-%d", i - 1);
		if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST) {
			snprintf(err, len, "cannot create %s: %s", shown, strerror(errno));
			return -1;
		}
		struct criu_dump d = {.pid = s->init_pid, .dir = sub, .shown = shown, .dir_fd = dfd,
				      .pre = true, .track_mem = true, .prev = i > 1 ? prev : NULL,
				      .hide = s->stage, .ps_fd = c->ps_fd};
		if (dump_step(&d, dfd, name, name, steps, err, len) < 0)
			return -1;
		snprintf(last, size, "%s", name);
	}
	return 0;
}

static int write_meta(struct supervisor *s, int dfd, const char *tty, char *err, size_t len)
{
	int fd = openat(dfd, META ".tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	json_t *m = meta_of(s, tty[0] ? tty : NULL);
	int rc = fd < 0 ? -1 : json_dumpfd(m, fd, JSON_INDENT(1));
	json_decref(m);
	if (fd >= 0 && close(fd) < 0)
		rc = -1;
	if (rc < 0)
		snprintf(err, len, "cannot write " META ".tmp: %s", strerror(errno));
	return rc;
}

/* The container's file system's writes into its private image, where a
 * migration reads what changed. */
static int flush_fs(const struct supervisor *s, char *err, size_t len)
{
	int fd = open(s->target, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || syncfs(fd) < 0) {
		snprintf(err, len, "cannot flush the container's file system: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Hold (a migration's final dump): the container is frozen before criu
 * runs, criu (--freeze-cgroup, --leave-running) leaves it frozen as it
 * found it, and its veth goes down so that the host answers none of its
 * connections meanwhile. sup_release() ends the hold either way. */
static int hold_begin(struct supervisor *s, char *fdir, size_t size, char *err, size_t len)
{
	/* Flushed while it still runs, so that the frozen flush in
	 * hold_settle() writes only what came after. */
	if (flush_fs(s, err, len) < 0 || cgroup_freezer_dir(&s->cg, fdir, size, err, len) < 0 ||
	    cgroup_freeze(&s->cg, true, err, len) < 0)
		return -1;
	pthread_mutex_lock(&s->lock);
	s->held = true;
	pthread_mutex_unlock(&s->lock);
	s->frozen_at = now_ms();
	return 0;
}

/* After the final dump of a hold: frozen (again, should criu not have
 * restored the state), unplugged, and its file system's writes in the
 * private image, where the migration reads what changed. */
static int hold_settle(struct supervisor *s, char *err, size_t len)
{
	if (cgroup_freeze(&s->cg, true, err, len) < 0 || flush_fs(s, err, len) < 0)
		return -1;
	if (s->veth[0] && nl_link_down(s->veth, err, len) < 0)
		return -1;
	return 0;
}

/* kvz-ct.json is written as .tmp first and renamed once CRIU's images are
 * complete: a directory without it holds no usable checkpoint. */
static int checkpoint_into(struct supervisor *s, int dfd, const struct sup_checkpoint_opts *c,
			   json_t *steps, char *err, size_t len)
{
	char tty[64] = "", last[32], images[32], fdir[PATH_MAX];
	if (faccessat(dfd, META, F_OK, 0) == 0) {
		snprintf(err, len, "%s already holds a checkpoint", c->dir);
		return -1;
	}
	if (s->has_console && criu_tty_key(s->con.slave_fd, tty, sizeof(tty), err, len) < 0)
		return -1;
	if (write_meta(s, dfd, tty, err, len) < 0)
		return -1;
	snprintf(images, sizeof(images), "/proc/self/fd/%d", dfd);
	int rc = pre_dumps(s, dfd, c, steps, last, sizeof(last), err, len);
	if (rc == 0 && c->pre > 0)
		rc = cancelled(c->client, last, err, len);
	if (rc == 0 && c->hold)
		rc = hold_begin(s, fdir, sizeof(fdir), err, len);
	struct criu_dump d = {.pid = s->init_pid, .dir = images, .shown = c->dir, .dir_fd = dfd,
			      .leave_running = c->leave_running || c->hold,
			      .console_tty = tty[0] ? tty : NULL,
			      .veth = s->veth[0] ? s->veth : NULL, .hide = s->stage,
			      .track_mem = c->pre > 0, .prev = last[0] ? last : NULL,
			      .ps_fd = c->ps_fd, .freeze_cgroup = c->hold ? fdir : NULL};
	if (rc == 0)
		rc = dump_step(&d, dfd, ".", "dump", steps, err, len);
	int64_t dumped = now_ms();
	if (rc == 0 && c->hold)
		rc = hold_settle(s, err, len);
	/* A hold's freeze began before criu ran and lasts on: when it began
	 * and what the settling after criu took (kvzd's downtime counts from
	 * frozen-at, not from the dump's end minus its time). */
	json_t *last_step = steps ? json_array_get(steps, json_array_size(steps) - 1) : NULL;
	if (rc == 0 && c->hold && last_step) {
		json_object_set_new(last_step, "frozen-at", json_integer(s->frozen_at));
		json_object_set_new(last_step, "settle-ms", json_integer(now_ms() - dumped));
	}
	if (rc == 0 && renameat(dfd, META ".tmp", dfd, META) < 0) {
		snprintf(err, len, "cannot write %s/" META ": %s", c->dir, strerror(errno));
		rc = -1;
	}
	if (rc < 0)
		unlinkat(dfd, META ".tmp", 0);
	if (rc < 0 && c->hold)
		sup_release(s, false, NULL, 0);
	return rc;
}

int sup_checkpoint(struct supervisor *s, const struct sup_checkpoint_opts *c, json_t *steps,
		   char *err, size_t len)
{
	if (c->dir[0] != '/') {
		snprintf(err, len, "checkpoint directory '%s' is not an absolute path", c->dir);
		return -1;
	}
	pthread_mutex_lock(&s->lock);
	bool busy = s->stopping || s->checkpointing || s->held;
	if (!busy) {
		s->checkpointing = true;
		/* Set before the dump: init dies when CRIU has its images, and
		 * the main loop may see that before we see criu exit. */
		s->checkpointed = !c->leave_running && !c->hold;
	}
	pthread_mutex_unlock(&s->lock);
	if (busy) {
		snprintf(err, len, "container '%s' is stopping, being checkpointed or held for a migration",
			 s->o->name);
		return -1;
	}
	int dfd = open_dir(c->dir, c->client, err, len);
	int rc = dfd < 0 ? -1 : checkpoint_into(s, dfd, c, steps, err, len);
	if (dfd >= 0)
		close(dfd);
	pthread_mutex_lock(&s->lock);
	s->checkpointing = false;
	if (rc < 0)
		s->checkpointed = false;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

int sup_release(struct supervisor *s, bool end, char *err, size_t len)
{
	char ignored[256];
	if (!err) {
		err = ignored;
		len = sizeof(ignored);
	}
	pthread_mutex_lock(&s->lock);
	bool held = s->held;
	s->held = false;
	if (held && end)
		s->checkpointed = true;
	pthread_mutex_unlock(&s->lock);
	if (!held) {
		snprintf(err, len, "container '%s' is not held for a migration", s->o->name);
		return -1;
	}
	/* Ended: killed while frozen (SIGKILL reaches frozen tasks once
	 * thawed, on cgroup v1 only then), the supervisor exits as after a
	 * checkpoint. Resumed: plugged in, then thawed. */
	if (end && s->init_pid > 0)
		kill(s->init_pid, SIGKILL);
	int rc = 0;
	if (!end && s->veth[0])
		rc = nl_link_up(s->veth, err, len);
	if (cgroup_freeze(&s->cg, false, err, len) < 0)
		rc = -1;
	return rc;
}

/* A process in a new user namespace with the container's maps, alive until
 * *hold is closed: the restored root is idmapped to it before CRIU makes
 * the container's own namespace with the same maps (an idmapped mount
 * follows the maps, not the namespace). */
static pid_t userns_holder(const struct idmap *m, int *hold, char *err, size_t len)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		snprintf(err, len, "pipe: %s", strerror(errno));
		return -1;
	}
	struct clone_args a = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
	long pid = syscall(SYS_clone3, &a, sizeof(a));
	if (pid == 0) {
		char c;
		close(p[1]);
		_exit(read(p[0], &c, 1) < 0 ? 1 : 0);
	}
	close(p[0]);
	if (pid < 0 || ns_write_id_maps((pid_t)pid, m, err, len) < 0) {
		if (pid < 0)
			snprintf(err, len, "cannot create a user namespace: %s", strerror(errno));
		close(p[1]);
		if (pid > 0)
			waitpid((pid_t)pid, NULL, 0);
		return -1;
	}
	*hold = p[1];
	return (pid_t)pid;
}

/* The container's root on the stage as run mounts it (idmapped with a user
 * namespace), without /proc and /sys: CRIU mounts those from its images. */
static int stage_root(struct supervisor *s, char *err, size_t len)
{
	if (sup_make_stage(s, err, len) < 0)
		return -1;
	int hold = -1;
	pid_t holder = 0;
	if (!s->o->privileged && (holder = userns_holder(&s->idmap, &hold, err, len)) < 0)
		return -1;
	int tree = idmount_tree(s->target, holder, !s->o->rootfs, err, len);
	if (holder > 0) {
		close(hold);
		waitpid(holder, NULL, 0);
	}
	if (tree < 0)
		return -1;
	int rc = idmount_place(tree, s->stage, err, len);
	close(tree);
	return rc;
}

static json_t *load_meta(const char *dir, char *err, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/" META, dir);
	json_error_t je;
	json_t *m = json_load_file(path, 0, &je);
	if (!m)
		snprintf(err, len, "%s holds no kvz-ct checkpoint (%s)", dir, je.text);
	return m;
}

/* CRIU restores the user namespace with the maps it dumped: the range
 * claimed now must be that one. */
static int check_idmap(struct supervisor *s, json_t *meta, char *err, size_t len)
{
	if (s->o->privileged)
		return 0;
	json_t *im = json_object_get(meta, "idmap");
	json_int_t uid = json_integer_value(json_object_get(im, "uid"));
	json_int_t gid = json_integer_value(json_object_get(im, "gid"));
	if (uid == s->idmap.uid && gid == s->idmap.gid)
		return 0;
	snprintf(err, len, "the id range of '%s' is %u/%u now, %lld/%lld in the checkpoint: its user "
		 "namespace cannot come back with other ids", s->o->name, s->idmap.uid, s->idmap.gid,
		 (long long)uid, (long long)gid);
	return -1;
}

/* CRIU opens some images (tty-info.img, the pages of each task) from the
 * restored tasks, which are then root of the container's user namespace:
 * to the host an unprivileged uid without CAP_DAC_OVERRIDE. The images
 * (0600, dir 0700, root's) are shared read-only with the container's
 * root group: group gid, g+r, directories g+rx; root stays the owner, so
 * nothing of the container's can change them. Depth: D and its pre-N. */
static int share_images(int dfd, const char *shown, gid_t gid, int depth, char *err, size_t len)
{
	if (fchown(dfd, (uid_t)-1, gid) < 0 || fchmod(dfd, 0750) < 0) {
		snprintf(err, len, "cannot share %s with the container's root: %s", shown, strerror(errno));
		return -1;
	}
	int dup_fd = dup(dfd);
	DIR *d = dup_fd < 0 ? NULL : fdopendir(dup_fd);
	if (!d) {
		snprintf(err, len, "cannot read %s: %s", shown, strerror(errno));
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		struct stat st;
		if (e->d_name[0] == '.' || fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (S_ISDIR(st.st_mode) && depth > 0) {
			int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			rc = sub < 0 ? -1 : share_images(sub, shown, gid, depth - 1, err, len);
			if (sub >= 0)
				close(sub);
		} else if (S_ISREG(st.st_mode) &&
			   (fchownat(dfd, e->d_name, (uid_t)-1, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
			    fchmodat(dfd, e->d_name, (st.st_mode & 0700) | 0040, 0) < 0)) {
			snprintf(err, len, "cannot share %s/%s with the container's root: %s", shown,
				 e->d_name, strerror(errno));
			rc = -1;
		}
	}
	closedir(d);
	return rc;
}

static int share_with_container(struct supervisor *s, const char *dir, char *err, size_t len)
{
	if (s->o->privileged)
		return 0;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, len, "cannot open %s: %s", dir, strerror(errno));
		return -1;
	}
	int rc = share_images(dfd, dir, s->idmap.gid, 1, err, len);
	close(dfd);
	return rc;
}

/* The restored tasks are born in criu's cgroup: the container's. */
static int criu_into_cgroup(pid_t criu, void *arg, char *err, size_t len)
{
	struct supervisor *s = arg;
	return cgroup_attach(&s->cg, criu, err, len);
}

int sup_restore(struct supervisor *s, char *err, size_t len)
{
	const struct run_opts *o = s->o;
	json_t *meta = load_meta(o->restore_dir, err, len);
	if (!meta)
		return -1;
	/* cmd_run checked this before a plain restore; a staged one's
	 * images came after its start. */
	const char *saved = json_string_value(json_object_get(meta, "name"));
	if (!saved || strcmp(saved, o->name)) {
		snprintf(err, len, "%s is a checkpoint of '%s', not of '%s'", o->restore_dir,
			 saved ? saved : "?", o->name);
		json_decref(meta);
		return -1;
	}
	const char *tty = json_string_value(json_object_get(meta, "console-tty"));
	int rc = -1;
	if (check_idmap(s, meta, err, len) < 0 || share_with_container(s, o->restore_dir, err, len) < 0)
		goto out;
	sup_mark(s, "images-shared");
	if (stage_root(s, err, len) < 0)
		goto out;
	sup_mark(s, "root-staged");
	if (tty && !s->has_console) {
		snprintf(err, len, "the checkpoint has a console: restore needs --console-socket");
		goto out;
	}
	if (s->has_console && sup_own_console(s, err, len) < 0)
		goto out;
	/* Named after us, not init: CRIU makes the pair before init has a
	 * pid here. Recorded first, so that teardown removes it on failure. */
	if (o->net.enabled)
		snprintf(s->veth, sizeof(s->veth), "kvz%dr", (int)getpid());
	/* The dump recorded the cgroup of the host it was made on; the
	 * restored tasks go to this one's (another OWN on another host). */
	char roots[CGROUP_MAX_OWN][CGROUP_ROOT_ARG];
	const char *root_args[CGROUP_MAX_OWN];
	size_t nroots = cgroup_restore_roots(&s->cg, roots, CGROUP_MAX_OWN);
	for (size_t i = 0; i < nroots; i++)
		root_args[i] = roots[i];
	struct criu_restore r = {
		.dir = o->restore_dir, .root = s->stage, .veth = o->net.enabled ? s->veth : NULL,
		.console_tty = s->has_console ? tty : NULL, .console_fd = s->con.slave_fd,
		.console_path = s->con.slave_path, .cgroup_roots = root_args,
		.ncgroup_roots = nroots, .before = criu_into_cgroup, .arg = s,
		.lazy = o->lazy_pages,
	};
	if (o->lazy_pages && criu_lazy_pages(o->restore_dir, err, len) < 0)
		goto out;
	pid_t pid = criu_restore(&r, err, len);
	if (pid < 0)
		goto out;
	/* criu's own word when it has one (it cleans up after resuming). */
	s->thawed_at = r.resumed_at > 0 && r.resumed_at <= now_ms() ? r.resumed_at : now_ms();
	sup_mark(s, "criu-restore");
	json_object_set_new(s->times, "tasks-resumed", json_integer(s->thawed_at - s->t0));
	s->init_pid = pid;
	/* CRIU made /proc and /sys in the restored namespaces: not locked as
	 * at a start; they are replaced by a locked copy. */
	if (kernfs_relock(s->stage, pid, &s->cg, err, len) < 0)
		goto out;
	sup_mark(s, "kernfs-relock");
	rc = criu_unlock_network(pid, err, len);
	if (rc == 0 && o->net.enabled)
		rc = sup_veth_attach(s, err, len);
	sup_mark(s, "network");
	/* On another host its MAC is behind another port: say so at once,
	 * or its peers' frames go to the old port until it sends. Failing
	 * that is a warning: it runs, and is found once it sends. */
	char why[256];
	if (rc == 0 && o->net.enabled && net_announce(pid, s->mac, o->net.ip, why, sizeof(why)) < 0)
		kvz_warn("%s", why);
out:
	json_decref(meta);
	return rc;
}
