/* PCI configuration mechanism #1 with a host bridge at 00:00.0; devices get
 * their slot, INTx line and BAR addresses here, firmware-style. */
#include "pci.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "state/state_buf.h"

#define PCI_CONFIG_ADDR 0xCF8
#define PCI_CONFIG_DATA 0xCFC
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_BAR0 0x10
#define PCI_INTERRUPT_LINE 0x3C
#define PCI_INTERRUPT_PIN 0x3D
/* PCI INTx lines use IOAPIC pins 16-23: they are level triggered and must
 * not share with ISA interrupts on the PIC. */
#define PCI_IRQ_BASE 16
#define PCI_IRQ_COUNT 8
/* i440FX PAM registers (0x59-0x5F): which of 0xC0000-0xFFFFF is ROM or
 * RAM. Here always RAM (firmware.h says why); the bytes only read back. */
#define PCI_PAM0 0x59
#define PCI_PAM_COUNT 7

struct pci_bus {
	/* Guards config_addr, every config space and BAR address: vCPU threads
	 * access config space concurrently. */
	pthread_mutex_t lock;
	uint32_t config_addr;
	uint64_t next_mmio;
	struct pci_device bridge;
	struct pci_device *slots[PCI_MAX_DEVICES];
};

static void put16(uint8_t *c, unsigned off, uint16_t v) { memcpy(c + off, &v, 2); }
static void put32(uint8_t *c, unsigned off, uint32_t v) { memcpy(c + off, &v, 4); }
static uint32_t get32(const uint8_t *c, unsigned off)
{
	uint32_t v;
	memcpy(&v, c + off, 4);
	return v;
}

struct pci_bus *pci_bus_create(void)
{
	struct pci_bus *bus = calloc(1, sizeof(*bus));
	if (!bus)
		return NULL;
	pthread_mutex_init(&bus->lock, NULL);
	bus->next_mmio = PCI_MMIO_WINDOW_START;
	uint8_t *c = bus->bridge.config;
	put16(c, 0x00, 0x8086);   /* Intel 440FX host bridge: every OS knows it */
	put16(c, 0x02, 0x1237);
	c[0x0B] = 0x06;           /* class: bridge, subclass host */
	/* QEMU's subsystem ids: SeaBIOS takes them as "running on QEMU" and
	 * only then reads fw_cfg and shadows itself through the PAM bytes. */
	put16(c, 0x2C, 0x1af4);
	put16(c, 0x2E, 0x1100);
	for (unsigned i = 0; i < PCI_PAM_COUNT; i++)
		bus->bridge.config_wmask[PCI_PAM0 + i] = 0xFF;
	bus->slots[0] = &bus->bridge;
	return bus;
}

void pci_bus_destroy(struct pci_bus *bus)
{
	if (!bus)
		return;
	pthread_mutex_destroy(&bus->lock);
	free(bus);
}

static uint32_t bar_flags(const struct pci_bar *b)
{
	return b->is_64bit ? 0x4 : 0x0;   /* memory BAR, 32- or 64-bit type */
}

/* Writes BAR registers from the assigned addresses. */
static void bar_sync_config(struct pci_device *dev, int i)
{
	struct pci_bar *b = &dev->bars[i];
	put32(dev->config, PCI_BAR0 + 4 * i, (uint32_t)b->addr | bar_flags(b));
	if (b->is_64bit && i < 5)
		put32(dev->config, PCI_BAR0 + 4 * (i + 1), (uint32_t)(b->addr >> 32));
}

int pci_register(struct pci_bus *bus, struct pci_device *dev)
{
	pthread_mutex_lock(&bus->lock);
	int slot = -1;
	for (int i = 1; i < PCI_MAX_DEVICES; i++)
		if (!bus->slots[i]) {
			slot = i;
			break;
		}
	if (slot < 0) {
		pthread_mutex_unlock(&bus->lock);
		return -ENOSPC;
	}
	uint64_t next = bus->next_mmio;
	for (int i = 0; i < 6; i++) {
		struct pci_bar *b = &dev->bars[i];
		if (!b->size)
			continue;
		if (b->size < 4096 || (b->size & (b->size - 1)) || (b->is_64bit && i == 5)) {
			pthread_mutex_unlock(&bus->lock);
			return -EINVAL;
		}
		uint64_t addr = (next + b->size - 1) & ~(b->size - 1);
		if (addr + b->size > PCI_MMIO_WINDOW_END) {
			pthread_mutex_unlock(&bus->lock);
			return -ENOSPC;
		}
		b->addr = addr;
		next = addr + b->size;
		if (b->is_64bit)
			i++;
	}
	bus->next_mmio = next;
	dev->devfn = (uint8_t)(slot << 3);
	dev->irq_line = (uint8_t)(PCI_IRQ_BASE + (slot - 1) % PCI_IRQ_COUNT);
	dev->config[PCI_INTERRUPT_LINE] = dev->irq_line;
	dev->config[PCI_INTERRUPT_PIN] = 1;   /* INTA# */
	for (int i = 0; i < 6; i++)
		if (dev->bars[i].size) {
			bar_sync_config(dev, i);
			if (dev->bars[i].is_64bit)
				i++;
		}
	bus->slots[slot] = dev;
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

void pci_bus_reset_bridge(struct pci_bus *bus)
{
	pthread_mutex_lock(&bus->lock);
	for (unsigned i = 0; i < PCI_PAM_COUNT; i++)   /* a loop: gcc -fsanitize saw memset out of bounds */
		bus->bridge.config[PCI_PAM0 + i] = 0;
	pthread_mutex_unlock(&bus->lock);
}

void pci_bus_foreach(struct pci_bus *bus, void (*fn)(void *opaque, const struct pci_device *dev),
		     void *opaque)
{
	for (int i = 1; i < PCI_MAX_DEVICES; i++)
		if (bus->slots[i])
			fn(opaque, bus->slots[i]);
}

/* Index of the BAR whose register (or upper half) covers config dword off,
 * with *upper set for the high dword of a 64-bit BAR; -1 if none. */
static int bar_at(const struct pci_device *dev, unsigned off, bool *upper)
{
	if (off < PCI_BAR0 || off >= PCI_BAR0 + 24)
		return -1;
	int idx = (int)(off - PCI_BAR0) / 4;
	*upper = false;
	if (idx > 0 && dev->bars[idx - 1].size && dev->bars[idx - 1].is_64bit) {
		*upper = true;
		return idx - 1;
	}
	return dev->bars[idx].size ? idx : -1;
}

static void bar_write(struct pci_device *dev, unsigned dword_off, uint32_t val)
{
	bool upper;
	int i = bar_at(dev, dword_off, &upper);
	if (i < 0)
		return;   /* unused BAR slots read as zero: not implemented */
	struct pci_bar *b = &dev->bars[i];
	uint64_t mask = ~(b->size - 1);
	if (upper) {
		uint32_t hi = val & (uint32_t)(mask >> 32);
		put32(dev->config, dword_off, hi);
		b->addr = (b->addr & 0xFFFFFFFFull) | ((uint64_t)hi << 32);
		return;
	}
	uint32_t lo = (val & (uint32_t)mask & ~0xFu) | bar_flags(b);
	put32(dev->config, dword_off, lo);
	b->addr = (b->addr & ~0xFFFFFFFFull) | (lo & ~0xFu);
}

/* Merges a guest write of len bytes at off into config space, honouring
 * which bits are writable. */
static void config_write(struct pci_device *dev, unsigned off, uint32_t val, unsigned len)
{
	unsigned dw = off & ~3u;
	if (dw >= PCI_BAR0 && dw < PCI_BAR0 + 24) {
		uint32_t cur = get32(dev->config, dw);
		unsigned shift = (off & 3) * 8;
		uint32_t m = len == 4 ? 0xFFFFFFFFu : ((1u << (len * 8)) - 1) << shift;
		bar_write(dev, dw, (cur & ~m) | ((val << shift) & m));
		return;
	}
	for (unsigned k = 0; k < len && off + k < 256; k++) {
		unsigned o = off + k;
		uint8_t byte = (uint8_t)(val >> (8 * k));
		uint8_t wmask = dev->config_wmask[o];
		if (o == PCI_COMMAND)
			wmask = 0x07;   /* I/O, memory, bus master */
		else if (o == PCI_COMMAND + 1)
			wmask = 0x04;   /* INTx disable */
		else if (o == PCI_INTERRUPT_LINE)
			wmask = 0xFF;
		dev->config[o] = (uint8_t)((dev->config[o] & ~wmask) | (byte & wmask));
	}
}

static bool config_access(struct pci_bus *bus, uint16_t port, void *data, unsigned len, bool is_write)
{
	uint32_t addr = bus->config_addr;
	unsigned off = (addr & 0xFC) + (port - PCI_CONFIG_DATA);
	unsigned slot = (addr >> 11) & 0x1F;
	unsigned fn = (addr >> 8) & 0x7;
	unsigned busno = (addr >> 16) & 0xFF;
	struct pci_device *dev = NULL;
	if ((addr & 0x80000000u) && busno == 0 && fn == 0 && off + len <= 256)
		dev = bus->slots[slot];
	if (!is_write) {
		if (!dev)
			memset(data, 0xFF, len);
		else
			memcpy(data, dev->config + off, len);
		return false;
	}
	if (!dev)
		return false;
	uint32_t val = 0;
	memcpy(&val, data, len);
	config_write(dev, off, val, len);
	return dev != &bus->bridge && dev->ops && dev->ops->config_written;
}

bool pci_pio(struct pci_bus *bus, uint16_t port, void *data, unsigned len, bool is_write)
{
	if (port < PCI_CONFIG_ADDR || port > PCI_CONFIG_DATA + 3)
		return false;
	pthread_mutex_lock(&bus->lock);
	if (port < PCI_CONFIG_DATA) {
		if (port == PCI_CONFIG_ADDR && len == 4) {
			if (is_write)
				memcpy(&bus->config_addr, data, 4);
			else
				memcpy(data, &bus->config_addr, 4);
		} else if (!is_write) {
			memset(data, 0xFF, len);
		}
		pthread_mutex_unlock(&bus->lock);
		return true;
	}
	uint32_t addr = bus->config_addr;
	bool notify = config_access(bus, port, data, len, is_write);
	struct pci_device *dev = bus->slots[(addr >> 11) & 0x1F];
	pthread_mutex_unlock(&bus->lock);
	/* Outside the lock: the device may take its own locks and call back. */
	if (notify)
		dev->ops->config_written(dev, (addr & 0xFC) + (port - PCI_CONFIG_DATA), len);
	return true;
}

bool pci_mmio(struct pci_bus *bus, uint64_t addr, void *data, unsigned len, bool is_write)
{
	struct pci_device *hit = NULL;
	int hit_bar = -1;
	uint64_t off = 0;
	pthread_mutex_lock(&bus->lock);
	for (int s = 1; s < PCI_MAX_DEVICES && !hit; s++) {
		struct pci_device *dev = bus->slots[s];
		if (!dev || !(dev->config[PCI_COMMAND] & PCI_COMMAND_MEMORY))
			continue;
		for (int i = 0; i < 6; i++) {
			struct pci_bar *b = &dev->bars[i];
			if (b->size && addr >= b->addr && addr - b->addr < b->size) {
				hit = dev;
				hit_bar = i;
				off = addr - b->addr;
				break;
			}
		}
	}
	pthread_mutex_unlock(&bus->lock);
	if (!hit || !hit->ops)
		return false;
	if (is_write && hit->ops->bar_write)
		hit->ops->bar_write(hit, hit_bar, off, data, len);
	else if (!is_write && hit->ops->bar_read)
		hit->ops->bar_read(hit, hit_bar, off, data, len);
	else if (!is_write)
		memset(data, 0xFF, len);
	return true;
}

/* ---- state (state/state_registry.h) ---- */

/* The config address latch, then per slot: present flag, the 256 config
 * bytes and each BAR's address. Config bytes are the guest's view (BAR
 * registers, command, MSI-X control...): restoring them restores the
 * decoding; devices re-derive their own state from them on load. */
int pci_bus_save(struct pci_bus *bus, struct state_buf *out)
{
	pthread_mutex_lock(&bus->lock);
	state_put_u32(out, bus->config_addr);
	state_put_u32(out, PCI_MAX_DEVICES);
	for (unsigned s = 0; s < PCI_MAX_DEVICES; s++) {
		struct pci_device *d = bus->slots[s];
		state_put_u8(out, d != NULL);
		if (!d)
			continue;
		state_put_bytes(out, d->config, sizeof(d->config));
		for (int i = 0; i < 6; i++)
			state_put_u64(out, d->bars[i].addr);
	}
	pthread_mutex_unlock(&bus->lock);
	return 0;
}

int pci_bus_load(struct pci_bus *bus, struct state_cursor *in, char *err, size_t errlen)
{
	uint32_t addr = state_get_u32(in);
	if (state_get_u32(in) != PCI_MAX_DEVICES) {
		snprintf(err, errlen, "slot count differs");
		return -1;
	}
	pthread_mutex_lock(&bus->lock);
	int rc = 0;
	for (unsigned s = 0; s < PCI_MAX_DEVICES && rc == 0; s++) {
		struct pci_device *d = bus->slots[s];
		bool present = state_get_bool(in);
		if (present != (d != NULL)) {
			snprintf(err, errlen, "slot %u is %s in the file but %s here", s,
				 present ? "used" : "empty", d ? "used" : "empty");
			rc = -1;
			break;
		}
		if (!d)
			continue;
		uint8_t cfg[256];
		state_get_bytes(in, cfg, sizeof(cfg));
		if (memcmp(cfg, d->config, 4) != 0) {
			snprintf(err, errlen, "slot %u holds another device (vendor/device id)", s);
			rc = -1;
			break;
		}
		for (int i = 0; i < 6; i++) {
			uint64_t a = state_get_u64(in);
			if (!d->bars[i].size)
				continue;
			/* Anywhere the guest could have put it (mid-sizing too),
			 * but aligned as the BAR register forces. */
			if (a % d->bars[i].size || (!d->bars[i].is_64bit && a >> 32)) {
				snprintf(err, errlen, "slot %u BAR %d at 0x%llx is not a possible address", s, i,
					 (unsigned long long)a);
				rc = -1;
			}
			d->bars[i].addr = a;
		}
		memcpy(d->config, cfg, sizeof(cfg));
	}
	if (rc == 0)
		bus->config_addr = addr;
	pthread_mutex_unlock(&bus->lock);
	if (rc == 0 && in->bad) {
		snprintf(err, errlen, "truncated");
		rc = -1;
	}
	return rc;
}
