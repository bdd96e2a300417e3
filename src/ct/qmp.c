/* The supervisor's QMP commands (see the kvz-ct section of
 * docs/architecture.md and the contract): query-status, set, query-stats,
 * stop, quit. They run on the QMP server thread. */
#include "supervisor.h"

#include "disk.h"
#include "qmp_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

static json_t *q_status(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct supervisor *s = opaque;
	pthread_mutex_lock(&s->lock);
	bool stopping = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return json_pack("{s:s,s:s,s:i}", "status", stopping ? "stopping" : "running",
			 "name", s->o->name, "init-pid", (int)s->init_pid);
}

/* Values arrive as strings ("512M:1G") or numbers (0.5, 200): both are
 * turned into the command line's syntax and parsed by the same code. */
static bool value_text(json_t *v, char *buf, size_t size)
{
	if (json_is_string(v))
		snprintf(buf, size, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(buf, size, "%.17g", json_real_value(v));
	else
		return false;
	return true;
}

static json_t *q_set(void *opaque, json_t *args, struct qmp_error *err)
{
	struct supervisor *s = opaque;
	struct ct_limits upd = {0};
	const char *key;
	json_t *v;
	char msg[512], text[256];
	json_object_foreach(args, key, v) {
		if (!value_text(v, text, sizeof(text))) {
			qmp_set_error(err, "GenericError", "'%s' must be a string or a number", key);
			return NULL;
		}
		if (!ct_limit_parse(&upd, key, text, msg, sizeof(msg))) {
			qmp_set_error(err, "GenericError", "%s", msg);
			return NULL;
		}
	}
	if (sup_apply_limits(s, &upd, msg, sizeof(msg)) < 0) {
		qmp_set_error(err, "GenericError", "%s", msg);
		return NULL;
	}
	return NULL;
}

static uint64_t read_counter(const char *veth, const char *name)
{
	char path[128], buf[32];
	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/%s", veth, name);
	FILE *f = fopen(path, "re");
	unsigned long long v = 0;
	if (f) {
		if (fgets(buf, sizeof(buf), f))
			sscanf(buf, "%llu", &v);
		fclose(f);
	}
	return v;
}

static json_t *q_stats(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	struct supervisor *s = opaque;
	struct cgroup_stats st;
	if (cgroup_read_stats(&s->cg, &st) < 0) {
		qmp_set_error(err, "GenericError", "cannot read the cgroup statistics of '%s'", s->o->name);
		return NULL;
	}
	struct statfs sf;
	uint64_t used = 0, size = 0;
	if (statfs(s->target, &sf) == 0) {
		size = (uint64_t)sf.f_blocks * (uint64_t)sf.f_bsize;
		used = size - (uint64_t)sf.f_bfree * (uint64_t)sf.f_bsize;
	}
	pthread_mutex_lock(&s->lock);
	uint64_t soft = s->limits.has_memory ? s->limits.mem_soft : 0;
	uint64_t hard = s->limits.has_memory ? s->limits.mem_hard : 0;
	pthread_mutex_unlock(&s->lock);
	/* The host end of the veth sends what the container receives. */
	uint64_t rx = s->veth[0] ? read_counter(s->veth, "tx_bytes") : 0;
	uint64_t tx = s->veth[0] ? read_counter(s->veth, "rx_bytes") : 0;
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
			 "cpu-usage-ns", (json_int_t)st.cpu_ns, "memory-used", (json_int_t)st.mem_used,
			 "memory-soft", (json_int_t)soft, "memory-hard", (json_int_t)hard,
			 "pids-current", (json_int_t)st.pids, "disk-used", (json_int_t)used,
			 "disk-size", (json_int_t)size, "net-rx-bytes", (json_int_t)rx,
			 "net-tx-bytes", (json_int_t)tx);
}

static json_t *request(struct supervisor *s, char cmd, int timeout, struct qmp_error *err)
{
	struct sup_request r = {.cmd = cmd, .timeout = timeout};
	if (write(s->ctl[1], &r, sizeof(r)) != (ssize_t)sizeof(r)) {
		qmp_set_error(err, "GenericError", "cannot reach the supervisor loop: %s", strerror(errno));
		return NULL;
	}
	return NULL;
}

static json_t *q_stop(void *opaque, json_t *args, struct qmp_error *err)
{
	json_t *t = json_object_get(args, "timeout");
	json_int_t timeout = 10;
	if (t && (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > 3600)) {
		qmp_set_error(err, "GenericError", "'timeout' must be an integer number of seconds 0..3600");
		return NULL;
	}
	if (t)
		timeout = json_integer_value(t);
	return request(opaque, 's', (int)timeout, err);
}

static json_t *q_quit(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	return request(opaque, 'q', 0, err);
}

/* {"dir": ABS, "leave-running": BOOL, "pre-dumps": 0..10, "client-pid":
 * PID, "page-server": BOOL, "hold": BOOL}: blocks this thread for the dump
 * (CRIU freezes the container meanwhile). dir is resolved as process
 * client-pid (which waits for the answer) sees it, else as we do.
 * page-server: the pages go over the socket given with getfd "mig"
 * (closed here after); hold: a migration's final dump (sup_release). */
static bool bool_or_absent(json_t *args, const char *key, struct qmp_error *err)
{
	json_t *v = json_object_get(args, key);
	if (!v || json_is_boolean(v))
		return true;
	qmp_set_error(err, "GenericError", "'%s' must be a boolean", key);
	return false;
}

static json_t *q_checkpoint(void *opaque, json_t *args, struct qmp_error *err)
{
	struct supervisor *s = opaque;
	const char *dir = json_string_value(json_object_get(args, "dir"));
	if (!dir || dir[0] != '/') {
		qmp_set_error(err, "GenericError", "'dir' must be an absolute path");
		return NULL;
	}
	if (!bool_or_absent(args, "leave-running", err) || !bool_or_absent(args, "page-server", err) ||
	    !bool_or_absent(args, "hold", err))
		return NULL;
	json_t *pre = json_object_get(args, "pre-dumps");
	if (pre && (!json_is_integer(pre) || json_integer_value(pre) < 0 || json_integer_value(pre) > 10)) {
		qmp_set_error(err, "GenericError", "'pre-dumps' must be an integer 0..10");
		return NULL;
	}
	json_t *client = json_object_get(args, "client-pid");
	if (client && (!json_is_integer(client) || json_integer_value(client) <= 0)) {
		qmp_set_error(err, "GenericError", "'client-pid' must be a process id");
		return NULL;
	}
	bool ps = json_is_true(json_object_get(args, "page-server"));
	if (ps && s->mig_fd < 0) {
		qmp_set_error(err, "GenericError", "'page-server' needs a socket given with getfd \"mig\"");
		return NULL;
	}
	struct sup_checkpoint_opts c = {
		.dir = dir, .client = client ? (pid_t)json_integer_value(client) : 0,
		.leave_running = json_is_true(json_object_get(args, "leave-running")),
		.pre = pre ? (int)json_integer_value(pre) : 0, .ps_fd = ps ? s->mig_fd : -1,
		.hold = json_is_true(json_object_get(args, "hold")),
	};
	char msg[1024];
	json_t *steps = json_array();
	int rc = sup_checkpoint(s, &c, steps, msg, sizeof(msg));
	if (ps) {
		close(s->mig_fd);
		s->mig_fd = -1;
	}
	if (rc < 0) {
		json_decref(steps);
		qmp_set_error(err, "GenericError", "%s", msg);
		return NULL;
	}
	return json_pack("{s:o}", "steps", steps);
}

/* {"fdname": "mig"} with a descriptor (SCM_RIGHTS): a migration's socket
 * for the next checkpoint's page server. */
static json_t *q_getfd(void *opaque, json_t *args, struct qmp_error *err)
{
	struct supervisor *s = opaque;
	const char *name = json_string_value(json_object_get(args, "fdname"));
	int fd = qmp_server_take_fd(s->qmp);
	if (!name || strcmp(name, "mig") || fd < 0) {
		if (fd >= 0)
			close(fd);
		qmp_set_error(err, "GenericError", "getfd takes {\"fdname\": \"mig\"} and a descriptor");
		return NULL;
	}
	if (s->mig_fd >= 0)
		close(s->mig_fd);
	s->mig_fd = fd;
	return json_object();
}

/* {"end": BOOL}: the migration this container is held for is over: end
 * (the target runs it) or resume here. */
static json_t *q_release(void *opaque, json_t *args, struct qmp_error *err)
{
	json_t *end = json_object_get(args, "end");
	if (!json_is_boolean(end)) {
		qmp_set_error(err, "GenericError", "'end' must be a boolean");
		return NULL;
	}
	char msg[512];
	if (sup_release(opaque, json_is_true(end), msg, sizeof(msg)) < 0) {
		qmp_set_error(err, "GenericError", "%s", msg);
		return NULL;
	}
	return json_object();
}

static const struct qmp_command commands[] = {
	{"query-status", q_status}, {"set", q_set}, {"query-stats", q_stats},
	{"stop", q_stop}, {"quit", q_quit}, {"checkpoint", q_checkpoint},
	{"getfd", q_getfd}, {"release", q_release},
};

int sup_qmp_start(struct supervisor *s, char *err, size_t len)
{
	s->qmp = qmp_server_start(s->qmp_path, "kvz-ct", commands,
				  sizeof(commands) / sizeof(commands[0]), s, err, len);
	return s->qmp ? 0 : -1;
}

int sup_apply_limits(struct supervisor *s, const struct ct_limits *upd, char *err, size_t len)
{
	if (upd->has_disk) {
		if (!s->image[0]) {
			snprintf(err, len, "container '%s' runs on --rootfs, it has no disk image to grow", s->o->name);
			return -1;
		}
		if (disk_grow(s->image, s->loopdev, s->target, upd->disk, err, len) < 0)
			return -1;
	}
	pthread_mutex_lock(&s->lock);
	struct ct_limits full = s->limits;
	ct_limits_merge(&full, upd);
	int rc = cgroup_apply(&s->cg, upd, &full, err, len);
	if (rc == 0)
		s->limits = full;
	pthread_mutex_unlock(&s->lock);
	return rc;
}
