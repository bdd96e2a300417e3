/* Capability bounding set of container processes (see caps.h). capget/capset
 * are called directly: two calls do not justify libcap. */
#include "caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Each entry: what the capability would give container root over the host
 * or over its limits. CAP_SYS_BOOT stays: in a pid namespace reboot(2) only
 * ends that namespace's init (reboot_pid_ns), which busybox's and sysvinit's
 * poweroff rely on. */
static const int dropped[] = {
	CAP_SYS_MODULE,      /* load kernel code */
	CAP_SYS_RAWIO,       /* iopl/ioperm, /dev/mem, raw SCSI commands */
	CAP_SYS_TIME,        /* the clock is the host's */
	CAP_SYS_NICE,        /* real-time classes escape the CFS --cpus quota */
	CAP_SYS_PACCT,       /* process accounting is host-wide */
	CAP_SYSLOG,          /* the kernel log is the host's */
	CAP_MAC_ADMIN,       /* LSM policy is host-wide */
	CAP_MAC_OVERRIDE,
	CAP_AUDIT_CONTROL,   /* audit rules are host-wide */
	CAP_AUDIT_READ,
	CAP_WAKE_ALARM,      /* wakes the host from suspend */
	CAP_BLOCK_SUSPEND,   /* keeps the host from suspending */
	CAP_DAC_READ_SEARCH, /* open_by_handle_at: files outside the root */
	CAP_BPF,             /* BPF programs see the whole kernel */
	CAP_PERFMON,         /* perf events see other processes and the kernel */
};

/* capabilities(7) names, by number. */
static const char *const names[] = {
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
	"setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
	"net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
	"sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
	"sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
	"audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
	"block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

uint64_t caps_mask_of(const char *name)
{
	if (!strcasecmp(name, "all"))
		return UINT64_MAX;
	if (!strncasecmp(name, "cap_", 4))
		name += 4;
	for (size_t i = 0; i < N_NAMES; i++)
		if (!strcasecmp(name, names[i]))
			return UINT64_C(1) << i;
	return 0;
}

static int drop_bounding(const struct caps_change *ch, char *err, size_t len)
{
	uint64_t mask = ch->drop;
	for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
		mask |= UINT64_C(1) << dropped[i];
	mask &= ~ch->add;
	for (int cap = 0; cap < 64; cap++) {
		if (!(mask & (UINT64_C(1) << cap)))
			continue;
		/* EINVAL: a capability this kernel does not know, so nobody has it. */
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) {
			snprintf(err, len, "cannot drop capability %d from the bounding set: %s",
				 cap, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int clear_inheritable(char *err, size_t len)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &hdr, data) < 0) {
		snprintf(err, len, "capget: %s", strerror(errno));
		return -1;
	}
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &hdr, data) < 0) {
		snprintf(err, len, "cannot clear the inheritable capabilities: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int caps_confine(const struct caps_change *ch, char *err, size_t len)
{
	if (drop_bounding(ch, err, len) < 0 || clear_inheritable(err, len) < 0)
		return -1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 ||
	    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) {
		snprintf(err, len, "cannot clear the ambient capabilities: %s", strerror(errno));
		return -1;
	}
	return 0;
}
