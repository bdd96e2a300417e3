#include "vcpu_snapshot.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>

#include "vcpu.h"

#define MSR_IA32_TSC_DEADLINE 0x6E0

/* The fixed-size KVM structures of one vCPU. */
struct kvm_state_set {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	struct kvm_xcrs xcrs;
};
#define MAX_SAVED_MSRS 4096   /* far above what any KVM lists */

uint32_t *vcpu_snapshot_msr_list(int kvm_fd, uint32_t *n, char *err, size_t errlen)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
		snprintf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		return NULL;
	}
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		snprintf(err, errlen, "KVM_GET_MSR_INDEX_LIST: %s", strerror(errno));
		free(l);
		return NULL;
	}
	uint32_t *out = malloc((l->nmsrs + 1) * sizeof(uint32_t));
	if (out) {
		memcpy(out, l->indices, l->nmsrs * sizeof(uint32_t));
		*n = l->nmsrs;
	} else {
		snprintf(err, errlen, "out of memory");
	}
	free(l);
	return out;
}

static void put_blob(struct state_buf *b, const void *p, uint32_t len)
{
	state_put_u32(b, len);
	state_put_bytes(b, p, len);
}

/* A blob must have exactly the size this KVM's structure has. */
static bool get_blob(struct state_cursor *c, void *p, uint32_t len, const char *what,
		     char *err, size_t errlen)
{
	uint32_t n = state_get_u32(c);
	if (c->bad || n != len) {
		snprintf(err, errlen, "%s: %s", what,
			 c->bad ? "truncated" : "size differs from this KVM's");
		c->bad = true;
		return false;
	}
	state_get_bytes(c, p, len);
	if (c->bad)
		snprintf(err, errlen, "%s: truncated", what);
	return !c->bad;
}

static size_t xsave_size(int kvm_fd)
{
	int n = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (n > (int)sizeof(struct kvm_xsave))
		return (size_t)n;
	if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0)
		return sizeof(struct kvm_xsave);
	return 0;   /* FPU only */
}

#define GET(req, var, name)                                                             \
	do {                                                                            \
		if (ioctl(v->fd, req, &(var)) < 0) {                                    \
			snprintf(err, errlen, "vCPU %d: %s: %s", v->id, name, strerror(errno)); \
			return -1;                                                      \
		}                                                                       \
	} while (0)

static int save_fpu(struct vcpu *v, int kvm_fd, struct state_buf *out, char *err, size_t errlen)
{
	size_t xs = xsave_size(kvm_fd);
	state_put_u8(out, xs != 0);
	if (!xs) {
		struct kvm_fpu fpu;
		GET(KVM_GET_FPU, fpu, "KVM_GET_FPU");
		put_blob(out, &fpu, sizeof(fpu));
		return 0;
	}
	struct kvm_xsave *x = calloc(1, xs);
	if (!x) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	unsigned long req = xs > sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	int rc = ioctl(v->fd, req, x);
	if (rc < 0)
		snprintf(err, errlen, "vCPU %d: KVM_GET_XSAVE: %s", v->id, strerror(errno));
	else
		put_blob(out, x, (uint32_t)xs);
	free(x);
	return rc < 0 ? -1 : 0;
}

/* KVM_GET_MSRS stops at the first MSR it cannot read: skip that one and go
 * on, so that one unreadable MSR costs only itself. */
static int save_msrs(struct vcpu *v, const uint32_t *idx, uint32_t n, struct state_buf *out,
		     char *err, size_t errlen)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(struct kvm_msr_entry));
	struct kvm_msr_entry *got = calloc(n + 1, sizeof(*got));
	if (!m || !got) {
		free(m);
		free(got);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uint32_t ngot = 0;
	for (uint32_t at = 0; at < n;) {
		m->nmsrs = n - at;
		for (uint32_t i = 0; i < m->nmsrs; i++)
			m->entries[i] = (struct kvm_msr_entry){.index = idx[at + i]};
		int r = ioctl(v->fd, KVM_GET_MSRS, m);
		if (r < 0) {
			snprintf(err, errlen, "vCPU %d: KVM_GET_MSRS: %s", v->id, strerror(errno));
			free(m);
			free(got);
			return -1;
		}
		memcpy(got + ngot, m->entries, (size_t)r * sizeof(*got));
		ngot += (uint32_t)r;
		at += (uint32_t)r + 1;   /* +1: the one it could not read */
	}
	state_put_u32(out, ngot);
	for (uint32_t i = 0; i < ngot; i++) {
		state_put_u32(out, got[i].index);
		state_put_u64(out, got[i].data);
	}
	free(m);
	free(got);
	return 0;
}

int vcpu_snapshot_save(struct vcpu *v, int kvm_fd, const uint32_t *msrs, uint32_t nmsrs,
		       struct state_buf *out, char *err, size_t errlen)
{
	struct kvm_state_set k;
	memset(&k, 0, sizeof(k));
	GET(KVM_GET_REGS, k.regs, "KVM_GET_REGS");
	GET(KVM_GET_SREGS, k.sregs, "KVM_GET_SREGS");
	GET(KVM_GET_LAPIC, k.lapic, "KVM_GET_LAPIC");
	GET(KVM_GET_VCPU_EVENTS, k.ev, "KVM_GET_VCPU_EVENTS");
	GET(KVM_GET_MP_STATE, k.mp, "KVM_GET_MP_STATE");
	GET(KVM_GET_DEBUGREGS, k.dbg, "KVM_GET_DEBUGREGS");
	bool has_xcrs = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	if (has_xcrs)
		GET(KVM_GET_XCRS, k.xcrs, "KVM_GET_XCRS");
	state_put_u32(out, (uint32_t)v->id);
	put_blob(out, &k.regs, sizeof(k.regs));
	put_blob(out, &k.sregs, sizeof(k.sregs));
	if (save_fpu(v, kvm_fd, out, err, errlen) < 0)
		return -1;
	state_put_u8(out, has_xcrs);
	put_blob(out, &k.xcrs, sizeof(k.xcrs));
	put_blob(out, &k.lapic, sizeof(k.lapic));
	put_blob(out, &k.ev, sizeof(k.ev));
	put_blob(out, &k.mp, sizeof(k.mp));
	put_blob(out, &k.dbg, sizeof(k.dbg));
	return save_msrs(v, msrs, nmsrs, out, err, errlen);
}

#define SET(req, var, name)                                                             \
	do {                                                                            \
		if (ioctl(v->fd, req, &(var)) < 0) {                                    \
			snprintf(err, errlen, "vCPU %d: %s refused the saved state: %s", v->id, \
				 name, strerror(errno));                                \
			return -1;                                                      \
		}                                                                       \
	} while (0)

static int load_fpu(struct vcpu *v, int kvm_fd, struct state_cursor *in, char *err, size_t errlen)
{
	bool has_xsave = state_get_bool(in);
	size_t xs = xsave_size(kvm_fd);
	if (has_xsave != (xs != 0)) {
		snprintf(err, errlen, "vCPU %d: the file has %s, this KVM has %s", v->id,
			 has_xsave ? "XSAVE state" : "FPU state only", xs ? "XSAVE" : "no XSAVE");
		return -1;
	}
	if (!xs) {
		struct kvm_fpu fpu;
		if (!get_blob(in, &fpu, sizeof(fpu), "FPU", err, errlen))
			return -1;
		SET(KVM_SET_FPU, fpu, "KVM_SET_FPU");
		return 0;
	}
	struct kvm_xsave *x = calloc(1, xs);
	if (!x) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = -1;
	if (get_blob(in, x, (uint32_t)xs, "XSAVE", err, errlen)) {
		rc = ioctl(v->fd, KVM_SET_XSAVE, x);
		if (rc < 0)
			snprintf(err, errlen, "vCPU %d: KVM_SET_XSAVE refused the saved state: %s", v->id,
				 strerror(errno));
	}
	free(x);
	return rc < 0 ? -1 : 0;
}

/* Sets the MSRs one batch at a time: KVM stops at the first it refuses,
 * which is named. TSC_DEADLINE is left for after the LAPIC (KVM ignores
 * it while the timer is not in deadline mode). */
static int set_msrs(struct vcpu *v, const struct kvm_msr_entry *e, uint32_t n, char *err,
		    size_t errlen)
{
	if (n == 0)
		return 0;
	struct kvm_msrs *m = calloc(1, sizeof(*m) + n * sizeof(*e));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	m->nmsrs = n;
	memcpy(m->entries, e, n * sizeof(*e));
	int r = ioctl(v->fd, KVM_SET_MSRS, m);
	free(m);
	if (r == (int)n)
		return 0;
	if (r < 0)
		snprintf(err, errlen, "vCPU %d: KVM_SET_MSRS: %s", v->id, strerror(errno));
	else
		snprintf(err, errlen, "vCPU %d: this KVM refuses MSR 0x%x = 0x%llx", v->id,
			 e[r].index, (unsigned long long)e[r].data);
	return -1;
}

static int load_msrs(struct vcpu *v, struct state_cursor *in, struct kvm_msr_entry **out,
		     uint32_t *nout, struct kvm_msr_entry *deadline, bool *has_deadline,
		     char *err, size_t errlen)
{
	uint32_t n = state_get_u32(in);
	if (n > MAX_SAVED_MSRS || in->len - in->off < (size_t)n * 12) {
		snprintf(err, errlen, "vCPU %d: MSR count %u is impossible", v->id, n);
		return -1;
	}
	struct kvm_msr_entry *e = calloc(n + 1, sizeof(*e));
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	uint32_t k = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct kvm_msr_entry m = {.index = state_get_u32(in)};
		m.data = state_get_u64(in);
		if (m.index == MSR_IA32_TSC_DEADLINE) {
			*deadline = m;
			*has_deadline = true;
		} else {
			e[k++] = m;
		}
	}
	*out = e;
	*nout = k;
	return 0;
}

int vcpu_snapshot_load(struct vcpu *v, int kvm_fd, struct state_cursor *in,
		       char *err, size_t errlen)
{
	struct kvm_state_set k;
	uint32_t id = state_get_u32(in);
	if (id != (uint32_t)v->id) {
		snprintf(err, errlen, "vCPU id %u where %d was expected", id, v->id);
		return -1;
	}
	if (!get_blob(in, &k.regs, sizeof(k.regs), "registers", err, errlen) ||
	    !get_blob(in, &k.sregs, sizeof(k.sregs), "segment registers", err, errlen))
		return -1;
	SET(KVM_SET_SREGS, k.sregs, "KVM_SET_SREGS");
	SET(KVM_SET_REGS, k.regs, "KVM_SET_REGS");
	if (load_fpu(v, kvm_fd, in, err, errlen) < 0)
		return -1;
	bool has_xcrs = state_get_bool(in);
	if (!get_blob(in, &k.xcrs, sizeof(k.xcrs), "XCRs", err, errlen) ||
	    !get_blob(in, &k.lapic, sizeof(k.lapic), "LAPIC", err, errlen) ||
	    !get_blob(in, &k.ev, sizeof(k.ev), "events", err, errlen) ||
	    !get_blob(in, &k.mp, sizeof(k.mp), "MP state", err, errlen) ||
	    !get_blob(in, &k.dbg, sizeof(k.dbg), "debug registers", err, errlen))
		return -1;
	if (k.mp.mp_state > KVM_MP_STATE_AP_RESET_HOLD) {
		snprintf(err, errlen, "vCPU %d: MP state %u is unknown", v->id, k.mp.mp_state);
		return -1;
	}
	if (has_xcrs) {
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) <= 0) {
			snprintf(err, errlen, "vCPU %d: the file has XCRs, this KVM has none", v->id);
			return -1;
		}
		SET(KVM_SET_XCRS, k.xcrs, "KVM_SET_XCRS");
	}
	struct kvm_msr_entry *msrs = NULL, deadline = {0};
	uint32_t nmsrs = 0;
	bool has_deadline = false;
	if (load_msrs(v, in, &msrs, &nmsrs, &deadline, &has_deadline, err, errlen) < 0)
		return -1;
	int rc = in->bad ? -1 : set_msrs(v, msrs, nmsrs, err, errlen);
	free(msrs);
	if (in->bad)
		snprintf(err, errlen, "vCPU %d: truncated", v->id);
	if (rc < 0)
		return -1;
	SET(KVM_SET_LAPIC, k.lapic, "KVM_SET_LAPIC");
	if (has_deadline && set_msrs(v, &deadline, 1, err, errlen) < 0)
		return -1;
	k.ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	SET(KVM_SET_VCPU_EVENTS, k.ev, "KVM_SET_VCPU_EVENTS");
	SET(KVM_SET_MP_STATE, k.mp, "KVM_SET_MP_STATE");
	SET(KVM_SET_DEBUGREGS, k.dbg, "KVM_SET_DEBUGREGS");
	return 0;
}
