/* How devices join the machine: the vm passes each device this context at
 * creation. Devices never reach into struct vm directly. */
#ifndef KVZ_VMM_DEVICE_HOOKS_H
#define KVZ_VMM_DEVICE_HOOKS_H

struct vm;
struct guest_mem;
struct pci_bus;
struct io_thread;
struct state_registry;

struct vmm_context {
	struct vm *vm;             /* for irq.h */
	struct guest_mem *mem;     /* for DMA */
	struct pci_bus *pci;       /* to register PCI functions */
	struct io_thread *io;      /* to serve queues off the vCPU threads */
	struct state_registry *state; /* where devices register their state; NULL in unit tests */
};

#endif
