#include "cpuid.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>


/* Bits the portable "kvz64" model keeps, per register; everything else the
 * host offers is hidden. Roughly x86-64-v2 minus cmpxchg16b: the PVM
 * backend cannot emulate cmpxchg16b or the xsave family at CPL0, and a
 * guest that sees them uses them. */
struct cpuid_mask {
	uint32_t function, index;
	uint32_t eax, ebx, ecx, edx;
};

#define B(n) (1u << (n))
static const struct cpuid_mask kvz64_masks[] = {
	/* leaf 1 ECX: sse3 ssse3 sse4.1 sse4.2 popcnt (x86-64-v2), and the
	 * LAPIC features KVM itself provides (x2apic, tsc-deadline), hypervisor.
	 * No cx16 (13), xsave (26), osxsave (27), avx (28), fma (12), f16c
	 * (29), vmx (5), monitor (3); nor what v2 lacks and a kernel would
	 * run at CPL0, where the software backend must emulate it: pclmulqdq
	 * (1), movbe (22), aes (25), rdrand (30). */
	{1, 0, ~0u, ~0u,
	 B(0) | B(9) | B(19) | B(20) | B(21) | B(23) | B(24) | B(31),
	 ~0u},
	/* leaf 7: fsgsbase smep erms smap only. */
	{7, 0, ~0u, B(0) | B(7) | B(9) | B(20), 0, 0},
	/* 0x80000001: lahf/sahf, lzcnt, prefetchw; syscall nx pdpe1gb rdtscp lm. */
	{0x80000001, 0, ~0u, ~0u, B(0) | B(5) | B(8), B(11) | B(20) | B(26) | B(27) | B(29)},
};
#undef B

bool cpuid_model_valid(const char *model)
{
	return !strcmp(model, "host") || !strcmp(model, "kvz64");
}

const char *cpuid_model_names(void) { return "host, kvz64"; }

static struct kvm_cpuid2 *get_supported(int kvm_fd, char *err, size_t errlen)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_MAX_ENTRIES * sizeof(c->entries[0]));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->nent = CPUID_MAX_ENTRIES;
	if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		snprintf(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

static void remove_leaf(struct kvm_cpuid2 *c, uint32_t function)
{
	uint32_t out = 0;
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function != function)
			c->entries[out++] = c->entries[i];
	c->nent = out;
}

static void apply_kvz64(struct kvm_cpuid2 *c)
{
	/* The xsave state leaf describes features the model hides. */
	remove_leaf(c, 0xD);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		for (size_t k = 0; k < sizeof(kvz64_masks) / sizeof(kvz64_masks[0]); k++) {
			const struct cpuid_mask *m = &kvz64_masks[k];
			if (e->function != m->function || e->index != m->index)
				continue;
			e->eax &= m->eax;
			e->ebx &= m->ebx;
			e->ecx &= m->ecx;
			e->edx &= m->edx;
		}
		/* leaf 7 subleaves > 0 only carry more extensions. */
		if (e->function == 7 && e->index > 0)
			e->eax = e->ebx = e->ecx = e->edx = 0;
	}
}

static unsigned bits_for(int n)
{
	unsigned b = 0;
	while ((1 << b) < n)
		b++;
	return b;
}

static void set_topology(struct kvm_cpuid2 *c, int ncpus)
{
	/* 0x1F is optional; one topology leaf (0xB) is enough and simpler. */
	remove_leaf(c, 0x1F);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		switch (e->function) {
		case 1:
			e->ecx |= 1u << 31;   /* running under a hypervisor */
			e->ebx = (e->ebx & 0x0000FFFFu) | ((uint32_t)ncpus << 16);
			if (ncpus > 1)
				e->edx |= 1u << 28;   /* HTT: EBX[23:16] is valid */
			break;
		case 4:
			/* cores per package - 1, in EAX[31:26]; one thread per core. */
			e->eax = (e->eax & 0x03FFFFFFu) | ((uint32_t)(ncpus - 1) << 26);
			e->eax &= ~0x03FFC000u;
			break;
		case 0xB:
			/* Level 0: SMT (1 thread per core); level 1: cores. */
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = bits_for(ncpus);
				e->ebx = (uint32_t)ncpus;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		case 0x80000008:
			/* AMD: number of cores - 1 and the APIC id width. */
			e->ecx = (bits_for(ncpus) << 12) | (uint32_t)(ncpus - 1);
			break;
		default:
			break;
		}
	}
}

/* Makes sure the KVM paravirt leaves exist: 0x40000000 with the
 * "KVMKVMKVM" signature, 0x40000001 with kvmclock. */
static void ensure_kvm_leaves(struct kvm_cpuid2 *c)
{
	bool have = false;
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 0x40000000) {
			have = true;
			if (e->eax < 0x40000001)
				e->eax = 0x40000001;
		}
	}
	if (have || c->nent + 2 > CPUID_MAX_ENTRIES)
		return;
	struct kvm_cpuid_entry2 sig = {.function = 0x40000000, .eax = 0x40000001};
	memcpy(&sig.ebx, "KVMK", 4);
	memcpy(&sig.ecx, "VMKV", 4);
	memcpy(&sig.edx, "M\0\0\0", 4);
	/* kvmclock (0 and 3), async PF not offered. */
	struct kvm_cpuid_entry2 feat = {.function = 0x40000001, .eax = (1u << 0) | (1u << 3)};
	c->entries[c->nent++] = sig;
	c->entries[c->nent++] = feat;
}

struct kvm_cpuid2 *cpuid_build(int kvm_fd, const char *model, int ncpus, char *err, size_t errlen)
{
	if (!cpuid_model_valid(model)) {
		snprintf(err, errlen, "unknown --cpu-model '%s' (known: %s)", model, cpuid_model_names());
		return NULL;
	}
	struct kvm_cpuid2 *c = get_supported(kvm_fd, err, errlen);
	if (!c)
		return NULL;
	cpuid_apply_model(c, model, ncpus);
	return c;
}

void cpuid_apply_model(struct kvm_cpuid2 *c, const char *model, int ncpus)
{
	if (!strcmp(model, "kvz64"))
		apply_kvz64(c);
	set_topology(c, ncpus);
	ensure_kvm_leaves(c);
}

void cpuid_set_apic_id(struct kvm_cpuid2 *c, unsigned apic_id)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1)
			e->ebx = (e->ebx & 0x00FFFFFFu) | (apic_id << 24);
		else if (e->function == 0xB)
			e->edx = apic_id;
		else if (e->function == 0x8000001E) {
			e->eax = apic_id;
			e->ebx = apic_id & 0xFF;   /* core id; one thread per core */
		}
	}
}
