#include "vcpu.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "boot.h"
#include "cpuid.h"
#include "log.h"
#include "vm_internal.h"

#define VCPU_KICK_SIGNAL SIGUSR1

#define MSR_IA32_TSC            0x10
#define MSR_IA32_APICBASE       0x1B
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1A0
#define MSR_MTRR_DEF_TYPE       0x2FF
#define MSR_STAR                0xC0000081
#define MSR_LSTAR               0xC0000082
#define MSR_CSTAR               0xC0000083
#define MSR_SYSCALL_MASK        0xC0000084
#define MSR_KERNEL_GS_BASE      0xC0000102

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI 0x4
#define APIC_MODE_EXTINT 0x7

/* struct kvm_msrs ends in a flexible array: a union gives it room on the
 * stack in standard C. */
union msr_buf {
	struct kvm_msrs h;
	uint8_t bytes[sizeof(struct kvm_msrs) + VCPU_MAX_MSRS * sizeof(struct kvm_msr_entry)];
};

static void kick_handler(int sig) { (void)sig; }

int vcpu_signal_init(void)
{
	struct sigaction sa = {.sa_handler = kick_handler};
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the point of the signal is to make KVM_RUN return. */
	return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

static int set_lint(struct vcpu *v, char *err, size_t errlen)
{
	struct kvm_lapic_state l;
	if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_GET_LAPIC: %s", v->id, strerror(errno));
		return -1;
	}
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, l.regs + APIC_LVT0, 4);
	memcpy(&lvt1, l.regs + APIC_LVT1, 4);
	/* The PIC is wired to LINT0 (ExtINT) and NMI to LINT1, as on a PC;
	 * Linux's virtual-wire mode relies on it. Unmasked (bit 16 clear). */
	lvt0 = (lvt0 & ~0x10700u) | (APIC_MODE_EXTINT << 8);
	lvt1 = (lvt1 & ~0x10700u) | (APIC_MODE_NMI << 8);
	memcpy(l.regs + APIC_LVT0, &lvt0, 4);
	memcpy(l.regs + APIC_LVT1, &lvt1, 4);
	if (ioctl(v->fd, KVM_SET_LAPIC, &l) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_LAPIC: %s", v->id, strerror(errno));
		return -1;
	}
	return 0;
}

/* The TSC is left alone: KVM starts the TSCs of all vCPUs of a VM in
 * sync, and writing it per vCPU makes Linux see them unsynchronized.
 * MSR values the Linux boot protocol and a PC BIOS leave behind. MSRs this
 * KVM does not know are skipped, not fatal: they are niceties. */
static void set_boot_msrs(struct vcpu *v)
{
	static const struct { uint32_t index; uint64_t value; } msrs[] = {
		{MSR_IA32_SYSENTER_CS, 0}, {MSR_IA32_SYSENTER_ESP, 0}, {MSR_IA32_SYSENTER_EIP, 0},
		{MSR_STAR, 0}, {MSR_CSTAR, 0}, {MSR_KERNEL_GS_BASE, 0}, {MSR_SYSCALL_MASK, 0},
		{MSR_LSTAR, 0},
		{MSR_IA32_MISC_ENABLE, 1},              /* fast strings */
		{MSR_MTRR_DEF_TYPE, (1u << 11) | 6},    /* MTRRs on, default write-back */
	};
	for (size_t i = 0; i < sizeof(msrs) / sizeof(msrs[0]); i++) {
		union msr_buf m;
		memset(&m, 0, sizeof(m));
		m.h.nmsrs = 1;
		m.h.entries[0].index = msrs[i].index;
		m.h.entries[0].data = msrs[i].value;
		if (ioctl(v->fd, KVM_SET_MSRS, &m.h) != 1)
			kvz_debug("vCPU %d: MSR 0x%x not settable", v->id, msrs[i].index);
	}
}

int vcpu_init(struct vcpu *v, struct vm *vm, int id, char *err, size_t errlen)
{
	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		snprintf(err, errlen, "KVM_CREATE_VCPU %d: %s", id, strerror(errno));
		return -1;
	}
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		snprintf(err, errlen, "vCPU %d: mmap kvm_run: %s", id, strerror(errno));
		return -1;
	}
	if (vcpu_set_cpuid(v, vm->cpuid, err, errlen) < 0)
		return -1;
	if (set_lint(v, err, errlen) < 0)
		return -1;
	set_boot_msrs(v);
	return 0;
}

int vcpu_set_cpuid(struct vcpu *v, const struct kvm_cpuid2 *table, char *err, size_t errlen)
{
	size_t csize = sizeof(*table) + table->nent * sizeof(table->entries[0]);
	struct kvm_cpuid2 *c = malloc(csize);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(c, table, csize);
	cpuid_set_apic_id(c, (unsigned)v->id);
	int rc = ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	if (rc < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_CPUID2: %s", v->id, strerror(errno));
		return -1;
	}
	return 0;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, v->vm->run_size);
	if (v->fd > 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
}

/* A flat 4 GiB segment; long_mode makes it a 64-bit code segment. */
static void set_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool long_mode)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xFFFFFFFF, .selector = sel, .type = type,
		.present = 1, .dpl = 0, .db = long_mode ? 0 : 1, .s = 1, .l = long_mode ? 1 : 0, .g = 1,
	};
}

/* Segment, general and FPU registers of an entry state (FPU at its
 * power-on values). */
static int set_entry_regs(struct vcpu *v, const struct kvm_sregs *sr, const struct kvm_regs *r,
			  char *err, size_t errlen)
{
	if (ioctl(v->fd, KVM_SET_SREGS, sr) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_SREGS: %s", v->id, strerror(errno));
		return -1;
	}
	if (ioctl(v->fd, KVM_SET_REGS, r) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_REGS: %s", v->id, strerror(errno));
		return -1;
	}
	struct kvm_fpu fpu = {.fcw = 0x37F, .mxcsr = 0x1F80};
	if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_FPU: %s", v->id, strerror(errno));
		return -1;
	}
	return 0;
}

/* The BSP's (or every ELF vCPU's) entry state: 64-bit mode with the boot
 * page tables, or for PVH flat 32-bit protected mode with paging off. */
static int setup_entry_mode(struct vcpu *v, const struct boot_entry *e, char *err, size_t errlen)
{
	struct kvm_sregs sr;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_GET_SREGS: %s", v->id, strerror(errno));
		return -1;
	}
	bool pvh = e->kind == BOOT_PVH;
	set_seg(&sr.cs, BOOT_CS, 0xB, !pvh);
	set_seg(&sr.ds, BOOT_DS, 0x3, false);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	sr.tr = (struct kvm_segment){.selector = BOOT_TSS, .limit = 0x67, .type = 0xB, .present = 1};
	sr.gdt.base = BOOT_GDT_ADDR;
	sr.gdt.limit = 5 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	sr.cr0 = pvh ? 0x11 : 0x80050033;   /* PVH: ET PE; else PG WP NE ET MP PE */
	sr.cr3 = pvh ? 0 : BOOT_PML4_ADDR;
	sr.cr4 = pvh ? 0 : 0x20;            /* PAE */
	sr.efer = pvh ? 0 : 0x500;          /* LME LMA */
	struct kvm_regs r = {.rip = e->rip, .rsi = e->rsi, .rbx = e->rbx, .rflags = 0x2};
	return set_entry_regs(v, &sr, &r, err, errlen);
}

static int save_reset_state(struct vcpu *v, char *err, size_t errlen);

int vcpu_setup_boot(struct vcpu *v, const struct boot_entry *e, char *err, size_t errlen)
{
	/* Linux brings its APs up with INIT/SIPI: with the in-kernel LAPIC they
	 * start waiting for it. Our ELF test guests run every vCPU from the
	 * entry and tell them apart by APIC id. */
	bool starts_now = v->id == 0 || e->kind == BOOT_ELF;
	if (starts_now && setup_entry_mode(v, e, err, errlen) < 0)
		return -1;
	struct kvm_mp_state mp = {
		.mp_state = starts_now ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_UNINITIALIZED,
	};
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_MP_STATE: %s", v->id, strerror(errno));
		return -1;
	}
	return save_reset_state(v, err, errlen);
}

/* The power-on state a firmware expects: real mode, CS base 0xFFFF0000 and
 * IP 0xFFF0 (the reset vector, 16 bytes below 4 GiB); the APs wait for
 * INIT/SIPI from the firmware. KVM creates vCPUs in this state, but the
 * state is set here explicitly so that the reset state saved is it. */
int vcpu_setup_firmware(struct vcpu *v, char *err, size_t errlen)
{
	struct kvm_sregs sr;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_GET_SREGS: %s", v->id, strerror(errno));
		return -1;
	}
	struct kvm_segment data = {.base = 0, .limit = 0xFFFF, .selector = 0, .type = 0x3,
				   .present = 1, .s = 1};
	sr.ds = sr.es = sr.fs = sr.gs = sr.ss = data;
	sr.cs = data;
	sr.cs.type = 0xB;
	sr.cs.selector = 0xF000;
	sr.cs.base = 0xFFFF0000;
	sr.tr = (struct kvm_segment){.limit = 0xFFFF, .type = 0xB, .present = 1};
	sr.ldt = (struct kvm_segment){.limit = 0xFFFF, .type = 0x2, .present = 1};
	sr.gdt = (struct kvm_dtable){.limit = 0xFFFF};
	sr.idt = (struct kvm_dtable){.limit = 0xFFFF};
	sr.cr0 = 0x60000010;   /* CD NW ET */
	sr.cr2 = sr.cr3 = sr.cr4 = 0;
	sr.efer = 0;
	struct kvm_regs r = {.rip = 0xFFF0, .rflags = 0x2, .rdx = 0x600};
	if (set_entry_regs(v, &sr, &r, err, errlen) < 0)
		return -1;
	struct kvm_mp_state mp = {
		.mp_state = v->id == 0 ? KVM_MP_STATE_RUNNABLE : KVM_MP_STATE_UNINITIALIZED,
	};
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_MP_STATE: %s", v->id, strerror(errno));
		return -1;
	}
	return save_reset_state(v, err, errlen);
}

static int save_reset_state(struct vcpu *v, char *err, size_t errlen)
{
	if (vcpu_save_state(v, &v->reset_state, err, errlen) < 0)
		return -1;
	/* A reset must not rewind the TSC (the guest would see vCPUs out of
	 * sync and time going backwards): leave it out of the reset state. */
	struct vcpu_state *s = &v->reset_state;
	unsigned out = 0;
	for (unsigned i = 0; i < s->nmsrs; i++)
		if (s->msrs[i].index != MSR_IA32_TSC)
			s->msrs[out++] = s->msrs[i];
	s->nmsrs = out;
	return 0;
}

static const uint32_t saved_msrs[] = {
	MSR_IA32_TSC, MSR_IA32_APICBASE, MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP,
	MSR_IA32_SYSENTER_EIP, MSR_IA32_MISC_ENABLE, MSR_MTRR_DEF_TYPE, MSR_STAR, MSR_LSTAR,
	MSR_CSTAR, MSR_SYSCALL_MASK, MSR_KERNEL_GS_BASE,
};

#define VCPU_IOCTL(req, arg, name)                                                          \
	do {                                                                                \
		if (ioctl(v->fd, req, arg) < 0) {                                           \
			snprintf(err, errlen, "vCPU %d: %s: %s", v->id, name, strerror(errno)); \
			return -1;                                                          \
		}                                                                           \
	} while (0)

int vcpu_save_state(struct vcpu *v, struct vcpu_state *s, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	VCPU_IOCTL(KVM_GET_REGS, &s->regs, "KVM_GET_REGS");
	VCPU_IOCTL(KVM_GET_SREGS, &s->sregs, "KVM_GET_SREGS");
	VCPU_IOCTL(KVM_GET_FPU, &s->fpu, "KVM_GET_FPU");
	VCPU_IOCTL(KVM_GET_LAPIC, &s->lapic, "KVM_GET_LAPIC");
	VCPU_IOCTL(KVM_GET_VCPU_EVENTS, &s->events, "KVM_GET_VCPU_EVENTS");
	VCPU_IOCTL(KVM_GET_MP_STATE, &s->mp_state, "KVM_GET_MP_STATE");
	s->has_xcrs = ioctl(v->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	if (s->has_xcrs)
		VCPU_IOCTL(KVM_GET_XCRS, &s->xcrs, "KVM_GET_XCRS");
	union msr_buf m;
	memset(&m, 0, sizeof(m));
	for (size_t i = 0; i < sizeof(saved_msrs) / sizeof(saved_msrs[0]); i++)
		m.h.entries[m.h.nmsrs++].index = saved_msrs[i];
	int n = ioctl(v->fd, KVM_GET_MSRS, &m.h);
	if (n < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_GET_MSRS: %s", v->id, strerror(errno));
		return -1;
	}
	/* KVM stops at the first MSR it does not know: keep what it returned. */
	s->nmsrs = (unsigned)n;
	memcpy(s->msrs, m.h.entries, (size_t)n * sizeof(s->msrs[0]));
	return 0;
}

int vcpu_load_state(struct vcpu *v, const struct vcpu_state *s, char *err, size_t errlen)
{
	struct vcpu_state c = *s;   /* the ioctls take non-const pointers */
	VCPU_IOCTL(KVM_SET_SREGS, &c.sregs, "KVM_SET_SREGS");
	VCPU_IOCTL(KVM_SET_REGS, &c.regs, "KVM_SET_REGS");
	VCPU_IOCTL(KVM_SET_FPU, &c.fpu, "KVM_SET_FPU");
	if (c.has_xcrs)
		VCPU_IOCTL(KVM_SET_XCRS, &c.xcrs, "KVM_SET_XCRS");
	union msr_buf m;
	memset(&m, 0, sizeof(m));
	m.h.nmsrs = c.nmsrs;
	memcpy(m.h.entries, c.msrs, c.nmsrs * sizeof(c.msrs[0]));
	if (ioctl(v->fd, KVM_SET_MSRS, &m.h) < 0) {
		snprintf(err, errlen, "vCPU %d: KVM_SET_MSRS: %s", v->id, strerror(errno));
		return -1;
	}
	VCPU_IOCTL(KVM_SET_LAPIC, &c.lapic, "KVM_SET_LAPIC");
	VCPU_IOCTL(KVM_SET_VCPU_EVENTS, &c.events, "KVM_SET_VCPU_EVENTS");
	VCPU_IOCTL(KVM_SET_MP_STATE, &c.mp_state, "KVM_SET_MP_STATE");
	return 0;
}

static const char *internal_error_name(uint32_t sub)
{
	switch (sub) {
	case KVM_INTERNAL_ERROR_EMULATION: return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX: return "simultaneous exceptions";
	case KVM_INTERNAL_ERROR_DELIVERY_EV: return "event delivery failure";
	default: return "unknown";
	}
}

static void report_internal_error(struct vcpu *v)
{
	struct kvm_regs r = {0};
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0)
		r.rip = ~0ull;
	uint32_t sub = v->run->internal.suberror;
	vm_request_stop(v->vm, VM_STOP_ERROR,
			"vCPU %d: KVM_EXIT_INTERNAL_ERROR at RIP 0x%llx: suberror %u (%s)",
			v->id, (unsigned long long)r.rip, sub, internal_error_name(sub));
}

/* A reset like any other for the exit status, but Linux only gets here
 * when its orderly ways failed or it crashed before its console was up:
 * one line, so that a VM that ended silently says why. On AMD, KVM INITs
 * the vCPU before it returns the shutdown exit (the VMCB is undefined
 * after one), so the registers read here are the INIT state, not where
 * the guest faulted: the line says so rather than show them as a clue. */
static void report_triple_fault(struct vcpu *v)
{
	struct kvm_regs r = {0};
	struct kvm_sregs sr = {0};
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
		r.rip = ~0ull;
	if (r.rip == 0xfff0 && !(sr.cr0 & 1)) {
		kvz_info("vCPU %d: triple fault after %llu exits: the guest resets "
			 "(KVM reset the vCPU before reporting it: the faulting RIP is lost)",
			 v->id, (unsigned long long)v->exits);
		return;
	}
	kvz_info("vCPU %d: triple fault at RIP 0x%llx (cr0 0x%llx cr3 0x%llx) after %llu exits: the guest resets",
		 v->id, (unsigned long long)r.rip, (unsigned long long)sr.cr0,
		 (unsigned long long)sr.cr3, (unsigned long long)v->exits);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++) {
		vm_pio(v->vm, run->io.port, data, run->io.size, run->io.direction == KVM_EXIT_IO_OUT);
		data += run->io.size;
	}
}

/* Returns false when the thread must end. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		vm_mmio(v->vm, run->mmio.phys_addr, run->mmio.data, run->mmio.len, run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
	case KVM_EXIT_HLT:     /* only without in-kernel irqchip: just run again */
		return true;
	case KVM_EXIT_SHUTDOWN:  /* triple fault: a PC resets */
		report_triple_fault(v);
		vm_request_stop(v->vm, VM_STOP_GUEST_RESET, "guest triple fault");
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
			vm_request_stop(v->vm, VM_STOP_GUEST_RESET, "guest reset");
		else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
			vm_request_stop(v->vm, VM_STOP_POWEROFF, "guest power-off");
		else
			vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %d: guest system event %u",
					v->id, run->system_event.type);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		report_internal_error(v);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %d: KVM_EXIT_FAIL_ENTRY, reason 0x%llx",
				v->id,
				(unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	default:
		vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %d: unhandled KVM exit reason %u",
				v->id, run->exit_reason);
		return false;
	}
}

/* An exit served for an IN or an MMIO read is complete only once KVM_RUN
 * is entered again (it writes the result into the registers). Entering it
 * with immediate_exit set completes it without running guest code (KVM's
 * documented way), so that a paused vCPU's saved state is consistent. */
static void complete_last_exit(struct vcpu *v)
{
	if (!__atomic_load_n(&v->exits, __ATOMIC_RELAXED))
		return;   /* never ran: nothing pending */
	v->run->immediate_exit = 1;
	if (ioctl(v->fd, KVM_RUN, 0) == 0)
		kvz_debug("vCPU %d: KVM_RUN with immediate_exit ran the guest", v->id);
}

/* Parks the thread while a pause is requested. Returns false when the
 * machine is stopping. */
static bool wait_until_runnable(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->lock);
	if (vm->pause_req && vm->stop == VM_STOP_NONE && !v->paused) {
		pthread_mutex_unlock(&vm->lock);
		complete_last_exit(v);
		pthread_mutex_lock(&vm->lock);
	}
	while (vm->pause_req && vm->stop == VM_STOP_NONE) {
		if (!v->paused) {
			v->paused = true;
			vm->npaused++;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	if (v->paused) {
		v->paused = false;
		vm->npaused--;
	}
	bool go = vm->stop == VM_STOP_NONE;
	/* Cleared under the lock that requesters set it under, so that a
	 * request made after this point still makes KVM_RUN return at once. */
	v->run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
	return go;
}

static void set_where(struct vcpu *v, int where)
{
	__atomic_store_n(&v->where, where, __ATOMIC_RELEASE);
}

static void note_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t addr = run->exit_reason == KVM_EXIT_IO     ? run->io.port
			: run->exit_reason == KVM_EXIT_MMIO ? run->mmio.phys_addr
							    : 0;
	__atomic_store_n(&v->where_reason, run->exit_reason, __ATOMIC_RELAXED);
	__atomic_store_n(&v->where_addr, addr, __ATOMIC_RELAXED);
	set_where(v, VCPU_IN_EXIT);
}

static void count_exit(struct vcpu *v)
{
	const struct kvm_run *run = v->run;
	bool write = (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) ||
		     (run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write);
	uint32_t kind = (run->exit_reason << 1 | write) + 1;   /* never 0 */
	uint64_t addr = __atomic_load_n(&v->where_addr, __ATOMIC_RELAXED);
	unsigned last = VCPU_EXIT_KINDS - 1;
	unsigned h = (unsigned)((addr * 0x9E3779B97F4A7C15ull ^ kind) % last);
	for (unsigned i = 0; i < last; i++) {
		struct vcpu_exit_count *c = &v->exit_counts[(h + i) % last];
		if (c->kind == 0) {
			c->kind = kind;
			c->addr = addr;
		}
		if (c->kind == kind && c->addr == addr) {
			c->count++;
			return;
		}
	}
	v->exit_counts[last].count++;
}

/* Most frequent first. Not qsort(): glibc's asks the kernel how much
 * memory there is (sysinfo), which the seccomp filter forbids. */
static void sort_counts(struct vcpu_exit_count *c, unsigned n)
{
	for (unsigned i = 1; i < n; i++) {
		struct vcpu_exit_count x = c[i];
		unsigned j = i;
		for (; j > 0 && c[j - 1].count < x.count; j--)
			c[j] = c[j - 1];
		c[j] = x;
	}
}

static const char *exit_kind_name(uint32_t kind)
{
	uint32_t reason = (kind - 1) >> 1;
	bool write = (kind - 1) & 1;
	switch (reason) {
	case KVM_EXIT_IO: return write ? "out" : "in";
	case KVM_EXIT_MMIO: return write ? "mmio-write" : "mmio-read";
	case KVM_EXIT_INTR: return "signal";
	case KVM_EXIT_HLT: return "hlt";
	default: return "other";
	}
}

void vcpu_log_exit_counts(const struct vcpu *v)
{
	struct vcpu_exit_count sorted[VCPU_EXIT_KINDS];
	memcpy(sorted, v->exit_counts, sizeof(sorted));
	sort_counts(sorted, VCPU_EXIT_KINDS - 1);
	char line[1024];
	int at = snprintf(line, sizeof(line), "vCPU %d: exits by kind:", v->id);
	for (unsigned i = 0; i < 16 && sorted[i].count && at < (int)sizeof(line); i++)
		at += snprintf(line + at, sizeof(line) - (size_t)at, " %s 0x%llx %llu,",
			       exit_kind_name(sorted[i].kind), (unsigned long long)sorted[i].addr,
			       (unsigned long long)sorted[i].count);
	uint64_t rest = v->exit_counts[VCPU_EXIT_KINDS - 1].count;
	if (at < (int)sizeof(line))
		snprintf(line + at, sizeof(line) - (size_t)at, " uncounted %llu", (unsigned long long)rest);
	kvz_debug("%s", line);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	__atomic_store_n(&v->tid, gettid(), __ATOMIC_RELEASE);
	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", v->id);
	pthread_setname_np(pthread_self(), name);   /* for top -H, gdb, perf */
	while (wait_until_runnable(v)) {
		set_where(v, VCPU_IN_GUEST);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vm_request_stop(v->vm, VM_STOP_ERROR, "vCPU %d: KVM_RUN: %s", v->id,
					strerror(errno));
			break;
		}
		__atomic_add_fetch(&v->exits, 1, __ATOMIC_RELAXED);
		note_exit(v);
		count_exit(v);
		vm_note_first_exit(v->vm);
		if (!handle_exit(v))
			break;
		set_where(v, VCPU_PARKED);
	}
	set_where(v, VCPU_ENDED);
	return NULL;
}

static const char *mp_state_name(uint32_t s)
{
	switch (s) {
	case KVM_MP_STATE_RUNNABLE: return "runnable";
	case KVM_MP_STATE_UNINITIALIZED: return "waiting-for-init";
	case KVM_MP_STATE_INIT_RECEIVED: return "init-received";
	case KVM_MP_STATE_HALTED: return "halted";
	case KVM_MP_STATE_SIPI_RECEIVED: return "sipi-received";
	default: return "other";
	}
}

static void log_recorded_state(struct vcpu *v)
{
	static const char *const names[] = {"not started", "in KVM_RUN", "serving an exit",
					    "between exits", "ended"};
	int w = __atomic_load_n(&v->where, __ATOMIC_ACQUIRE);
	const char *name = w >= 0 && w <= VCPU_ENDED ? names[w] : "unknown";
	if (w != VCPU_IN_EXIT) {
		kvz_info("vCPU %d: thread still running, %s, %llu exits", v->id, name,
			 (unsigned long long)__atomic_load_n(&v->exits, __ATOMIC_RELAXED));
		return;
	}
	kvz_info("vCPU %d: thread still running, stuck serving exit reason %u at 0x%llx, %llu exits",
		 v->id, __atomic_load_n(&v->where_reason, __ATOMIC_RELAXED),
		 (unsigned long long)__atomic_load_n(&v->where_addr, __ATOMIC_RELAXED),
		 (unsigned long long)__atomic_load_n(&v->exits, __ATOMIC_RELAXED));
}

void vcpu_log_state(struct vcpu *v)
{
	if (v->thread_started) {   /* not joined: its registers may be in use */
		log_recorded_state(v);
		return;
	}
	struct kvm_regs r;
	struct kvm_sregs sr;
	struct kvm_mp_state mp;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sr) < 0 ||
	    ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0) {
		kvz_info("vCPU %d: state unreadable: %s", v->id, strerror(errno));
		return;
	}
	kvz_info("vCPU %d: rip 0x%llx rsp 0x%llx rflags 0x%llx cr0 0x%llx %s, %llu exits", v->id,
		 (unsigned long long)r.rip, (unsigned long long)r.rsp, (unsigned long long)r.rflags,
		 (unsigned long long)sr.cr0, mp_state_name(mp.mp_state), (unsigned long long)v->exits);
}

int vcpu_start(struct vcpu *v, char *err, size_t errlen)
{
	int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (rc) {
		snprintf(err, errlen, "vCPU %d: pthread_create: %s", v->id, strerror(rc));
		return -1;
	}
	v->thread_started = true;
	/* query-cpus-fast names each vCPU's thread: known before vm_start
	 * returns (the thread publishes it first thing). */
	while (!__atomic_load_n(&v->tid, __ATOMIC_ACQUIRE))
		sched_yield();
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (v->run)
		v->run->immediate_exit = 1;
	if (v->thread_started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

bool vcpu_join_until(struct vcpu *v, const struct timespec *deadline)
{
	if (!v->thread_started)
		return true;
	if (pthread_timedjoin_np(v->thread, NULL, deadline) != 0)
		return false;
	v->thread_started = false;
	return true;
}

void vcpu_join(struct vcpu *v)
{
	if (v->thread_started)
		pthread_join(v->thread, NULL);
	v->thread_started = false;
}
