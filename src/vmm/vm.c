#include "vm_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "acpi.h"
#include "acpi_pm.h"
#include "cpuid.h"
#include "firmware.h"
#include "fw_cfg.h"
#include "device_hooks.h"
#include "dirty_log.h"
#include "i8042.h"
#include "io_thread.h"
#include "irq.h"
#include "log.h"
#include "machine_state.h"
#include "phase_trace.h"
#include "pci.h"
#include "rtc.h"
#include "serial.h"
#include "state/state_registry.h"

#define PORT_DEBUG 0x80

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int open_kvm(struct vm *vm, char *err, size_t errlen)
{
	const char *path = vm->cfg.kvm_path ? vm->cfg.kvm_path : "/dev/kvm";
	vm->kvm_fd = open(path, O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s (KVM is not available on this host)", path,
			 strerror(errno));
		return -1;
	}
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		snprintf(err, errlen, "%s is not a usable KVM device (API version %d, want %d)", path,
			 version, KVM_API_VERSION);
		return -1;
	}
	int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max <= 0)
		max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max <= 0)
		max = 4;
	if (max > VM_MAX_VCPUS)
		max = VM_MAX_VCPUS;
	if (vm->cfg.ncpus > max) {
		snprintf(err, errlen, "too many vCPUs: --cpus %d, this host supports at most %d",
			 vm->cfg.ncpus, max);
		return -1;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
		return -1;
	}
	int sz = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0) {
		snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
		return -1;
	}
	vm->run_size = (size_t)sz;
	/* Before any slot exists, so before any slot logs (KVM's rule). */
	return dirty_log_setup(vm, err, errlen);
}

static int set_region_flags(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host,
			    uint32_t flags, char *err, size_t errlen)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION at 0x%llx: %s",
			 (unsigned long long)gpa, strerror(errno));
		return -1;
	}
	return 0;
}

static int set_region(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host,
		      char *err, size_t errlen)
{
	return set_region_flags(vm, slot, gpa, size, host, 0, err, errlen);
}

/* The firmware image, read-only, ending at 4 GiB: guest writes to it
 * become MMIO exits that nothing claims (ignored, as a ROM does). */
static int map_firmware(struct vm *vm, char *err, size_t errlen)
{
	if (firmware_read(vm->cfg.firmware, &vm->firmware, err, errlen) < 0)
		return -1;
	if (vm->mem.lo_size > vm->firmware.gpa) {
		snprintf(err, errlen, "firmware and RAM overlap");
		return -1;
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) {
		snprintf(err, errlen, "--firmware needs read-only memory slots (KVM_CAP_READONLY_MEM)");
		return -1;
	}
	return set_region_flags(vm, VM_ROM_SLOT, vm->firmware.gpa, vm->firmware.size,
				vm->firmware.data, KVM_MEM_READONLY, err, errlen);
}

int vm_check_config(const struct vm_config *cfg, char *err, size_t errlen)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long psize = sysconf(_SC_PAGESIZE);
	uint64_t host_ram = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
	if (host_ram && cfg->mem_size > host_ram) {
		snprintf(err, errlen, "--memory %llu MiB is more than this host's %llu MiB of RAM",
			 (unsigned long long)(cfg->mem_size >> 20), (unsigned long long)(host_ram >> 20));
		return -1;
	}
	if (cfg->ncpus < 1 || cfg->ncpus > VM_MAX_VCPUS) {
		snprintf(err, errlen, "too many vCPUs: %d, kvz-vmm supports at most %d", cfg->ncpus,
			 VM_MAX_VCPUS);
		return -1;
	}
	return 0;
}

static int setup_memory(struct vm *vm, char *err, size_t errlen)
{
	if (vm_check_config(&vm->cfg, err, errlen) < 0)
		return -1;
	int rc = guest_mem_init(&vm->mem, vm->cfg.mem_size, vm->cfg.shared_memory);
	if (rc < 0) {
		snprintf(err, errlen, "cannot allocate %llu MiB of guest RAM: %s",
			 (unsigned long long)(vm->cfg.mem_size >> 20), strerror(-rc));
		return -1;
	}
	if (set_region(vm, 0, 0, vm->mem.lo_size, vm->mem.host, err, errlen) < 0)
		return -1;
	if (vm->mem.hi_size &&
	    set_region(vm, 1, GUEST_MEM_HI_START, vm->mem.hi_size, vm->mem.host + vm->mem.lo_size,
		       err, errlen) < 0)
		return -1;
	return vm->cfg.firmware ? map_firmware(vm, err, errlen) : 0;
}

/* The default GSI routing KVM installs with the irqchip: GSI 0-15 to both
 * PICs and the IOAPIC, 16-23 to the IOAPIC. We keep our own copy because
 * KVM_SET_GSI_ROUTING replaces the whole table. */
static void default_routes(struct vm *vm)
{
	vm->nroutes = 0;
	for (uint32_t gsi = 0; gsi < 24; gsi++) {
		if (gsi < 16) {
			struct kvm_irq_routing_entry *e = &vm->routes[vm->nroutes++];
			*e = (struct kvm_irq_routing_entry){.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP};
			e->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
			e->u.irqchip.pin = gsi % 8;
		}
		struct kvm_irq_routing_entry *e = &vm->routes[vm->nroutes++];
		*e = (struct kvm_irq_routing_entry){.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP};
		e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		e->u.irqchip.pin = gsi;
	}
}

static int setup_irqchip(struct vm *vm, char *err, size_t errlen)
{
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VM_TSS_ADDR) < 0) {
		snprintf(err, errlen, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		return -1;
	}
	uint64_t idmap = vm->cfg.firmware ? VM_FW_IDENTITY_MAP_ADDR : VM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		kvz_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		snprintf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return -1;
	}
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		snprintf(err, errlen, "KVM_CREATE_PIT2: %s", strerror(errno));
		return -1;
	}
	default_routes(vm);
	return 0;
}

static int create_devices(struct vm *vm, char *err, size_t errlen)
{
	vm->pci = pci_bus_create();
	vm->io = io_thread_create();
	vm->serial = serial_create(vm, 4);
	vm->i8042 = i8042_create(vm);
	vm->rtc = rtc_create();
	vm->acpi_pm = acpi_pm_create(vm);
	vm->fw_cfg = fw_cfg_create(&vm->mem);
	if (!vm->pci || !vm->io || !vm->serial || !vm->i8042 || !vm->rtc || !vm->acpi_pm ||
	    !vm->fw_cfg) {
		snprintf(err, errlen, "cannot create devices: out of memory");
		return -1;
	}
	return 0;
}

struct vm *vm_create(const struct vm_config *cfg, char *err, size_t errlen)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	vm->cfg = *cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->mem.memfd = -1;
	vm->mem.pagemap_fd = -1;
	vm->start_ns = now_ns();
	pthread_mutex_init(&vm->transition, NULL);
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->irq_lock, NULL);
	if (open_kvm(vm, err, errlen) < 0)
		goto fail;
	kvz_phase("KVM VM created");
	if (setup_memory(vm, err, errlen) < 0)
		goto fail;
	kvz_phase("guest RAM mapped, memory slots set");
	if (setup_irqchip(vm, err, errlen) < 0 || create_devices(vm, err, errlen) < 0)
		goto fail;
	kvz_phase("irqchip and legacy devices created");
	vm->cpuid = cpuid_build(vm->kvm_fd, cfg->cpu_model, cfg->ncpus, err, errlen);
	if (!vm->cpuid)
		goto fail;
	vm->vcpus = calloc((size_t)cfg->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int i = 0; i < cfg->ncpus; i++) {
		vm->vcpus[i].fd = -1;
		vm->vcpus[i].vm = vm;
	}
	for (int i = 0; i < cfg->ncpus; i++) {
		vm->ncpus = i + 1;
		if (vcpu_init(&vm->vcpus[i], vm, i, err, errlen) < 0)
			goto fail;
	}
	kvz_phase("vCPUs created");
	vm->registry = state_registry_create();
	if (!vm->registry) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (machine_state_register(vm, err, errlen) < 0)
		goto fail;
	return vm;
fail:
	vm_destroy(vm);
	return NULL;
}

/* Only stops the thread: the virtio devices, destroyed after this and
 * before vm_destroy(), still unregister their fds from it (they keep a
 * pointer to it; freeing it here let them lock a freed mutex, which hung
 * kvz-vmm's exit whenever that memory had been reused). */
void vm_stop_io(struct vm *vm)
{
	io_thread_stop(vm->io);
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	/* The I/O thread first: its handlers may still touch devices. */
	io_thread_destroy(vm->io);
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	serial_destroy(vm->serial);
	i8042_destroy(vm->i8042);
	rtc_destroy(vm->rtc);
	acpi_pm_destroy(vm->acpi_pm);
	fw_cfg_destroy(vm->fw_cfg);
	firmware_free(&vm->firmware);
	pci_bus_destroy(vm->pci);
	free(vm->cpuid);
	state_registry_destroy(vm->registry);
	free(vm->msr_list);
	guest_mem_destroy(&vm->mem);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	pthread_mutex_destroy(&vm->irq_lock);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->transition);
	free(vm);
}

/* What the firmware reads from fw_cfg: also there for a direct boot (a
 * kernel may read fw_cfg, and the tiny attack-test guests do). */
static int fill_fw_cfg(struct vm *vm, char *err, size_t errlen)
{
	fw_cfg_clear(vm->fw_cfg);
	return firmware_fw_cfg_items(vm->fw_cfg, &vm->mem, vm->ncpus, vm->pci, &vm->cfg.boot_order,
				     err, errlen);
}

/* Every vCPU in its power-on state, saved as its reset state: at the
 * kernel's entry, or (entry NULL) at the firmware's reset vector. */
static int vcpus_power_on(struct vm *vm, const struct boot_entry *entry, char *err, size_t errlen)
{
	for (int i = 0; i < vm->ncpus; i++)
		if ((entry ? vcpu_setup_boot(&vm->vcpus[i], entry, err, errlen)
			   : vcpu_setup_firmware(&vm->vcpus[i], err, errlen)) < 0)
			return -1;
	return 0;
}

static int load_firmware(struct vm *vm, char *err, size_t errlen)
{
	if (firmware_copy_low(&vm->firmware, &vm->mem, err, errlen) < 0)
		return -1;
	return vcpus_power_on(vm, NULL, err, errlen);
}

int vm_load(struct vm *vm, const struct boot_config *boot, char *err, size_t errlen)
{
	vm->boot = *boot;
	if (fill_fw_cfg(vm, err, errlen) < 0)
		return -1;
	if (vm->cfg.firmware)
		return load_firmware(vm, err, errlen);
	struct boot_entry entry;
	if (boot_load(&vm->mem, boot, &entry, err, errlen) < 0)
		return -1;
	if (mptable_write(&vm->mem, vm->ncpus, vm->pci, err, errlen) < 0)
		return -1;
	if (acpi_write_tables(&vm->mem, vm->ncpus, vm->pci, err, errlen) < 0)
		return -1;
	return vcpus_power_on(vm, &entry, err, errlen);
}

int vm_prepare_restore(struct vm *vm, const struct boot_config *boot, char *err, size_t errlen)
{
	vm->boot = *boot;
	if (fill_fw_cfg(vm, err, errlen) < 0)
		return -1;
	if (vm->cfg.firmware)
		return vcpus_power_on(vm, NULL, err, errlen);
	struct boot_entry entry;
	if (boot_entry_only(boot, &entry, err, errlen) < 0)
		return -1;
	return vcpus_power_on(vm, &entry, err, errlen);
}

int vm_start(struct vm *vm, char *err, size_t errlen)
{
	int rc = vcpu_signal_init();
	if (rc < 0) {
		snprintf(err, errlen, "sigaction: %s", strerror(-rc));
		return -1;
	}
	rc = io_thread_start(vm->io);
	if (rc < 0) {
		snprintf(err, errlen, "cannot start the I/O thread: %s", strerror(-rc));
		return -1;
	}
	pthread_mutex_lock(&vm->transition);
	pthread_mutex_lock(&vm->lock);
	/* Paused by request (--paused, unless a QMP cont came first) or by a
	 * QMP stop/migrate that came before this: the vCPU threads park at
	 * once. */
	bool already = vm->state == VM_PAUSED;
	bool paused = already || (vm->cfg.start_paused && !vm->resumed_before_start);
	vm->state = paused ? VM_PAUSED : VM_RUNNING;
	vm->pause_req = paused;
	vm->vcpus_starting = true;
	pthread_mutex_unlock(&vm->lock);
	if (paused)
		io_thread_pause(vm->io);   /* it did not run when the early pause came */
	if (paused && !already)
		state_registry_pause(vm->registry);
	pthread_mutex_unlock(&vm->transition);
	for (int i = 0; i < vm->ncpus; i++)
		if (vcpu_start(&vm->vcpus[i], err, errlen) < 0) {
			vm_request_stop(vm, VM_STOP_ERROR, "%s", err);
			return -1;
		}
	pthread_mutex_lock(&vm->lock);
	vm->vcpus_started = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_wait_started(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	while (!vm->vcpus_started && vm->stop == VM_STOP_NONE)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void vm_request_stop(struct vm *vm, enum vm_stop_reason why, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->stop != VM_STOP_NONE) {
		pthread_mutex_unlock(&vm->lock);
		return;
	}
	vm->stop = why;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(vm->stop_msg, sizeof(vm->stop_msg), fmt, ap);
	va_end(ap);
	vm->state = VM_SHUTDOWN;
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (vm->listener.stopped)
		vm->listener.stopped(vm->listener.opaque, why);
}

enum vm_stop_reason vm_wait(struct vm *vm, int join_limit_s, bool *all_joined)
{
	pthread_mutex_lock(&vm->lock);
	while (vm->stop == VM_STOP_NONE)
		pthread_cond_wait(&vm->cond, &vm->lock);
	enum vm_stop_reason why = vm->stop;
	pthread_mutex_unlock(&vm->lock);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += join_limit_s;
	*all_joined = true;
	for (int i = 0; i < vm->ncpus; i++)
		if (!vcpu_join_until(&vm->vcpus[i], &deadline))
			*all_joined = false;
	return why;
}

/* One run-state transition (vm_pause_locked, vm_resume_locked) under
 * vm->transition, so that it cannot interleave with vm_start's. */
static bool in_transition(struct vm *vm, bool (*step)(struct vm *))
{
	pthread_mutex_lock(&vm->transition);
	bool ok = step(vm);
	pthread_mutex_unlock(&vm->transition);
	return ok;
}

static bool vm_pause_locked(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (vm->stop != VM_STOP_NONE) {
		pthread_mutex_unlock(&vm->lock);
		return false;
	}
	vm->pause_req = true;
	if (!vm->vcpus_starting) {
		/* Before vm_start: no thread to wait for; vm_start keeps it paused. */
		bool was = vm->state == VM_PAUSED;
		vm->state = VM_PAUSED;
		pthread_mutex_unlock(&vm->lock);
		if (!was)
			state_registry_pause(vm->registry);
		return true;
	}
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	while (vm->npaused < vm->ncpus && vm->stop == VM_STOP_NONE)
		pthread_cond_wait(&vm->cond, &vm->lock);
	bool ok = vm->stop == VM_STOP_NONE;
	bool was_paused = vm->state == VM_PAUSED;
	if (ok)
		vm->state = VM_PAUSED;
	pthread_mutex_unlock(&vm->lock);
	/* Without vm->lock: the I/O thread's handlers may need other locks
	 * (device, irq) but never this one. */
	if (ok && !was_paused) {
		io_thread_pause(vm->io);
		state_registry_pause(vm->registry);
	}
	return ok;
}

bool vm_pause(struct vm *vm)
{
	return in_transition(vm, vm_pause_locked);
}

static bool vm_resume_locked(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	bool ok = vm->stop == VM_STOP_NONE;
	bool paused = vm->state == VM_PAUSED;
	if (!vm->vcpus_starting)
		vm->resumed_before_start = true;   /* vm_start must not park them */
	pthread_mutex_unlock(&vm->lock);
	if (ok && paused) {
		state_registry_resume(vm->registry);
		io_thread_resume(vm->io);
	}
	pthread_mutex_lock(&vm->lock);
	ok = vm->stop == VM_STOP_NONE;
	if (ok) {
		vm->pause_req = false;
		vm->state = VM_RUNNING;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	return ok;
}

bool vm_resume(struct vm *vm)
{
	return in_transition(vm, vm_resume_locked);
}

enum vm_run_state vm_run_state(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	enum vm_run_state s = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return s;
}

/* The firmware would clear low memory and reload the kernel: do what it
 * would, so that no table of the previous boot survives. (At first boot
 * RAM is all zeros already; not touching it keeps RSS and start-up time
 * down.) */
static int reload_kernel(struct vm *vm, char *err, size_t errlen)
{
	memset(guest_mem_ptr(&vm->mem, 0, BOOT_KERNEL_ADDR), 0, BOOT_KERNEL_ADDR);
	struct boot_entry entry;
	int rc = boot_load(&vm->mem, &vm->boot, &entry, err, errlen);
	if (rc == 0)
		rc = mptable_write(&vm->mem, vm->ncpus, vm->pci, err, errlen);
	if (rc == 0)
		rc = acpi_write_tables(&vm->mem, vm->ncpus, vm->pci, err, errlen);
	return rc;
}

/* PAM back to ROM and the ROM's low alias as it was at power-on: the
 * firmware starts afresh and shadows itself again (firmware.h). */
static int reload_firmware(struct vm *vm, char *err, size_t errlen)
{
	pci_bus_reset_bridge(vm->pci);
	return firmware_copy_low(&vm->firmware, &vm->mem, err, errlen);
}

int vm_reset(struct vm *vm, char *err, size_t errlen)
{
	bool was_running = vm_run_state(vm) == VM_RUNNING;
	if (!vm_pause(vm)) {
		snprintf(err, errlen, "the machine is shutting down");
		return -1;
	}
	/* Devices first (virtio stops any kernel data path), then memory. */
	state_registry_reset(vm->registry);
	fw_cfg_reset(vm->fw_cfg);
	int rc = vm->cfg.firmware ? reload_firmware(vm, err, errlen) : reload_kernel(vm, err, errlen);
	for (int i = 0; i < vm->ncpus && rc == 0; i++)
		rc = vcpu_load_state(&vm->vcpus[i], &vm->vcpus[i].reset_state, err, errlen);
	if (was_running)
		vm_resume(vm);
	return rc;
}

void vm_device_context(struct vm *vm, struct vmm_context *ctx)
{
	*ctx = (struct vmm_context){.vm = vm, .mem = &vm->mem, .pci = vm->pci, .io = vm->io,
				    .state = vm->registry};
}

struct serial *vm_serial(struct vm *vm)
{
	return vm->serial;
}

int vm_vcpu_count(struct vm *vm)
{
	return vm->ncpus;
}

int vm_vcpu_tid(struct vm *vm, int i)
{
	return i >= 0 && i < vm->ncpus ? (int)__atomic_load_n(&vm->vcpus[i].tid, __ATOMIC_ACQUIRE) : -1;
}

const char *vm_stop_message(struct vm *vm)
{
	return vm->stop_msg;
}

unsigned long long vm_exit_count(struct vm *vm)
{
	unsigned long long n = 0;
	for (int i = 0; i < vm->ncpus; i++)
		n += __atomic_load_n(&vm->vcpus[i].exits, __ATOMIC_RELAXED);
	return n;
}

void vm_log_exit_counts(struct vm *vm)
{
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_log_exit_counts(&vm->vcpus[i]);
}

void vm_log_vcpus(struct vm *vm)
{
	for (int i = 0; i < vm->ncpus; i++)
		vcpu_log_state(&vm->vcpus[i]);
}

int vm_press_power_button(struct vm *vm)
{
	return acpi_pm_press_power_button(vm->acpi_pm);
}

void vm_set_listener(struct vm *vm, const struct vm_listener *l)
{
	vm->listener = *l;
}

void vm_note_first_exit(struct vm *vm)
{
	if (kvz_phase_on() && !__atomic_exchange_n(&vm->first_exit_phase, true, __ATOMIC_RELAXED))
		kvz_phase("first vCPU exit");
	if (!vm->cfg.bench_first_exit || __atomic_load_n(&vm->first_exit_seen, __ATOMIC_RELAXED))
		return;
	if (__atomic_exchange_n(&vm->first_exit_seen, true, __ATOMIC_ACQ_REL))
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	int64_t t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	fprintf(stderr, "kvz-vmm: bench: first-exit-monotonic-ns %lld since-vm-create-ns %lld\n",
		(long long)t, (long long)(t - vm->start_ns));
}

void vm_pio(struct vm *vm, uint16_t port, void *data, unsigned len, bool is_write)
{
	if (serial_pio(vm->serial, port, data, len, is_write) ||
	    i8042_pio(vm->i8042, port, data, len, is_write) ||
	    rtc_pio(vm->rtc, port, data, len, is_write) ||
	    acpi_pm_pio(vm->acpi_pm, port, data, len, is_write) ||
	    fw_cfg_pio(vm->fw_cfg, port, data, len, is_write) ||
	    pci_pio(vm->pci, port, data, len, is_write))
		return;
	/* Port 0x80 (POST codes) and every port without a device: writes are
	 * ignored, reads float high, as on a PC bus with nothing behind it. */
	(void)PORT_DEBUG;
	if (!is_write)
		memset(data, 0xFF, len);
}

void vm_mmio(struct vm *vm, uint64_t addr, void *data, unsigned len, bool is_write)
{
	if (pci_mmio(vm->pci, addr, data, len, is_write))
		return;
	if (!is_write)
		memset(data, 0xFF, len);
}

/* ---- irq.h ---- */

static int push_routes_locked(struct vm *vm)
{
	size_t sz = sizeof(struct kvm_irq_routing) + vm->nroutes * sizeof(struct kvm_irq_routing_entry);
	struct kvm_irq_routing *r = calloc(1, sz);
	if (!r)
		return -ENOMEM;
	r->nr = vm->nroutes;
	memcpy(r->entries, vm->routes, vm->nroutes * sizeof(struct kvm_irq_routing_entry));
	int rc = ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, r) < 0 ? -errno : 0;
	free(r);
	return rc;
}

static struct kvm_irq_routing_entry *find_msi_route(struct vm *vm, int gsi)
{
	for (unsigned i = 0; i < vm->nroutes; i++)
		if (vm->routes[i].gsi == (uint32_t)gsi && vm->routes[i].type == KVM_IRQ_ROUTING_MSI)
			return &vm->routes[i];
	return NULL;
}

int vm_msi_route_alloc(struct vm *vm, uint64_t addr, uint32_t data)
{
	pthread_mutex_lock(&vm->irq_lock);
	int gsi = -1;
	for (int g = VM_FIRST_MSI_GSI; g < VM_MAX_GSI_ROUTES; g++)
		if (!vm->msi_used[g]) {
			gsi = g;
			break;
		}
	if (gsi < 0 || vm->nroutes >= VM_MAX_GSI_ROUTES) {
		pthread_mutex_unlock(&vm->irq_lock);
		return -ENOSPC;
	}
	struct kvm_irq_routing_entry *e = &vm->routes[vm->nroutes++];
	*e = (struct kvm_irq_routing_entry){.gsi = (uint32_t)gsi, .type = KVM_IRQ_ROUTING_MSI};
	e->u.msi.address_lo = (uint32_t)addr;
	e->u.msi.address_hi = (uint32_t)(addr >> 32);
	e->u.msi.data = data;
	int rc = push_routes_locked(vm);
	if (rc < 0)
		vm->nroutes--;
	else
		vm->msi_used[gsi] = 1;
	pthread_mutex_unlock(&vm->irq_lock);
	return rc < 0 ? rc : gsi;
}

int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data)
{
	pthread_mutex_lock(&vm->irq_lock);
	struct kvm_irq_routing_entry *e = find_msi_route(vm, gsi);
	int rc = -ENOENT;
	if (e) {
		e->u.msi.address_lo = (uint32_t)addr;
		e->u.msi.address_hi = (uint32_t)(addr >> 32);
		e->u.msi.data = data;
		rc = push_routes_locked(vm);
	}
	pthread_mutex_unlock(&vm->irq_lock);
	return rc;
}

void vm_msi_route_free(struct vm *vm, int gsi)
{
	pthread_mutex_lock(&vm->irq_lock);
	struct kvm_irq_routing_entry *e = find_msi_route(vm, gsi);
	if (e) {
		*e = vm->routes[--vm->nroutes];
		vm->msi_used[gsi] = 0;
		int rc = push_routes_locked(vm);
		if (rc < 0)
			kvz_warn("KVM_SET_GSI_ROUTING: %s", strerror(-rc));
	}
	pthread_mutex_unlock(&vm->irq_lock);
}

int vm_irqfd(struct vm *vm, int efd, int gsi, bool deassign)
{
	struct kvm_irqfd f = {.fd = (uint32_t)efd, .gsi = (uint32_t)gsi,
			      .flags = deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0};
	return ioctl(vm->vm_fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, unsigned len, bool deassign)
{
	struct kvm_ioeventfd f = {.addr = addr, .len = len, .fd = efd,
				  .flags = deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0};
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &f) < 0 ? -errno : 0;
}

int vm_set_irq_line(struct vm *vm, int gsi, int level)
{
	struct kvm_irq_level l = {.irq = (uint32_t)gsi, .level = (uint32_t)level};
	return ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0 ? -errno : 0;
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_msi m = {.address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
			    .data = data};
	return ioctl(vm->vm_fd, KVM_SIGNAL_MSI, &m) < 0 ? -errno : 0;
}
