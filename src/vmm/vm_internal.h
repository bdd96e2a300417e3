/* The machine's state, private to the machine code (vm.c, vcpu.c,
 * machine_state.c, snapshot.c) and its unit tests: the rest of kvz-vmm
 * uses the functions of vm.h. */
#ifndef KVZ_VMM_VM_INTERNAL_H
#define KVZ_VMM_VM_INTERNAL_H

#include "vm.h"

struct vm {
	struct vm_config cfg;
	int kvm_fd;
	int vm_fd;
	size_t run_size;            /* mmap size of struct kvm_run */
	struct guest_mem mem;
	struct kvm_cpuid2 *cpuid;   /* after --cpu-model masking, APIC id unset */
	int ncpus;
	struct vcpu *vcpus;         /* ncpus entries */
	struct boot_config boot;    /* what to load again on system_reset */
	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled at creation (dirty_log.h);
	 * set once before any thread starts, read-only afterwards. */
	bool dirty_manual;

	struct pci_bus *pci;
	struct io_thread *io;
	struct serial *serial;
	struct i8042 *i8042;
	struct rtc *rtc;
	struct acpi_pm *acpi_pm;
	struct fw_cfg *fw_cfg;
	struct firmware_image firmware;   /* size 0 without --firmware */
	struct vm_listener listener;
	/* Every piece of machine state, in save/load/pause order (the machine's
	 * entries from machine_state.c, then the devices'). */
	struct state_registry *registry;
	uint32_t *msr_list;         /* KVM_GET_MSR_INDEX_LIST: what a vCPU save reads */
	uint32_t nmsr_list;

	/* Serializes the run-state transitions (vm_start's pause-or-run
	 * decision, vm_pause, vm_resume) with the device and I/O-thread
	 * pause/resume calls each makes outside `lock`: without it a QMP cont
	 * racing vm_start (a migration target's cont right after the stream
	 * completed) could resume the devices before vm_start paused them for
	 * --paused, leaving vCPUs running beside paused devices. Taken before
	 * `lock`, never by vCPU or I/O threads. */
	pthread_mutex_t transition;
	bool resumed_before_start;  /* a resume came before vm_start (under transition) */

	/* Guards everything below; cond signals every change of it. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_run_state state;
	bool pause_req;
	int npaused;                /* vCPU threads parked because of pause_req */
	enum vm_stop_reason stop;
	char stop_msg[256];
	bool first_exit_seen;
	bool first_exit_phase;   /* --bench-phases: "first vCPU exit" printed */
	bool vcpus_starting;        /* vm_start is making the vCPU threads (or did) */
	bool vcpus_started;         /* vm_start made every vCPU thread */
	int64_t start_ns;           /* CLOCK_MONOTONIC at vm_create, for the benchmark */

	/* Guards the GSI routing table (IOAPIC/PIC defaults + MSI routes). */
	pthread_mutex_t irq_lock;
	struct kvm_irq_routing_entry routes[VM_MAX_GSI_ROUTES];
	unsigned nroutes;
	uint8_t msi_used[VM_MAX_GSI_ROUTES];   /* by GSI */
};

#endif
