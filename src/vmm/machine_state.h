/* The machine's own entries in the state registry (state/state_registry.h),
 * in this order: "machine" (memory size, vCPU count, CPU model and the
 * CPUID the guest saw), "kvmclock", "irqchip" (PIC master, slave, IOAPIC),
 * "pit", one "vcpu" per vCPU, "serial", "i8042", "rtc", "acpi-pm", "pci".
 * The virtio devices register theirs after these (virtio_devices.c). */
#ifndef KVZ_VMM_MACHINE_STATE_H
#define KVZ_VMM_MACHINE_STATE_H

#include <stddef.h>

struct vm;

int machine_state_register(struct vm *vm, char *err, size_t errlen);

#endif
