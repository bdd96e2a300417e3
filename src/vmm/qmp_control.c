#include "qmp_control.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "migration_tcp.h"
#include "qmp_block.h"
#include "qmp_media.h"
#include "qmp_server.h"
#include "virtio/virtio_devices.h"

static const char *state_name(enum vm_run_state s)
{
	switch (s) {
	case VM_RUNNING: return "running";
	case VM_PAUSED: return "paused";
	default: return "shutdown";
	}
}

static json_t *cmd_query_status(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct vmm_control *ctl = opaque;
	enum vm_run_state s = vm_run_state(ctl->vm);
	const char *name = state_name(s);
	/* QEMU's names while a save runs and after it completed. */
	if (s == VM_PAUSED && migration_active(&ctl->mig))
		name = "finish-migrate";
	else if (s == VM_PAUSED && migration_postmigrate(&ctl->mig))
		name = "postmigrate";
	return json_pack("{s:s,s:b,s:b}", "status", name, "running", s == VM_RUNNING,
			 "singlestep", 0);
}

static bool refuse_while_migrating(struct vmm_control *ctl, struct qmp_error *err)
{
	if (!migration_active(&ctl->mig))
		return false;
	qmp_set_error(err, "GenericError", "a migration is in progress");
	return true;
}

static json_t *cmd_stop(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	struct vmm_control *ctl = opaque;
	if (vm_run_state(ctl->vm) == VM_PAUSED)
		return NULL;
	if (!vm_pause(ctl->vm)) {
		qmp_set_error(err, "GenericError", "the machine is shutting down");
		return NULL;
	}
	qmp_server_emit(ctl->qmp, "STOP", NULL);
	return NULL;
}

static json_t *cmd_cont(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	struct vmm_control *ctl = opaque;
	if (refuse_while_migrating(ctl, err))
		return NULL;
	if (vm_run_state(ctl->vm) == VM_RUNNING) {
		migration_clear_postmigrate(&ctl->mig);
		return NULL;
	}
	/* After a save (a completed migration, a snapshot) the disks' locks
	 * were let go; one taken since by another process (the target, on
	 * shared storage) keeps the machine paused, as QEMU's cont does. */
	char why[300];
	if (migration_activate_disks(&ctl->mig, why, sizeof(why)) < 0) {
		kvz_error("cont: %s; the machine stays paused", why);
		qmp_set_error(err, "GenericError", "cannot resume: %s; the machine stays paused",
			      why);
		return NULL;
	}
	migration_clear_postmigrate(&ctl->mig);
	if (!vm_resume(ctl->vm)) {
		qmp_set_error(err, "GenericError", "the machine is shutting down");
		return NULL;
	}
	qmp_server_emit(ctl->qmp, "RESUME", NULL);
	return NULL;
}

static json_t *cmd_quit(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct vmm_control *ctl = opaque;
	vm_request_stop(ctl->vm, VM_STOP_QUIT, "QMP quit");
	return NULL;
}

static json_t *cmd_system_reset(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	struct vmm_control *ctl = opaque;
	char msg[256];
	if (refuse_while_migrating(ctl, err))
		return NULL;
	bool was_running = vm_run_state(ctl->vm) == VM_RUNNING;
	/* Devices are reset while every vCPU is parked. */
	if (!vm_pause(ctl->vm)) {
		qmp_set_error(err, "GenericError", "the machine is shutting down");
		return NULL;
	}
	/* vm_reset resets every device of the state registry (virtio too). */
	int rc = vm_reset(ctl->vm, msg, sizeof(msg));
	if (was_running)
		vm_resume(ctl->vm);
	if (rc < 0) {
		qmp_set_error(err, "GenericError", "reset failed: %s", msg);
		return NULL;
	}
	qmp_server_emit(ctl->qmp, "RESET", json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-system-reset"));
	return NULL;
}

/* As QEMU: presses the ACPI power button and succeeds whether or not the
 * guest listens; POWERDOWN tells the client it was pressed. */
static json_t *cmd_system_powerdown(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	struct vmm_control *ctl = opaque;
	if (vm_run_state(ctl->vm) == VM_SHUTDOWN) {
		qmp_set_error(err, "GenericError", "the machine is shutting down");
		return NULL;
	}
	if (vm_press_power_button(ctl->vm) < 0)
		kvz_warn("system_powerdown: the guest has not enabled the ACPI power button");
	qmp_server_emit(ctl->qmp, "POWERDOWN", NULL);
	return NULL;
}

static json_t *cmd_query_cpus_fast(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct vmm_control *ctl = opaque;
	vm_wait_started(ctl->vm); /* thread ids, even when asked at once */
	json_t *list = json_array();
	for (int i = 0; i < vm_vcpu_count(ctl->vm); i++) {
		char path[64];
		snprintf(path, sizeof(path), "/machine/unattached/device[%d]", i);
		json_array_append_new(list, json_pack("{s:i,s:i,s:s,s:s}", "cpu-index", i, "thread-id",
						      vm_vcpu_tid(ctl->vm, i), "target", "x86_64",
						      "qom-path", path));
	}
	return list;
}

static json_t *cmd_balloon(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	json_t *v = json_object_get(args, "value");
	if (!json_is_integer(v) || json_integer_value(v) <= 0) {
		qmp_set_error(err, "GenericError", "balloon needs a positive integer 'value' in bytes");
		return NULL;
	}
	if (!ctl->vd) {
		qmp_set_error(err, "DeviceNotActive", "No balloon device has been activated");
		return NULL;
	}
	char msg[256] = "";
	if (virtio_devices_balloon_set(ctl->vd, (uint64_t)json_integer_value(v), msg, sizeof(msg)) < 0)
		qmp_set_error(err, "DeviceNotActive", "%s", msg);
	return NULL;
}

static json_t *cmd_query_balloon(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	struct vmm_control *ctl = opaque;
	if (!ctl->vd) {
		qmp_set_error(err, "DeviceNotActive", "No balloon device has been activated");
		return NULL;
	}
	char msg[256] = "";
	json_t *r = virtio_devices_balloon_query(ctl->vd, msg, sizeof(msg));
	if (!r)
		qmp_set_error(err, "DeviceNotActive", "%s", msg);
	return r;
}

static json_t *cmd_query_blockstats(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct vmm_control *ctl = opaque;
	if (!ctl->vd)
		return json_array();
	return virtio_devices_blockstats(ctl->vd);
}

/* ---- descriptors passed over the socket (QEMU's getfd/closefd) ---- */

static int find_fd(struct vmm_control *ctl, const char *name)
{
	for (int i = 0; i < VMM_MAX_NAMED_FDS; i++)
		if (ctl->fds[i].fd >= 0 && !strcmp(ctl->fds[i].name, name))
			return i;
	return -1;
}

static const char *fdname_arg(json_t *args, struct qmp_error *err)
{
	const char *name = json_string_value(json_object_get(args, "fdname"));
	if (!name || !name[0] || strlen(name) >= sizeof(((struct vmm_control *)0)->fds[0].name) ||
	    (name[0] >= '0' && name[0] <= '9')) {
		qmp_set_error(err, "GenericError", "'fdname' must be a name that does not start with a digit");
		return NULL;
	}
	return name;
}

static json_t *cmd_getfd(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	const char *name = fdname_arg(args, err);
	if (!name)
		return NULL;
	int fd = qmp_server_take_fd(ctl->qmp);
	if (fd < 0) {
		qmp_set_error(err, "GenericError", "No file descriptor supplied via SCM_RIGHTS");
		return NULL;
	}
	int i = find_fd(ctl, name);
	for (int k = 0; i < 0 && k < VMM_MAX_NAMED_FDS; k++)
		if (ctl->fds[k].fd < 0)
			i = k;
	if (i < 0) {
		close(fd);
		qmp_set_error(err, "GenericError", "too many named descriptors (at most %d)", VMM_MAX_NAMED_FDS);
		return NULL;
	}
	if (ctl->fds[i].fd >= 0)
		close(ctl->fds[i].fd);   /* same name: replaced, as in QEMU */
	snprintf(ctl->fds[i].name, sizeof(ctl->fds[i].name), "%s", name);
	ctl->fds[i].fd = fd;
	return NULL;
}

static json_t *cmd_closefd(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	const char *name = fdname_arg(args, err);
	if (!name)
		return NULL;
	int i = find_fd(ctl, name);
	if (i < 0) {
		qmp_set_error(err, "GenericError", "File descriptor named '%s' not found", name);
		return NULL;
	}
	close(ctl->fds[i].fd);
	ctl->fds[i].fd = -1;
	return NULL;
}

int vmm_control_take_fd(struct vmm_control *ctl, const char *name)
{
	int i = find_fd(ctl, name);
	if (i < 0)
		return -1;
	int fd = ctl->fds[i].fd;
	ctl->fds[i].fd = -1;
	return fd;
}

/* ---- migration (snapshot to a file) ---- */

/* The descriptor a URI names: fd:NAME (taken out of the table, as QEMU
 * does) or file:PATH (opened here: only without the seccomp filter, which
 * forbids open; the caller passes files with getfd instead). */
static int uri_fd(struct vmm_control *ctl, const char *uri, struct qmp_error *err)
{
	if (!strncmp(uri, "fd:", 3)) {
		int fd = vmm_control_take_fd(ctl, uri + 3);
		if (fd < 0)
			qmp_set_error(err, "GenericError", "File descriptor named '%s' not found", uri + 3);
		return fd;
	}
	if (!strncmp(uri, "file:", 5) && uri[5]) {
		if (!ctl->may_open_files) {
			qmp_set_error(err, "GenericError",
				      "file: URIs need kvz-vmm to open files, which its seccomp filter forbids: pass the file with getfd and use fd:NAME");
			return -1;
		}
		int fd = open(uri + 5, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		if (fd < 0)
			qmp_set_error(err, "GenericError", "%s: %s", uri + 5, strerror(errno));
		return fd;
	}
	if (!strncmp(uri, "tcp:", 4)) {
		if (!ctl->may_open_files) {
			qmp_set_error(err, "GenericError",
				      "tcp: URIs need kvz-vmm to make connections, which its seccomp filter forbids: pass a connected socket with getfd and use fd:NAME (or run with --seccomp off)");
			return -1;
		}
		char why[300];
		int fd = mig_tcp_connect(uri + 4, why, sizeof(why));
		if (fd < 0)
			qmp_set_error(err, "GenericError", "%s", why);
		return fd;
	}
	qmp_set_error(err, "GenericError", "unsupported migration URI '%.100s' (expected fd:NAME, tcp:HOST:PORT or file:PATH)", uri);
	return -1;
}

static json_t *cmd_migrate(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	const char *uri = json_string_value(json_object_get(args, "uri"));
	if (!uri) {
		qmp_set_error(err, "GenericError", "migrate needs a string 'uri'");
		return NULL;
	}
	if (vm_run_state(ctl->vm) == VM_SHUTDOWN) {
		qmp_set_error(err, "GenericError", "the machine is shutting down");
		return NULL;
	}
	json_t *blk = json_object_get(args, "blk");
	if (blk && !json_is_boolean(blk)) {
		qmp_set_error(err, "GenericError", "migrate: 'blk' must be a boolean");
		return NULL;
	}
	if (refuse_while_migrating(ctl, err))
		return NULL;
	int fd = uri_fd(ctl, uri, err);
	if (fd < 0)
		return NULL;
	char msg[256];
	if (migration_start(&ctl->mig, fd, json_is_true(blk), msg, sizeof(msg)) < 0)
		qmp_set_error(err, "GenericError", "%s", msg);
	return NULL;
}

/* --incoming defer: the stream's descriptor, given to main() once. */
static json_t *cmd_migrate_incoming(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	const char *uri = json_string_value(json_object_get(args, "uri"));
	if (!uri) {
		qmp_set_error(err, "GenericError", "migrate-incoming needs a string 'uri'");
		return NULL;
	}
	pthread_mutex_lock(&ctl->incoming_lock);
	bool waiting = ctl->incoming_deferred && ctl->incoming_fd < 0;
	pthread_mutex_unlock(&ctl->incoming_lock);
	if (!waiting) {
		qmp_set_error(err, "GenericError", "kvz-vmm is not waiting for a migration (start it with --incoming defer; one migrate-incoming only)");
		return NULL;
	}
	if (strncmp(uri, "fd:", 3)) {
		qmp_set_error(err, "GenericError", "migrate-incoming takes fd:NAME (a socket passed with getfd); for tcp: start kvz-vmm with --incoming tcp:ADDR:PORT");
		return NULL;
	}
	int fd = uri_fd(ctl, uri, err);
	if (fd < 0)
		return NULL;
	pthread_mutex_lock(&ctl->incoming_lock);
	ctl->incoming_fd = fd;
	pthread_cond_broadcast(&ctl->incoming_cond);
	pthread_mutex_unlock(&ctl->incoming_lock);
	return NULL;
}

static bool get_uint(json_t *args, const char *key, uint64_t max, uint64_t *out, bool *seen,
		     struct qmp_error *err)
{
	json_t *v = json_object_get(args, key);
	*seen = v != NULL;
	if (!v)
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max) {
		qmp_set_error(err, "GenericError", "'%s' must be an integer from 0 to %llu", key,
			      (unsigned long long)max);
		return false;
	}
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static json_t *cmd_migrate_set_parameters(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	static const struct { const char *key; size_t off; uint64_t min, max; } keys[] = {
		{"downtime-limit", offsetof(struct migration_params, downtime_limit_ms), 0, 2000000},
		{"max-bandwidth", offsetof(struct migration_params, max_bandwidth), 0, UINT64_MAX / 1000},
		{"cpu-throttle-initial", offsetof(struct migration_params, throttle_initial), 1, 99},
		{"cpu-throttle-increment", offsetof(struct migration_params, throttle_increment), 1, 99},
	};
	uint64_t vals[4];
	bool seen[4];
	const char *key;
	json_t *v;
	json_object_foreach(args, key, v) {
		bool known = false;
		for (size_t i = 0; i < 4; i++)
			known |= !strcmp(key, keys[i].key);
		if (!known) {
			qmp_set_error(err, "GenericError", "unknown migration parameter '%.64s'", key);
			return NULL;
		}
	}
	/* All checked before any is set: a refused call changes nothing. */
	for (size_t i = 0; i < 4; i++) {
		if (!get_uint(args, keys[i].key, keys[i].max, &vals[i], &seen[i], err))
			return NULL;
		if (seen[i] && vals[i] < keys[i].min) {
			qmp_set_error(err, "GenericError", "'%s' must be at least %llu", keys[i].key,
				      (unsigned long long)keys[i].min);
			return NULL;
		}
	}
	for (size_t i = 0; i < 4; i++)
		if (seen[i])
			__atomic_store_n((uint64_t *)((char *)&ctl->mig.params + keys[i].off), vals[i],
					 __ATOMIC_RELAXED);
	return NULL;
}

static json_t *cmd_query_migrate_parameters(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct migration_params *p = &((struct vmm_control *)opaque)->mig.params;
	return json_pack("{s:I,s:I,s:I,s:I}",
			 "downtime-limit", (json_int_t)__atomic_load_n(&p->downtime_limit_ms, __ATOMIC_RELAXED),
			 "max-bandwidth", (json_int_t)__atomic_load_n(&p->max_bandwidth, __ATOMIC_RELAXED),
			 "cpu-throttle-initial", (json_int_t)__atomic_load_n(&p->throttle_initial, __ATOMIC_RELAXED),
			 "cpu-throttle-increment", (json_int_t)__atomic_load_n(&p->throttle_increment, __ATOMIC_RELAXED));
}

static json_t *cmd_migrate_set_capabilities(void *opaque, json_t *args, struct qmp_error *err)
{
	struct vmm_control *ctl = opaque;
	json_t *caps = json_object_get(args, "capabilities");
	if (!json_is_array(caps)) {
		qmp_set_error(err, "GenericError", "migrate-set-capabilities needs an array 'capabilities'");
		return NULL;
	}
	size_t i;
	json_t *c;
	int auto_converge = -1;
	json_array_foreach(caps, i, c) {
		const char *name = json_string_value(json_object_get(c, "capability"));
		json_t *state = json_object_get(c, "state");
		if (!name || !json_is_boolean(state)) {
			qmp_set_error(err, "GenericError", "each capability needs 'capability' and a boolean 'state'");
			return NULL;
		}
		if (strcmp(name, "auto-converge")) {
			qmp_set_error(err, "GenericError", "unsupported capability '%.64s' (kvz-vmm has auto-converge)", name);
			return NULL;
		}
		auto_converge = json_is_true(state);
	}
	if (auto_converge >= 0)
		__atomic_store_n(&ctl->mig.params.auto_converge, auto_converge == 1, __ATOMIC_RELAXED);
	return NULL;
}

static json_t *cmd_query_migrate(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct vmm_control *ctl = opaque;
	return migration_query(&ctl->mig);
}

static json_t *cmd_migrate_cancel(void *opaque, json_t *args, struct qmp_error *err)
{
	(void)args;
	(void)err;
	struct vmm_control *ctl = opaque;
	migration_cancel(&ctl->mig);
	return NULL;
}

static const struct qmp_command commands[] = {
	{"getfd", cmd_getfd},
	{"closefd", cmd_closefd},
	{"migrate", cmd_migrate},
	{"query-migrate", cmd_query_migrate},
	{"migrate-incoming", cmd_migrate_incoming},
	{"migrate-set-parameters", cmd_migrate_set_parameters},
	{"query-migrate-parameters", cmd_query_migrate_parameters},
	{"migrate-set-capabilities", cmd_migrate_set_capabilities},
	{"migrate_cancel", cmd_migrate_cancel},
	{"query-status", cmd_query_status},
	{"stop", cmd_stop},
	{"cont", cmd_cont},
	{"quit", cmd_quit},
	{"system_reset", cmd_system_reset},
	{"system_powerdown", cmd_system_powerdown},
	{"query-cpus-fast", cmd_query_cpus_fast},
	{"balloon", cmd_balloon},
	{"query-balloon", cmd_query_balloon},
	{"query-blockstats", cmd_query_blockstats},
	{"block_resize", qmp_cmd_block_resize},
	{"eject", qmp_media_eject},
	{"blockdev-change-medium", qmp_media_change},
	{"query-block", qmp_media_query_block},
};

static void on_vm_stopped(void *opaque, enum vm_stop_reason why)
{
	struct vmm_control *ctl = opaque;
	const char *reason;
	bool guest = true;
	switch (why) {
	case VM_STOP_POWEROFF: reason = "guest-shutdown"; break;
	case VM_STOP_GUEST_RESET: reason = "guest-reset"; break;
	case VM_STOP_QUIT: reason = "host-qmp-quit"; guest = false; break;
	default: reason = "host-error"; guest = false; break;
	}
	qmp_server_emit(ctl->qmp, "SHUTDOWN", json_pack("{s:b,s:s}", "guest", guest, "reason", reason));
}

int qmp_control_start(struct vmm_control *ctl, const char *path, char *err, size_t errlen)
{
	for (int i = 0; i < VMM_MAX_NAMED_FDS; i++)
		ctl->fds[i].fd = -1;
	migration_init(&ctl->mig, ctl->vm);
	ctl->mig_ready = true;
	/* Served only once ctl->qmp is set: handlers use it (getfd's
	 * descriptor, events), and a client may send its first command as
	 * soon as the socket exists. */
	ctl->qmp = qmp_server_create(path, "kvz-vmm", commands, sizeof(commands) / sizeof(commands[0]),
				     ctl, err, errlen);
	if (!ctl->qmp)
		return -1;
	vm_set_listener(ctl->vm, &(struct vm_listener){.stopped = on_vm_stopped, .opaque = ctl});
	migration_set_qmp(&ctl->mig, ctl->qmp);
	/* Devices emit their own events (BALLOON_CHANGE, DEVICE_TRAY_MOVED). */
	if (ctl->vd)
		virtio_devices_set_qmp(ctl->vd, ctl->qmp);
	return qmp_server_serve(ctl->qmp, err, errlen);
}

/* The migration job emits through the server: it stops emitting first,
 * and is joined once no command can start another. */
void qmp_control_stop(struct vmm_control *ctl)
{
	if (ctl->vd)
		virtio_devices_set_qmp(ctl->vd, NULL);
	if (ctl->mig_ready)
		migration_set_qmp(&ctl->mig, NULL);
	qmp_server_stop(ctl->qmp);
	ctl->qmp = NULL;
	if (!ctl->mig_ready)
		return;   /* never started: the table was never set up */
	migration_finish(&ctl->mig);
	ctl->mig_ready = false;
	for (int i = 0; i < VMM_MAX_NAMED_FDS; i++)
		if (ctl->fds[i].fd >= 0) {
			close(ctl->fds[i].fd);
			ctl->fds[i].fd = -1;
		}
}
