/* A vCPU's whole architectural state for snapshots and migration: general
 * and segment registers, XSAVE (the FPU where KVM has no XSAVE) and XCRs,
 * the LAPIC, pending events, MP state, debug registers and every MSR KVM
 * lists for saving (KVM_GET_MSR_INDEX_LIST). KVM's x86 structures are
 * stored as their bytes with their size (x86 is little-endian); the size
 * is checked on load. */
#ifndef KVZ_VMM_VCPU_SNAPSHOT_H
#define KVZ_VMM_VCPU_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "state/state_buf.h"

struct vcpu;

#define VCPU_SNAPSHOT_VERSION 1

/* The MSRs to save: KVM_GET_MSR_INDEX_LIST on the /dev/kvm fd. Returns a
 * malloc'd array and its count, or NULL with err set. */
uint32_t *vcpu_snapshot_msr_list(int kvm_fd, uint32_t *n, char *err, size_t errlen);

/* The vCPU's thread is parked (outside KVM_RUN, its last exit completed). */
int vcpu_snapshot_save(struct vcpu *v, int kvm_fd, const uint32_t *msrs, uint32_t nmsrs,
		       struct state_buf *out, char *err, size_t errlen);
int vcpu_snapshot_load(struct vcpu *v, int kvm_fd, struct state_cursor *in,
		       char *err, size_t errlen);

#endif
