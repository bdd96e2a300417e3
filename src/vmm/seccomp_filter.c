/* kvz-vmm's seccomp allow-list (libseccomp). Every entry is here because a
 * code path of the running VMM makes that call; setup-only calls (open,
 * socket, bind, KVM_CREATE_*, eventfd2, memfd_create, TUNSETIFF, netlink)
 * are absent on purpose. Found by reading the code paths and checked in
 * the nested lab with every lab test (docs/architecture.md, kvz-vmm). */
#include "seccomp_filter.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/vhost.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

bool seccomp_filter_parse_mode(const char *s, enum seccomp_mode *mode)
{
	if (!strcmp(s, "on"))
		*mode = SECCOMP_FILTER_ON;
	else if (!strcmp(s, "off"))
		*mode = SECCOMP_FILTER_OFF;
	else if (!strcmp(s, "log"))
		*mode = SECCOMP_FILTER_LOG;
	else
		return false;
	return true;
}

bool seccomp_filter_supported(void)
{
#if defined(KVZ_VMM_SANITIZED) || defined(__SANITIZE_ADDRESS__)
	return false;
#else
	return true;
#endif
}

/* ---- the report of a forbidden call ---- */

#define NAME_SLOTS 512

#ifndef SYS_SECCOMP
#define SYS_SECCOMP 1   /* si_code of a seccomp trap (asm-generic/siginfo.h) */
#endif

/* Syscall names, resolved before the filter goes in: the SIGSYS handler
 * may only make async-signal-safe calls and libseccomp's resolver
 * allocates. Process-wide because a signal handler reaches nothing else;
 * written once, before the handler can run, then only read. */
static const char *syscall_names[NAME_SLOTS];

static void resolve_names(void)
{
	for (int nr = 0; nr < NAME_SLOTS; nr++)
		if (!syscall_names[nr])
			syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
}

static size_t append(char *buf, size_t at, size_t cap, const char *s)
{
	while (*s && at + 1 < cap)
		buf[at++] = *s++;
	return at;
}

static size_t append_int(char *buf, size_t at, size_t cap, long v)
{
	char digits[24];
	int n = 0;
	unsigned long u = v < 0 ? 0ul - (unsigned long)v : (unsigned long)v;
	do {
		digits[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0 && at + 1 < cap)
		buf[at++] = '-';
	while (n && at + 1 < cap)
		buf[at++] = digits[--n];
	return at;
}

/* Runs on the thread that made the call. Only write() and _exit(), both
 * allowed by the filter and async-signal-safe: a failing report must not
 * trap again. */
static void sigsys_handler(int sig, siginfo_t *si, void *uctx)
{
	(void)sig;
	(void)uctx;
	char line[256];
	size_t n = 0;
	if (si->si_code != SYS_SECCOMP) {
		n = append(line, n, sizeof(line), "kvz-vmm: seccomp: unexpected SIGSYS; stopping\n");
	} else {
		int nr = si->si_syscall;
		const char *name = nr >= 0 && nr < NAME_SLOTS && syscall_names[nr] ? syscall_names[nr]
										      : "unknown";
		n = append(line, n, sizeof(line), "kvz-vmm: seccomp: forbidden system call ");
		n = append_int(line, n, sizeof(line), nr);
		n = append(line, n, sizeof(line), " (");
		n = append(line, n, sizeof(line), name);
		n = append(line, n, sizeof(line),
			   ") \xe2\x80\x94 this is a bug or an attack; stopping\n");
	}
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
	_exit(1);
}

static int install_sigsys_handler(char *err, size_t errlen)
{
	struct sigaction sa = {.sa_sigaction = sigsys_handler, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0) {
		snprintf(err, errlen, "seccomp: sigaction(SIGSYS): %s", strerror(errno));
		return -1;
	}
	/* A blocked SIGSYS would make the kernel kill us silently instead. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGSYS);
	int rc = pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	if (rc) {
		snprintf(err, errlen, "seccomp: unblocking SIGSYS: %s", strerror(rc));
		return -1;
	}
	return 0;
}

/* ---- the allow-list ---- */

/* Calls allowed with any arguments, by what needs them. */
static const int plain_calls[] = {
	/* I/O thread: eventfds, TAP (read/writev), disks (preadv/pwritev,
	 * pwrite for zeroing, fdatasync for FLUSH, fallocate for discard,
	 * write-zeroes and the balloon's hole punching in guest RAM);
	 * console and QMP: read/write/close */
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev),
	SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev),
	SCMP_SYS(close), SCMP_SYS(fdatasync), SCMP_SYS(fsync), SCMP_SYS(fallocate),
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl),
	/* QMP and console-socket threads: clients connect at run time */
	SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(accept4), SCMP_SYS(sendto),
	/* migrate_cancel: wakes a job blocked on its socket */
	SCMP_SYS(shutdown),
	SCMP_SYS(recvfrom),
	/* QMP getfd: descriptors arrive with SCM_RIGHTS (the snapshot file
	 * kvzd opened; kvz-vmm itself opens nothing) */
	SCMP_SYS(recvmsg),
	/* snapshot save (QMP migrate) into the passed file: lay it out from
	 * zero, skip the RAM memfd's holes (SEEK_DATA/SEEK_HOLE); QMP
	 * block_resize grows a raw disk with ftruncate (a qcow2 one with
	 * pwrite64 and fdatasync, above) */
	SCMP_SYS(ftruncate), SCMP_SYS(fstat), SCMP_SYS(lseek),
	/* a disk image's lock, dropped when the state is saved and taken at
	 * its load or the resume (block.h blk_lock: shared storage) */
	SCMP_SYS(flock),
	/* locks, condition variables, joins; glibc's per-thread setup of the
	 * threads started after the filter (vCPUs, I/O) */
	SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(sched_yield),
	SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(restart_syscall),
	/* time: the vDSO falls back to the real calls on clock sources it
	 * cannot read (the lab's L1) */
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep),
	SCMP_SYS(gettimeofday), SCMP_SYS(time),
	/* --bench-phases: the process's own page-fault count */
	SCMP_SYS(getrusage),
	/* signals: vCPU kicks return through rt_sigreturn, the signal thread
	 * waits in sigwait (rt_sigtimedwait), pthread_kill/create mask */
	SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigtimedwait),
	/* memory: malloc, thread stacks (release with MADV_DONTNEED) */
	SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(madvise),
	/* virtio-rng */
	SCMP_SYS(getrandom),
	/* virtio-blk queues: submit to and wait on their io_uring rings.
	 * io_uring_setup and io_uring_register stay out: the rings are made,
	 * restricted to READV/WRITEV/FSYNC and enabled before the filter
	 * (block_aio.c), so the kernel refuses any other operation on them */
	SCMP_SYS(io_uring_enter),
	SCMP_SYS(exit), SCMP_SYS(exit_group),
};

/* ioctl requests made after setup. */
static const unsigned long ioctl_requests[] = {
	/* vCPU threads; vcpu_log_state on a stop signal */
	KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_MP_STATE,
	/* snapshot save (QMP migrate): every piece of machine state */
	KVM_GET_FPU, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_GET_XCRS, KVM_GET_MSRS, KVM_GET_LAPIC,
	KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_GET_IRQCHIP, KVM_GET_PIT2, KVM_GET_CLOCK,
	KVM_CHECK_EXTENSION,
	/* system_reset: vcpu_load_state */
	KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_FPU, KVM_SET_XCRS, KVM_SET_MSRS, KVM_SET_LAPIC,
	KVM_SET_VCPU_EVENTS, KVM_SET_MP_STATE,
	/* live migration: the source's dirty log (its slots switched to
	 * logging and back; with manual protect, the per-chunk clear: the
	 * capability itself is enabled at VM creation, so KVM_ENABLE_CAP stays
	 * out); the target loads the stream after lock-down (hostile input),
	 * so the machine's remaining setters too */
	KVM_SET_USER_MEMORY_REGION, KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG,
	KVM_SET_XSAVE, KVM_SET_DEBUGREGS, KVM_SET_IRQCHIP, KVM_SET_PIT2, KVM_SET_CLOCK, KVM_SET_CPUID2,
	/* interrupts and virtio notifications, set up as the guest driver
	 * configures its devices (irq.h) */
	KVM_IRQ_LINE, KVM_SIGNAL_MSI, KVM_SET_GSI_ROUTING, KVM_IRQFD, KVM_IOEVENTFD,
	/* virtio-net: offloads follow the negotiated features */
	TUNSETOFFLOAD,
	/* virtio-blk on a block device: discard and write-zeroes */
	BLKDISCARD, BLKZEROOUT,
	/* vhost-net: queues start and stop with the driver */
	VHOST_SET_MEM_TABLE, VHOST_SET_FEATURES, VHOST_SET_VRING_NUM, VHOST_SET_VRING_BASE,
	VHOST_GET_VRING_BASE, VHOST_SET_VRING_ADDR, VHOST_SET_VRING_KICK,
	VHOST_SET_VRING_CALL, VHOST_NET_SET_BACKEND,
	/* vhost-net's dirty log for live migration (the features and ring
	 * addresses above switch it on and off) */
	VHOST_SET_LOG_BASE,
};

struct rule {
	int nr;
	uint32_t action;
	unsigned nargs;
	struct scmp_arg_cmp args[2];
};

#define ARG_MASK(i, mask, val) \
	{.arg = (i), .op = SCMP_CMP_MASKED_EQ, .datum_a = (mask), .datum_b = (val)}
#define ARG_EQ(i, val) {.arg = (i), .op = SCMP_CMP_EQ, .datum_a = (val), .datum_b = 0}
#define RULE0(call, act) {.nr = SCMP_SYS(call), .action = (act)}
#define RULE1(call, act, a) {.nr = SCMP_SYS(call), .action = (act), .nargs = 1, .args = {a}}
#define RULE2(call, act, a, b) \
	{.nr = SCMP_SYS(call), .action = (act), .nargs = 2, .args = {a, b}}

static int add_rule(scmp_filter_ctx ctx, const struct rule *r, char *err, size_t errlen)
{
	int rc = seccomp_rule_add_array(ctx, r->action, r->nr, r->nargs, r->args);
	if (rc < 0) {
		char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, r->nr);
		snprintf(err, errlen, "seccomp: rule for %s: %s", name ? name : "?", strerror(-rc));
		free(name);
		return -1;
	}
	return 0;
}

static int add_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(plain_calls) / sizeof(plain_calls[0]); i++) {
		struct rule r = {.nr = plain_calls[i], .action = SCMP_ACT_ALLOW, .nargs = 0};
		if (add_rule(ctx, &r, err, errlen) < 0)
			return -1;
	}
	/* The request is an unsigned int in the kernel: compare the low 32
	 * bits only, whatever the caller's upper half. */
	for (size_t i = 0; i < sizeof(ioctl_requests) / sizeof(ioctl_requests[0]); i++) {
		struct rule r = RULE1(ioctl, SCMP_ACT_ALLOW,
				      ARG_MASK(1, 0xFFFFFFFFu, ioctl_requests[i]));
		if (add_rule(ctx, &r, err, errlen) < 0)
			return -1;
	}
	const struct rule rules[] = {
		/* The stdio console restores the terminal at exit; glibc's
		 * tcsetattr reads the modes back after setting them. */
		RULE2(ioctl, SCMP_ACT_ALLOW, ARG_EQ(0, STDIN_FILENO),
		      ARG_MASK(1, 0xFFFFFFFFu, TCSETS)),
		RULE2(ioctl, SCMP_ACT_ALLOW, ARG_EQ(0, STDIN_FILENO),
		      ARG_MASK(1, 0xFFFFFFFFu, TCGETS)),
		/* No executable memory: injected code cannot be made to run. */
		RULE1(mmap, SCMP_ACT_ALLOW, ARG_MASK(2, PROT_EXEC, 0)),
		RULE1(mprotect, SCMP_ACT_ALLOW, ARG_MASK(2, PROT_EXEC, 0)),
		/* Threads (vCPUs, I/O) only, never a new process. glibc tries
		 * clone3 first, whose flags sit in memory a filter cannot read:
		 * ENOSYS makes it fall back to clone. */
		RULE1(clone, SCMP_ACT_ALLOW, ARG_MASK(0, CLONE_THREAD, CLONE_THREAD)),
		RULE0(clone3, SCMP_ACT_ERRNO(ENOSYS)),
		/* vCPU threads name themselves (pthread_setname_np on self). */
		RULE1(prctl, SCMP_ACT_ALLOW, ARG_EQ(0, PR_SET_NAME)),
		/* vm_start installs the vCPU kick handler; glibc installs its
		 * set*id broadcast handler (the real-time signal below
		 * SIGRTMIN) at the first pthread_create. */
		RULE1(rt_sigaction, SCMP_ACT_ALLOW, ARG_EQ(0, SIGUSR1)),
		RULE1(rt_sigaction, SCMP_ACT_ALLOW, ARG_EQ(0, (uint64_t)(SIGRTMIN - 1))),
		/* vCPU kicks (pthread_kill) and abort(): this process only. */
		RULE1(tgkill, SCMP_ACT_ALLOW, ARG_EQ(0, (uint64_t)getpid())),
		/* fstat of a descriptor (glibc: newfstatat(fd, "", AT_EMPTY_PATH)),
		 * never of a path. */
		RULE1(newfstatat, SCMP_ACT_ALLOW, ARG_EQ(3, AT_EMPTY_PATH)),
		/* QMP gives each client a send timeout. */
		RULE2(setsockopt, SCMP_ACT_ALLOW, ARG_EQ(1, SOL_SOCKET), ARG_EQ(2, SO_SNDTIMEO)),
		/* At exit the QMP server and console remove their sockets. A
		 * VMM that may delete any path is worth more to an attacker
		 * than a tidy directory: refuse quietly. The dead sockets are
		 * replaced by the next listener (unix_socket.c), kvzd removes
		 * them before it starts a VM. */
		RULE0(unlink, SCMP_ACT_ERRNO(EPERM)),
		RULE0(unlinkat, SCMP_ACT_ERRNO(EPERM)),
	};
	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (add_rule(ctx, &rules[i], err, errlen) < 0)
			return -1;
	return 0;
}

static int set_attr(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value,
		    const char *what, char *err, size_t errlen)
{
	int rc = seccomp_attr_set(ctx, attr, value);
	if (rc < 0) {
		snprintf(err, errlen, "seccomp: %s: %s", what, strerror(-rc));
		return -1;
	}
	return 0;
}

int seccomp_filter_install(enum seccomp_mode mode, char *err, size_t errlen)
{
	if (mode == SECCOMP_FILTER_OFF)
		return 0;
	uint32_t deny = mode == SECCOMP_FILTER_LOG ? SCMP_ACT_LOG : SCMP_ACT_TRAP;
	if (mode == SECCOMP_FILTER_ON) {
		resolve_names();
		if (install_sigsys_handler(err, errlen) < 0)
			return -1;
	}
	scmp_filter_ctx ctx = seccomp_init(deny);
	if (!ctx) {
		snprintf(err, errlen, "seccomp: cannot initialize the filter");
		return -1;
	}
	int rc = -1;
	/* TSYNC: the QMP, console and signal threads exist already. A call
	 * of another ABI (int $0x80, x32) is denied the same way. */
	if (set_attr(ctx, SCMP_FLTATR_CTL_TSYNC, 1, "thread sync", err, errlen) < 0 ||
	    set_attr(ctx, SCMP_FLTATR_ACT_BADARCH, deny, "foreign ABI action", err, errlen) < 0 ||
	    add_rules(ctx, err, errlen) < 0)
		goto out;
	int lrc = seccomp_load(ctx);
	if (lrc != 0) {
		snprintf(err, errlen, "seccomp: cannot load the filter: %s",
			 strerror(lrc < 0 ? -lrc : EAGAIN));
		goto out;
	}
	rc = 0;
out:
	seccomp_release(ctx);
	return rc;
}
