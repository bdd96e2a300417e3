/* Host-only stand-ins for the VMM core's PCI bus, interrupt plumbing and
 * I/O thread (pci.h, irq.h, io_thread.h), so device tests drive a virtio
 * function exactly as a guest driver would, without KVM. */
#ifndef KVZ_TESTS_FAKE_VMM_H
#define KVZ_TESTS_FAKE_VMM_H

#include <stdbool.h>
#include <stdint.h>

#include "pci.h"

struct fake_vmm_state {
	struct pci_device *devs[8];
	unsigned ndevs;
	int irq_level[64];          /* last vm_set_irq_line level per GSI */
	unsigned routes;            /* GSIs allocated and not freed */
	unsigned irqfds;            /* irqfds assigned and not deassigned */
	unsigned ioeventfds;        /* ioeventfds assigned and not deassigned */
	uint64_t ioeventfd_addr;    /* address of the last one assigned */
	uint64_t route_addr[64];
	uint32_t route_data[64];
};

/* Inspected by the tests; reset by fake_vmm_reset(). */
extern struct fake_vmm_state fake_vmm;

void fake_vmm_reset(void);
/* Runs the handlers of every ready fd until none is ready. Returns how many
 * handler calls were made. */
unsigned fake_io_run(void);
/* One round serves each fd that is ready when its turn comes, once. */
unsigned fake_io_run_rounds(unsigned rounds);
/* Number of fds watched by the fake I/O thread. */
unsigned fake_io_count(void);

#endif
