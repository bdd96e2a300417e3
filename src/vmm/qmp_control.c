#include "qmp_control.h"

#include <stdio.h>
#include <string.h>

#include "acpi_pm.h"
#include "log.h"
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
	return json_pack("{s:s,s:b,s:b}", "status", state_name(s), "running", s == VM_RUNNING,
			 "singlestep", 0);
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
	if (vm_run_state(ctl->vm) == VM_RUNNING)
		return NULL;
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
	if (acpi_pm_press_power_button(ctl->vm->acpi_pm) < 0)
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
	for (int i = 0; i < ctl->vm->ncpus; i++) {
		char path[64];
		snprintf(path, sizeof(path), "/machine/unattached/device[%d]", i);
		json_array_append_new(list, json_pack("{s:i,s:i,s:s,s:s}", "cpu-index", i, "thread-id",
						      (int)ctl->vm->vcpus[i].tid, "target", "x86_64",
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

static const struct qmp_command commands[] = {
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
	ctl->qmp = qmp_server_start(path, "kvz-vmm", commands, sizeof(commands) / sizeof(commands[0]),
				    ctl, err, errlen);
	if (!ctl->qmp)
		return -1;
	ctl->vm->listener = (struct vm_listener){.stopped = on_vm_stopped, .opaque = ctl};
	/* Devices emit their own events (BALLOON_CHANGE). */
	if (ctl->vd)
		virtio_devices_set_qmp(ctl->vd, ctl->qmp);
	return 0;
}

void qmp_control_stop(struct vmm_control *ctl)
{
	if (ctl->vd)
		virtio_devices_set_qmp(ctl->vd, NULL);
	qmp_server_stop(ctl->qmp);
	ctl->qmp = NULL;
}
