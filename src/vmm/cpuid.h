/* CPUID for the guest: what KVM supports, masked down to a CPU model. */
#ifndef KVZ_VMM_CPUID_H
#define KVZ_VMM_CPUID_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/kvm.h>

/* Known models: "host" (everything KVM offers) and "kvz64" (portable,
 * x86-64-v2-like: no cmpxchg16b, no xsave/AVX family, which the software
 * KVM backend cannot emulate). */
bool cpuid_model_valid(const char *model);
const char *cpuid_model_names(void);

/* Room cpuid_build allocates: what KVM returns plus the leaves we add. */
#define CPUID_MAX_ENTRIES 256

/* KVM_GET_SUPPORTED_CPUID masked by model, topology for ncpus vCPUs.
 * Returns a malloc'd table or NULL with err set. */
struct kvm_cpuid2 *cpuid_build(int kvm_fd, const char *model, int ncpus, char *err, size_t errlen);

/* The masking and topology part of cpuid_build, on a table that has room
 * for CPUID_MAX_ENTRIES entries (separate so that it can be unit-tested). */
void cpuid_apply_model(struct kvm_cpuid2 *c, const char *model, int ncpus);

/* Writes apic_id into a copy's per-vCPU fields (leaf 1, 0xB, 0x1F, 0x8000001E). */
void cpuid_set_apic_id(struct kvm_cpuid2 *c, unsigned apic_id);

#endif
