#include "machine_state.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "acpi_pm.h"
#include "i8042.h"
#include "pci.h"
#include "rtc.h"
#include "serial.h"
#include "state/state_registry.h"
#include "vcpu_snapshot.h"
#include "vm_internal.h"

#define MAX_CPUID_ENTRIES 1024

static int truncated(struct state_cursor *in, char *err, size_t errlen)
{
	if (state_cursor_done(in))
		return 0;
	snprintf(err, errlen, "%s", in->bad ? "truncated or malformed" : "trailing bytes");
	return -1;
}

/* ---- machine: configuration and CPUID ---- */

static int machine_save(void *o, struct state_buf *out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct vm *vm = o;
	state_put_u64(out, vm->mem.size);
	state_put_u32(out, (uint32_t)vm->ncpus);
	uint32_t mlen = (uint32_t)strlen(vm->cfg.cpu_model);
	state_put_u32(out, mlen);
	state_put_bytes(out, vm->cfg.cpu_model, mlen);
	state_put_u32(out, vm->cpuid->nent);
	for (uint32_t i = 0; i < vm->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &vm->cpuid->entries[i];
		uint32_t f[7] = {e->function, e->index, e->flags, e->eax, e->ebx, e->ecx, e->edx};
		for (int k = 0; k < 7; k++)
			state_put_u32(out, f[k]);
	}
	return 0;
}

static const struct kvm_cpuid_entry2 *find_leaf(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

/* Feature registers: every bit the guest saw must be one this KVM offers
 * for the same CPU model, or the guest may use an instruction that faults. */
static int cpuid_compatible(const struct kvm_cpuid2 *saved, const struct kvm_cpuid2 *here,
			    char *err, size_t errlen)
{
	static const struct { uint32_t fn, idx; int reg; const char *name; } feat[] = {
		{1, 0, 2, "1.ecx"}, {1, 0, 3, "1.edx"}, {7, 0, 1, "7.0.ebx"}, {7, 0, 2, "7.0.ecx"},
		{7, 0, 3, "7.0.edx"}, {0xd, 1, 0, "0xd.1.eax"}, {0x80000001, 0, 2, "0x80000001.ecx"},
		{0x80000001, 0, 3, "0x80000001.edx"}, {0x40000001, 0, 0, "0x40000001.eax"},
	};
	for (size_t i = 0; i < sizeof(feat) / sizeof(feat[0]); i++) {
		const struct kvm_cpuid_entry2 *s = find_leaf(saved, feat[i].fn, feat[i].idx);
		if (!s)
			continue;
		const struct kvm_cpuid_entry2 *h = find_leaf(here, feat[i].fn, feat[i].idx);
		uint32_t sv[4] = {s->eax, s->ebx, s->ecx, s->edx};
		uint32_t hv[4] = {0};
		if (h) {
			hv[0] = h->eax; hv[1] = h->ebx; hv[2] = h->ecx; hv[3] = h->edx;
		}
		uint32_t missing = sv[feat[i].reg] & ~hv[feat[i].reg];
		if (missing) {
			snprintf(err, errlen, "this host's KVM lacks CPU features the guest saw: CPUID %s bits 0x%08x",
				 feat[i].name, missing);
			return -1;
		}
	}
	return 0;
}

static int machine_load(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct vm *vm = o;
	uint64_t mem = state_get_u64(in);
	uint32_t ncpus = state_get_u32(in);
	uint32_t mlen = state_get_u32(in);
	char model[64] = "";
	if (mlen >= sizeof(model)) {
		snprintf(err, errlen, "CPU model name too long");
		return -1;
	}
	state_get_bytes(in, model, mlen);
	uint32_t nent = state_get_u32(in);
	if (in->bad || nent > MAX_CPUID_ENTRIES) {
		snprintf(err, errlen, "truncated or malformed");
		return -1;
	}
	if (mem != vm->mem.size) {
		snprintf(err, errlen, "the saved machine has --memory %lluM, this one %lluM",
			 (unsigned long long)(mem >> 20), (unsigned long long)(vm->mem.size >> 20));
		return -1;
	}
	if (ncpus != (uint32_t)vm->ncpus) {
		snprintf(err, errlen, "the saved machine has --cpus %u, this one %d", ncpus, vm->ncpus);
		return -1;
	}
	if (strcmp(model, vm->cfg.cpu_model)) {
		snprintf(err, errlen, "the saved machine has --cpu-model %s, this one %s", model,
			 vm->cfg.cpu_model);
		return -1;
	}
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + (nent ? nent : 1) * sizeof(c->entries[0]));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->nent = nent;
	for (uint32_t i = 0; i < nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		e->function = state_get_u32(in);
		e->index = state_get_u32(in);
		e->flags = state_get_u32(in);
		e->eax = state_get_u32(in);
		e->ebx = state_get_u32(in);
		e->ecx = state_get_u32(in);
		e->edx = state_get_u32(in);
	}
	int rc = truncated(in, err, errlen);
	if (rc == 0)
		rc = cpuid_compatible(c, vm->cpuid, err, errlen);
	/* The guest keeps the CPUID it booted with, not this host's. */
	for (int i = 0; rc == 0 && i < vm->ncpus; i++)
		rc = vcpu_set_cpuid(&vm->vcpus[i], c, err, errlen);
	free(c);
	return rc;
}

static const struct state_ops machine_ops = {.save = machine_save, .load = machine_load};

/* ---- blobs of KVM's VM-wide structures ---- */

static int get_blob(struct state_cursor *in, void *p, uint32_t len, char *err, size_t errlen)
{
	if (state_get_u32(in) != len) {
		snprintf(err, errlen, "size differs from this KVM's structure");
		return -1;
	}
	state_get_bytes(in, p, len);
	if (in->bad) {
		snprintf(err, errlen, "truncated");
		return -1;
	}
	return 0;
}

static void put_blob(struct state_buf *b, const void *p, uint32_t len)
{
	state_put_u32(b, len);
	state_put_bytes(b, p, len);
}

static int clock_save(void *o, struct state_buf *out, char *err, size_t errlen)
{
	struct vm *vm = o;
	struct kvm_clock_data c;
	memset(&c, 0, sizeof(c));
	if (ioctl(vm->vm_fd, KVM_GET_CLOCK, &c) < 0) {
		snprintf(err, errlen, "KVM_GET_CLOCK: %s", strerror(errno));
		return -1;
	}
	state_put_u64(out, c.clock);
	return 0;
}

/* kvmclock continues from the saved value: the guest sees no time pass
 * while it was saved (as QEMU does), and never sees it go backwards. */
static int clock_load(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct vm *vm = o;
	struct kvm_clock_data c;
	memset(&c, 0, sizeof(c));
	c.clock = state_get_u64(in);
	if (truncated(in, err, errlen) < 0)
		return -1;
	if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0) {
		snprintf(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static const struct state_ops clock_ops = {.save = clock_save, .load = clock_load};

static int irqchip_save(void *o, struct state_buf *out, char *err, size_t errlen)
{
	struct vm *vm = o;
	for (uint32_t id = 0; id < 3; id++) {
		struct kvm_irqchip c;
		memset(&c, 0, sizeof(c));
		c.chip_id = id;
		if (ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &c) < 0) {
			snprintf(err, errlen, "KVM_GET_IRQCHIP %u: %s", id, strerror(errno));
			return -1;
		}
		put_blob(out, &c, sizeof(c));
	}
	return 0;
}

static int irqchip_load(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct vm *vm = o;
	for (uint32_t id = 0; id < 3; id++) {
		struct kvm_irqchip c;
		if (get_blob(in, &c, sizeof(c), err, errlen) < 0)
			return -1;
		if (c.chip_id != id) {
			snprintf(err, errlen, "chip %u where %u was expected", c.chip_id, id);
			return -1;
		}
		if (ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &c) < 0) {
			snprintf(err, errlen, "KVM_SET_IRQCHIP %u: %s", id, strerror(errno));
			return -1;
		}
	}
	return truncated(in, err, errlen);
}

static const struct state_ops irqchip_ops = {.save = irqchip_save, .load = irqchip_load};

static int pit_save(void *o, struct state_buf *out, char *err, size_t errlen)
{
	struct vm *vm = o;
	struct kvm_pit_state2 p;
	memset(&p, 0, sizeof(p));
	if (ioctl(vm->vm_fd, KVM_GET_PIT2, &p) < 0) {
		snprintf(err, errlen, "KVM_GET_PIT2: %s", strerror(errno));
		return -1;
	}
	put_blob(out, &p, sizeof(p));
	return 0;
}

static int pit_load(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct vm *vm = o;
	struct kvm_pit_state2 p;
	if (get_blob(in, &p, sizeof(p), err, errlen) < 0 || truncated(in, err, errlen) < 0)
		return -1;
	if (ioctl(vm->vm_fd, KVM_SET_PIT2, &p) < 0) {
		snprintf(err, errlen, "KVM_SET_PIT2: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static const struct state_ops pit_ops = {.save = pit_save, .load = pit_load};

/* ---- vCPUs ---- */

static int vcpu_entry_save(void *o, struct state_buf *out, char *err, size_t errlen)
{
	struct vcpu *v = o;
	return vcpu_snapshot_save(v, v->vm->kvm_fd, v->vm->msr_list, v->vm->nmsr_list, out, err, errlen);
}

static int vcpu_entry_load(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct vcpu *v = o;
	if (vcpu_snapshot_load(v, v->vm->kvm_fd, in, err, errlen) < 0)
		return -1;
	return truncated(in, err, errlen);
}

static const struct state_ops vcpu_ops = {.save = vcpu_entry_save, .load = vcpu_entry_load};

/* ---- legacy devices: their *_state structs, field by field ---- */

static int serial_save_entry(void *o, struct state_buf *out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct serial_state s;
	serial_get_state(o, &s);
	uint8_t regs[7] = {s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm, s.fcr};
	state_put_bytes(out, regs, sizeof(regs));
	state_put_u8(out, s.thre_pending);
	state_put_u8(out, s.irq_level);
	state_put_u16(out, s.rx_head);
	state_put_u16(out, s.rx_len);
	state_put_bytes(out, s.rx, sizeof(s.rx));
	return 0;
}

static int serial_load_entry(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct serial_state s;
	uint8_t regs[7];
	state_get_bytes(in, regs, sizeof(regs));
	s.ier = regs[0]; s.lcr = regs[1]; s.mcr = regs[2]; s.scr = regs[3];
	s.dll = regs[4]; s.dlm = regs[5]; s.fcr = regs[6];
	s.thre_pending = state_get_bool(in);
	s.irq_level = state_get_bool(in);
	s.rx_head = state_get_u16(in);
	s.rx_len = state_get_u16(in);
	state_get_bytes(in, s.rx, sizeof(s.rx));
	if (truncated(in, err, errlen) < 0)
		return -1;
	if (s.rx_head >= SERIAL_RX_SIZE || s.rx_len > SERIAL_RX_SIZE) {
		snprintf(err, errlen, "receive FIFO position %u/%u out of range", s.rx_head, s.rx_len);
		return -1;
	}
	serial_set_state(o, &s);
	return 0;
}

static void serial_reset_entry(void *o) { serial_reset(o); }

static const struct state_ops serial_ops = {
	.reset = serial_reset_entry, .save = serial_save_entry, .load = serial_load_entry,
};

static int i8042_save_entry(void *o, struct state_buf *out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct i8042_state s;
	i8042_get_state(o, &s);
	state_put_u8(out, s.ctr);
	state_put_u8(out, s.out);
	state_put_u8(out, s.out_full);
	state_put_u8(out, s.out_aux);
	state_put_u8(out, s.pending_cmd);
	state_put_u8(out, s.kq_len);
	state_put_bytes(out, s.kq, s.kq_len);
	state_put_u8(out, s.kbd_cmd);
	state_put_u8(out, s.scan_set);
	return 0;
}

static int i8042_load_entry(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct i8042_state s;
	memset(&s, 0, sizeof(s));
	s.ctr = state_get_u8(in);
	s.out = state_get_u8(in);
	s.out_full = state_get_bool(in);
	s.out_aux = state_get_bool(in);
	s.pending_cmd = state_get_u8(in);
	s.kq_len = state_get_u8(in);
	if (s.kq_len > I8042_KBD_QUEUE) {
		snprintf(err, errlen, "keyboard queue of %u bytes (at most %d)", s.kq_len,
			 I8042_KBD_QUEUE);
		return -1;
	}
	state_get_bytes(in, s.kq, s.kq_len);
	s.kbd_cmd = state_get_u8(in);
	s.scan_set = state_get_u8(in);
	if (truncated(in, err, errlen) < 0)
		return -1;
	if (s.scan_set < 1 || s.scan_set > 3) {
		snprintf(err, errlen, "keyboard scan code set %u", s.scan_set);
		return -1;
	}
	i8042_set_state(o, &s);
	return 0;
}

static void i8042_reset_entry(void *o) { i8042_reset(o); }

static const struct state_ops i8042_ops = {
	.reset = i8042_reset_entry, .save = i8042_save_entry, .load = i8042_load_entry,
};

static int rtc_save_entry(void *o, struct state_buf *out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct rtc_state s;
	rtc_get_state(o, &s);
	state_put_u8(out, s.index);
	state_put_bytes(out, s.ram, sizeof(s.ram));
	return 0;
}

static int rtc_load_entry(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct rtc_state s;
	s.index = state_get_u8(in);
	state_get_bytes(in, s.ram, sizeof(s.ram));
	if (truncated(in, err, errlen) < 0)
		return -1;
	s.index &= 0x7F;   /* the index register is 7 bits wide */
	rtc_set_state(o, &s);
	return 0;
}

static void rtc_reset_entry(void *o) { rtc_reset(o); }

static const struct state_ops rtc_ops = {
	.reset = rtc_reset_entry, .save = rtc_save_entry, .load = rtc_load_entry,
};

static int pm_save_entry(void *o, struct state_buf *out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	struct acpi_pm_state s;
	acpi_pm_get_state(o, &s);
	state_put_u16(out, s.pm1_sts);
	state_put_u16(out, s.pm1_en);
	state_put_u16(out, s.pm1_cnt);
	state_put_u8(out, s.reset_ctl);
	return 0;
}

static int pm_load_entry(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	struct acpi_pm_state s;
	s.pm1_sts = state_get_u16(in);
	s.pm1_en = state_get_u16(in);
	s.pm1_cnt = state_get_u16(in);
	s.reset_ctl = state_get_u8(in);
	if (truncated(in, err, errlen) < 0)
		return -1;
	acpi_pm_set_state(o, &s);   /* masks to the implemented bits */
	return 0;
}

static void pm_reset_entry(void *o) { acpi_pm_reset(o); }

static const struct state_ops pm_ops = {
	.reset = pm_reset_entry, .save = pm_save_entry, .load = pm_load_entry,
};

static int pci_save_entry(void *o, struct state_buf *out, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	return pci_bus_save(o, out);
}

static int pci_load_entry(void *o, struct state_cursor *in, uint32_t version, char *err, size_t errlen)
{
	(void)version;
	if (pci_bus_load(o, in, err, errlen) < 0)
		return -1;
	return truncated(in, err, errlen);
}

static const struct state_ops pci_ops = {.save = pci_save_entry, .load = pci_load_entry};

int machine_state_register(struct vm *vm, char *err, size_t errlen)
{
	vm->msr_list = vcpu_snapshot_msr_list(vm->kvm_fd, &vm->nmsr_list, err, errlen);
	if (!vm->msr_list)
		return -1;
	struct state_registry *r = vm->registry;
	int rc = state_registry_add(r, "machine", 1, &machine_ops, vm);
	if (rc == 0)
		rc = state_registry_add(r, "kvmclock", 1, &clock_ops, vm);
	if (rc == 0)
		rc = state_registry_add(r, "irqchip", 1, &irqchip_ops, vm);
	if (rc == 0)
		rc = state_registry_add(r, "pit", 1, &pit_ops, vm);
	for (int i = 0; rc == 0 && i < vm->ncpus; i++)
		rc = state_registry_add(r, "vcpu", VCPU_SNAPSHOT_VERSION, &vcpu_ops, &vm->vcpus[i]);
	if (rc == 0)
		rc = state_registry_add(r, "serial", 1, &serial_ops, vm->serial);
	if (rc == 0)
		rc = state_registry_add(r, "i8042", 2, &i8042_ops, vm->i8042);
	if (rc == 0)
		rc = state_registry_add(r, "rtc", 1, &rtc_ops, vm->rtc);
	if (rc == 0)
		rc = state_registry_add(r, "acpi-pm", 1, &pm_ops, vm->acpi_pm);
	if (rc == 0)
		rc = state_registry_add(r, "pci", 1, &pci_ops, vm->pci);
	if (rc < 0) {
		snprintf(err, errlen, "state registry: %s", strerror(-rc));
		return -1;
	}
	return 0;
}
