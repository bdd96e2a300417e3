/* The KVM machine: one VM file descriptor, guest RAM, the vCPUs, the legacy
 * devices and the control state (running, paused, stopping) that the vCPU
 * threads, the QMP thread and main() share. */
#ifndef KVZ_VMM_VM_H
#define KVZ_VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "boot.h"
#include "firmware.h"
#include "guest_mem.h"
#include "vcpu.h"

#define VM_MAX_VCPUS 240        /* APIC ids and the IOAPIC id must fit below 255 */
#define VM_MAX_GSI_ROUTES 1024
#define VM_FIRST_MSI_GSI 24     /* 0-23 are the IOAPIC pins */
#define VM_TSS_ADDR 0xFFFBD000u /* 3 pages below the identity map page */
#define VM_IDENTITY_MAP_ADDR 0xFFFFC000u
/* With a firmware the top of 4 GiB is its ROM: QEMU's addresses, below
 * the IOAPIC... ranges and above the PCI window. */
#define VM_FW_IDENTITY_MAP_ADDR 0xFEFFC000u
#define VM_ROM_SLOT 2

enum vm_run_state { VM_RUNNING, VM_PAUSED, VM_SHUTDOWN };

/* Why the machine stops for good. */
enum vm_stop_reason {
	VM_STOP_NONE,
	VM_STOP_POWEROFF,      /* guest powered off: exit 0 */
	VM_STOP_GUEST_RESET,   /* guest rebooted: exit 0 */
	VM_STOP_QUIT,          /* QMP quit: exit 0 */
	VM_STOP_ERROR,         /* VMM-side failure: exit 1, message in stop_msg */
};

struct serial;
struct i8042;
struct rtc;
struct acpi_pm;
struct pci_bus;
struct io_thread;
struct state_registry;

/* --dirty-log: how live migration tracks the vCPUs' writes. auto: KVM's
 * manual protect when the host offers it, else legacy. */
enum vm_dirty_log { VM_DIRTY_LOG_AUTO = 0, VM_DIRTY_LOG_LEGACY, VM_DIRTY_LOG_MANUAL };

struct vm_config {
	const char *kvm_path;       /* /dev/kvm unless KVZ_KVM_DEVICE says otherwise */
	uint64_t mem_size;
	int ncpus;
	const char *cpu_model;      /* "kvz64" (default) or "host" */
	bool bench_first_exit;      /* print when the first guest exit happens */
	bool start_paused;          /* vm_start leaves it paused until QMP cont */
	bool shared_memory;         /* RAM in a memfd (another process may map it) */
	const char *firmware;       /* --firmware bios|PATH: boot through it, no kernel */
	struct boot_order boot_order; /* --boot, for the firmware */
	enum vm_dirty_log dirty_log;  /* --dirty-log */
};

/* Hooks main() installs to hear about state changes (QMP events). Called
 * with no VM lock held, from whichever thread caused the change. */
struct vm_listener {
	void (*stopped)(void *opaque, enum vm_stop_reason why);
	void *opaque;
};

/* The machine itself is private to the machine code (vm.c, vcpu.c,
 * machine_state.c, snapshot.c: vm_internal.h); everything else goes through
 * the functions below. */
struct vm;
struct vmm_context;

/* Checks what can be checked without KVM (memory against host RAM). */
int vm_check_config(const struct vm_config *cfg, char *err, size_t errlen);

/* Opens KVM and builds the machine (RAM, irqchip, PIT, vCPUs, CPUID, legacy
 * devices) without starting anything. Returns NULL with one line in err. */
struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen);
void vm_destroy(struct vm *vm);
/* Stops the I/O thread before devices it serves are destroyed. */
void vm_stop_io(struct vm *vm);

/* Loads the kernel (or the firmware's low alias and fw_cfg items) and sets
 * every vCPU to its power-on state. */
int vm_load(struct vm *vm, const struct boot_config *boot, char *err, size_t errlen);
/* What vm_load() does but writing guest RAM, before a restore replaces
 * RAM: fw_cfg items, every vCPU's power-on (reset) state from the kernel's
 * headers, the boot files kept for a later system_reset (which loads
 * them). Reading and copying the images cost a restore in the lab 80 to
 * 500 ms, more than everything else before the first vCPU runs. */
int vm_prepare_restore(struct vm *vm, const struct boot_config *boot, char *err, size_t errlen);

/* Starts the vCPU threads. */
int vm_start(struct vm *vm, char *err, size_t errlen);
/* Waits until vm_start has made every vCPU thread (each knows its thread
 * id) or the machine stopped: a QMP client may ask before that. */
void vm_wait_started(struct vm *vm);

/* Blocks until something asks the machine to stop, then joins every vCPU
 * thread, waiting at most join_limit_s seconds for them all. Returns the
 * reason; *all_joined tells whether every thread ended (if not, one is
 * stuck in a device and the machine cannot be torn down). */
enum vm_stop_reason vm_wait(struct vm *vm, int join_limit_s, bool *all_joined);

/* Asks for a final stop (from any thread); the first reason wins. */
void vm_request_stop(struct vm *vm, enum vm_stop_reason why, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Pauses the whole machine and returns once nothing touches guest RAM:
 * every vCPU thread parked outside KVM_RUN with its last exit completed,
 * the I/O thread parked between requests (queues drained), then each
 * registry entry's pause (vhost-net's kernel data path detached). vm_resume
 * undoes it in reverse order. Both return false when the machine is
 * stopping. */
bool vm_pause(struct vm *vm);
bool vm_resume(struct vm *vm);
enum vm_run_state vm_run_state(struct vm *vm);

/* Back to power-on state: vCPUs, legacy devices, boot images reloaded. The
 * caller resets the virtio devices. Keeps the run state (paused stays). */
int vm_reset(struct vm *vm, char *err, size_t errlen);

/* For the control layer (main.c, QMP). */
/* The context devices are created with (device_hooks.h). */
void vm_device_context(struct vm *vm, struct vmm_context *ctx);
struct serial *vm_serial(struct vm *vm);
int vm_vcpu_count(struct vm *vm);
/* Thread id of vCPU i (after vm_wait_started). */
int vm_vcpu_tid(struct vm *vm, int i);
/* Why the machine stopped (after vm_wait) and its vCPUs' exit count. */
const char *vm_stop_message(struct vm *vm);
unsigned long long vm_exit_count(struct vm *vm);
/* --verbose: one line per vCPU, its most frequent exits (after vm_wait
 * joined the threads). */
void vm_log_exit_counts(struct vm *vm);
/* One line per vCPU: where it is (vcpu_log_state). */
void vm_log_vcpus(struct vm *vm);
/* QMP system_powerdown: -1 when the guest has not enabled the button. */
int vm_press_power_button(struct vm *vm);
/* Before vm_start: who hears about state changes. */
void vm_set_listener(struct vm *vm, const struct vm_listener *l);

/* Exit dispatch, called by the vCPU threads. */
void vm_pio(struct vm *vm, uint16_t port, void *data, unsigned len, bool is_write);
void vm_mmio(struct vm *vm, uint64_t addr, void *data, unsigned len, bool is_write);
void vm_note_first_exit(struct vm *vm);

#endif
