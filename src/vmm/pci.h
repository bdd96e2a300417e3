/* PCI bus: configuration mechanism #1 (ports 0xCF8/0xCFC), a host bridge at
 * 00:00.0, and devices with memory BARs placed in the 32-bit MMIO window.
 *
 * Contract between the machine (pci.c, owned by the VMM core) and the
 * virtio-pci transport. A device fills in its struct and registers; the bus
 * assigns BAR addresses (firmware-style, before the guest boots) and routes
 * MMIO exits that land in a BAR to the device's callbacks. */
#ifndef KVZ_VMM_PCI_H
#define KVZ_VMM_PCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCI_MMIO_WINDOW_START 0xD0000000ull   /* 32-bit BARs are placed here */
#define PCI_MMIO_WINDOW_END   0xFEC00000ull   /* IOAPIC above */
#define PCI_MAX_DEVICES 32

struct pci_device;

struct pci_bar {
	uint64_t size;       /* power of two, >= 4096; 0 = BAR unused */
	bool is_64bit;       /* occupies this BAR slot and the next */
	uint64_t addr;       /* assigned guest physical address */
};

struct pci_device_ops {
	/* Access at offset within BAR bar; len is 1, 2, 4 or 8. Called from vCPU
	 * threads, possibly concurrently: devices lock their own state. */
	void (*bar_read)(struct pci_device *dev, int bar, uint64_t offset, void *data, unsigned len);
	void (*bar_write)(struct pci_device *dev, int bar, uint64_t offset, const void *data, unsigned len);
	/* Optional: after the guest wrote config space (e.g. MSI-X enable bit in
	 * the capability, command register). offset/len as written. */
	void (*config_written)(struct pci_device *dev, uint32_t offset, unsigned len);
};

struct pci_device {
	/* Filled by the device before pci_register(): vendor/device/class/
	 * subsystem ids, status capability-list bit, the capability chain
	 * (virtio vendor caps, MSI-X). BAR registers are managed by the bus. */
	uint8_t config[256];
	/* Bits the guest may write in config space (1 = writable), beyond the
	 * command register and BARs which the bus handles itself. */
	uint8_t config_wmask[256];
	struct pci_bar bars[6];
	const struct pci_device_ops *ops;
	void *opaque;
	uint8_t devfn;       /* assigned by the bus: slot << 3 */
	uint8_t irq_line;    /* legacy INTx GSI assigned by the bus */
};

struct pci_bus;

struct pci_bus *pci_bus_create(void);
void pci_bus_destroy(struct pci_bus *bus);

/* Assigns a slot, an INTx line and BAR addresses. Returns 0 or -errno. */
int pci_register(struct pci_bus *bus, struct pci_device *dev);

/* Port I/O on 0xCF8-0xCFF; returns true when the port belongs to the bus. */
bool pci_pio(struct pci_bus *bus, uint16_t port, void *data, unsigned len, bool is_write);

/* MMIO exit: returns true when addr fell in a BAR (and was handled). */
bool pci_mmio(struct pci_bus *bus, uint64_t addr, void *data, unsigned len, bool is_write);

/* system_reset: the host bridge's chipset registers back to power-on. */
void pci_bus_reset_bridge(struct pci_bus *bus);

/* Calls fn for every registered device (not the host bridge), in slot
 * order: the machine builds its interrupt tables (MP table) from this. */
void pci_bus_foreach(struct pci_bus *bus, void (*fn)(void *opaque, const struct pci_device *dev),
		     void *opaque);

/* Snapshot state of the bus: config latch, every function's config space
 * and BAR addresses (the BARs' sizes come from the devices). Load refuses
 * a different device set or BARs outside the window (err says which). */
struct state_buf;
struct state_cursor;
int pci_bus_save(struct pci_bus *bus, struct state_buf *out);
int pci_bus_load(struct pci_bus *bus, struct state_cursor *in, char *err, size_t errlen);

#endif
