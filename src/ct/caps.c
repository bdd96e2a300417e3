/* Capability bounding set of container processes (see caps.h). capget/capset
 * are called directly: two calls do not justify libcap. */
#include "caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
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

static int drop_bounding(char *err, size_t len)
{
	for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++) {
		/* EINVAL: a capability this kernel does not know, so nobody has it. */
		if (prctl(PR_CAPBSET_DROP, dropped[i], 0, 0, 0) < 0 && errno != EINVAL) {
			snprintf(err, len, "cannot drop capability %d from the bounding set: %s",
				 dropped[i], strerror(errno));
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

int caps_confine(char *err, size_t len)
{
	if (drop_bounding(err, len) < 0 || clear_inheritable(err, len) < 0)
		return -1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 ||
	    prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0) {
		snprintf(err, len, "cannot clear the ambient capabilities: %s", strerror(errno));
		return -1;
	}
	return 0;
}
