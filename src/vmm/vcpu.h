/* One vCPU: its KVM file descriptor, its thread, and its architectural
 * state in plain structures (snapshots serialize struct vcpu_state). */
#ifndef KVZ_VMM_VCPU_H
#define KVZ_VMM_VCPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <linux/kvm.h>

struct vm;
struct boot_entry;

#define VCPU_MAX_MSRS 32

/* Everything KVM holds for a vCPU that a snapshot needs. */
struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_xcrs xcrs;
	bool has_xcrs;
	unsigned nmsrs;
	struct kvm_msr_entry msrs[VCPU_MAX_MSRS];
};

enum vcpu_where { VCPU_NOT_STARTED, VCPU_IN_GUEST, VCPU_IN_EXIT, VCPU_PARKED, VCPU_ENDED };

/* Exits counted by what they were for (--verbose prints the most frequent
 * at the end): what a guest's boot makes the VMM serve. */
#define VCPU_EXIT_KINDS 64
struct vcpu_exit_count {
	uint32_t kind;              /* exit reason << 1 | write; 0: empty slot */
	uint64_t addr;              /* port or MMIO address; 0 for other exits */
	uint64_t count;
};

struct vcpu {
	struct vm *vm;
	int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	pid_t tid;                  /* for query-cpus-fast; set by the thread */
	bool paused;                /* under vm->lock */
	uint64_t exits;             /* KVM_RUN returns; written by the vCPU thread only */
	/* Where the thread is (enum vcpu_where) and, while it serves an exit,
	 * the exit reason and port or address: what a stop that cannot join
	 * the thread reports. Written by the thread, read atomically. */
	int where;
	uint32_t where_reason;
	uint64_t where_addr;
	struct vcpu_state reset_state;   /* power-on state, restored on reset */
	/* Written by the vCPU thread only; read after it is joined. The last
	 * slot takes what no slot is left for. */
	struct vcpu_exit_count exit_counts[VCPU_EXIT_KINDS];
};

/* One debug line: the vCPU's most frequent exits (after its thread ended). */
void vcpu_log_exit_counts(const struct vcpu *v);

/* Creates the KVM vCPU, sets CPUID, LAPIC LINT0/LINT1 and MSRs. */
int vcpu_init(struct vcpu *v, struct vm *vm, int id, char *err, size_t errlen);
void vcpu_destroy(struct vcpu *v);
/* The VM's CPUID table with this vCPU's APIC id (before its first run). */
int vcpu_set_cpuid(struct vcpu *v, const struct kvm_cpuid2 *table, char *err, size_t errlen);

/* Puts the vCPU in its power-on state for the loaded kernel: the BSP (and
 * for ELF guests every vCPU) in 64-bit mode at the entry, Linux APs waiting
 * for INIT/SIPI. Records it as the reset state. */
int vcpu_setup_boot(struct vcpu *v, const struct boot_entry *e, char *err, size_t errlen);
/* Real mode at the reset vector (firmware boot); APs wait for INIT/SIPI. */
int vcpu_setup_firmware(struct vcpu *v, char *err, size_t errlen);

int vcpu_save_state(struct vcpu *v, struct vcpu_state *s, char *err, size_t errlen);
int vcpu_load_state(struct vcpu *v, const struct vcpu_state *s, char *err, size_t errlen);

int vcpu_start(struct vcpu *v, char *err, size_t errlen);
/* Makes the thread leave KVM_RUN soon; caller holds vm->lock. */
void vcpu_kick(struct vcpu *v);
void vcpu_join(struct vcpu *v);
/* Joins the thread unless it is still running at deadline (CLOCK_REALTIME,
 * as pthread_timedjoin_np wants). Returns false when it did not end. */
bool vcpu_join_until(struct vcpu *v, const struct timespec *deadline);

/* Logs one line with where the vCPU is (RIP, RSP, RFLAGS, CR0, run state,
 * exit count), for a machine stopped by a signal: after its thread ended.
 * For a thread that did not end only what it recorded (the registers
 * cannot be read while it may be inside KVM_RUN). */
void vcpu_log_state(struct vcpu *v);

/* Installs the (empty) kick signal handler; once, before any vCPU runs. */
int vcpu_signal_init(void);

#endif
