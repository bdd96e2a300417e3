/* Host-only stand-ins for pci.h, irq.h and io_thread.h (see fake_vmm.h).
 * Single-threaded: the "I/O thread" runs when a test calls fake_io_run(). */
#include "fake_vmm.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "io_thread.h"
#include "irq.h"

/* The tests are single threaded; global state mirrors the one machine. */
struct fake_vmm_state fake_vmm;

struct watch {
	struct io_thread *t;        /* NULL: the machine's I/O thread */
	int fd;
	uint32_t events;
	io_handler_fn fn;
	void *opaque;
};

static struct watch watches[64];
static unsigned nwatches;

void fake_vmm_reset(void)
{
	memset(&fake_vmm, 0, sizeof(fake_vmm));
	nwatches = 0;
}

int pci_register(struct pci_bus *bus, struct pci_device *dev)
{
	(void)bus;
	if (fake_vmm.ndevs == 8)
		return -ENOSPC;
	for (int i = 0; i < 6; i++)
		if (dev->bars[i].size)
			dev->bars[i].addr = PCI_MMIO_WINDOW_START + 0x100000ull * fake_vmm.ndevs;
	dev->devfn = (uint8_t)((fake_vmm.ndevs + 1) << 3);
	dev->irq_line = (uint8_t)(16 + fake_vmm.ndevs);
	fake_vmm.devs[fake_vmm.ndevs++] = dev;
	return 0;
}

int vm_msi_route_alloc(struct vm *vm, uint64_t addr, uint32_t data)
{
	(void)vm;
	if (fake_vmm.routes >= 40)
		return -ENOSPC;
	int gsi = 24 + fake_vmm.routes++;
	fake_vmm.route_addr[gsi] = addr;
	fake_vmm.route_data[gsi] = data;
	return gsi;
}

int vm_msi_route_update(struct vm *vm, int gsi, uint64_t addr, uint32_t data)
{
	(void)vm;
	if (gsi < 0 || gsi >= 64)
		return -EINVAL;
	fake_vmm.route_addr[gsi] = addr;
	fake_vmm.route_data[gsi] = data;
	return 0;
}

void vm_msi_route_free(struct vm *vm, int gsi)
{
	(void)vm;
	(void)gsi;
	fake_vmm.routes--;
}

int vm_irqfd(struct vm *vm, int efd, int gsi, bool deassign)
{
	(void)vm;
	(void)efd;
	(void)gsi;
	if (deassign)
		fake_vmm.irqfds--;
	else
		fake_vmm.irqfds++;
	return 0;
}

int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, unsigned len, bool deassign)
{
	(void)vm;
	(void)efd;
	(void)len;
	if (deassign) {
		fake_vmm.ioeventfds--;
	} else {
		fake_vmm.ioeventfds++;
		fake_vmm.ioeventfd_addr = addr;
	}
	return 0;
}

int vm_set_irq_line(struct vm *vm, int gsi, int level)
{
	(void)vm;
	if (gsi < 0 || gsi >= 64)
		return -EINVAL;
	fake_vmm.irq_level[gsi] = level;
	return 0;
}

int vm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	(void)vm;
	(void)addr;
	(void)data;
	return 0;
}

/* Devices' own I/O threads (virtio-blk queues): their watches join the
 * one list, so fake_io_run() serves them on the test's thread too. */
struct io_thread {
	int unused;
};

struct io_thread *io_thread_create(void)
{
	return calloc(1, sizeof(struct io_thread));
}

int io_thread_start(struct io_thread *t)
{
	(void)t;
	return 0;
}

void io_thread_stop(struct io_thread *t)
{
	(void)t;
}

void io_thread_destroy(struct io_thread *t)
{
	for (unsigned i = 0; i < nwatches;)
		if (watches[i].t == t && t)
			watches[i] = watches[--nwatches];
		else
			i++;
	free(t);
}

int io_thread_add(struct io_thread *t, int fd, uint32_t events, io_handler_fn fn, void *opaque)
{
	if (nwatches == 64)
		return -ENOSPC;
	watches[nwatches++] = (struct watch){ t, fd, events, fn, opaque };
	return 0;
}

int io_thread_mod(struct io_thread *t, int fd, uint32_t events)
{
	for (unsigned i = 0; i < nwatches; i++)
		if (watches[i].t == t && watches[i].fd == fd) {
			watches[i].events = events;
			return 0;
		}
	return -ENOENT;
}

int io_thread_del(struct io_thread *t, int fd)
{
	for (unsigned i = 0; i < nwatches; i++)
		if (watches[i].t == t && watches[i].fd == fd) {
			watches[i] = watches[--nwatches];
			return 0;
		}
	return -ENOENT;
}

unsigned fake_io_count(void)
{
	return nwatches;
}

unsigned fake_io_run(void)
{
	return fake_io_run_rounds(1000);
}

unsigned fake_io_run_rounds(unsigned rounds)
{
	unsigned calls = 0;

	for (unsigned round = 0; round < rounds; round++) {
		bool any = false;
		for (unsigned i = 0; i < nwatches; i++) {
			if (!(watches[i].events & EPOLLIN))
				continue;
			struct pollfd p = { .fd = watches[i].fd, .events = POLLIN };
			if (poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
				watches[i].fn(watches[i].opaque, watches[i].fd, EPOLLIN);
				calls++;
				any = true;
			}
		}
		if (!any)
			break;
	}
	return calls;
}
