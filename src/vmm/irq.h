/* Interrupt and doorbell plumbing on top of KVM, for devices.
 * Contract between the machine (vm.c) and the virtio-pci transport. */
#ifndef KVZ_VMM_IRQ_H
#define KVZ_VMM_IRQ_H

#include <stdbool.h>
#include <stdint.h>

struct vm;

/* Allocates a GSI routed to the MSI message (addr, data) and returns it, or
 * -errno. vm_msi_route_update() re-targets an allocated GSI (the guest
 * rewrote the MSI-X table entry). Routes are pushed with
 * KVM_SET_GSI_ROUTING together with the IOAPIC pins. */
int vm_msi_route_alloc(struct vm *vm, uint64_t addr, uint32_t data);
int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data);
void vm_msi_route_free(struct vm *vm, int gsi);

/* KVM_IRQFD: a write to eventfd efd raises gsi. deassign removes it. */
int vm_irqfd(struct vm *vm, int efd, int gsi, bool deassign);

/* KVM_IOEVENTFD on an MMIO address: a guest write of len bytes at addr
 * signals efd without an exit to user space. len 0 matches any length. */
int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, unsigned len, bool deassign);

/* Level-triggered legacy interrupt line (IOAPIC pin / PIC), for INTx and
 * the UART: KVM_IRQ_LINE. */
int vm_set_irq_line(struct vm *vm, int gsi, int level);

/* Sends one MSI directly (KVM_SIGNAL_MSI), for devices that need no irqfd. */
int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);

#endif
