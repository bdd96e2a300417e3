#include "dirty_log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log.h"
#include "vm_internal.h"

#define MANUAL_FLAGS (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET)

/* Manual protect asked for (or auto) and offered with INITIALLY_SET (a
 * kernel that offers only MANUAL_PROTECT_ENABLE would need a clear of all
 * RAM at the start: legacy is as good there). */
static int enable_manual(struct vm *vm, bool required, char *err, size_t errlen)
{
	int caps = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (caps < 0 || ((uint64_t)caps & MANUAL_FLAGS) != MANUAL_FLAGS) {
		if (required) {
			snprintf(err, errlen, "--dirty-log=manual: this host's KVM lacks "
				 "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with INITIALLY_SET");
			return -1;
		}
		kvz_debug("dirty log: legacy (KVM offers no manual protect with initially-set)");
		return 0;
	}
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .args = { MANUAL_FLAGS } };
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
		if (required) {
			snprintf(err, errlen, "--dirty-log=manual: KVM_ENABLE_CAP: %s", strerror(errno));
			return -1;
		}
		kvz_debug("dirty log: legacy (KVM_ENABLE_CAP manual protect: %s)", strerror(errno));
		return 0;
	}
	vm->dirty_manual = true;
	kvz_debug("dirty log: manual protect, initially set (KVM_CLEAR_DIRTY_LOG per chunk sent)");
	return 0;
}

int dirty_log_setup(struct vm *vm, char *err, size_t errlen)
{
	if (vm->cfg.dirty_log == VM_DIRTY_LOG_LEGACY) {
		kvz_debug("dirty log: legacy (--dirty-log=legacy)");
		return 0;
	}
	return enable_manual(vm, vm->cfg.dirty_log == VM_DIRTY_LOG_MANUAL, err, errlen);
}

bool dirty_log_manual(const struct vm *vm)
{
	return vm->dirty_manual;
}

/* The RAM slots as vm.c made them: 0 = low RAM, 1 = RAM above 4 GiB. The
 * low part is either all RAM or 3 GiB (a multiple of 64 pages), so slot
 * 1's bits start on a word boundary of the combined bitmap. */
struct slot {
	uint32_t id;
	uint64_t gpa, size, offset;
};

static unsigned slots(const struct vm *vm, struct slot out[2])
{
	out[0] = (struct slot){ 0, 0, vm->mem.lo_size, 0 };
	if (!vm->mem.hi_size)
		return 1;
	out[1] = (struct slot){ 1, GUEST_MEM_HI_START, vm->mem.hi_size, vm->mem.lo_size };
	return 2;
}

static int set_flags(struct vm *vm, const struct slot *s, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = s->id, .flags = flags, .guest_phys_addr = s->gpa, .memory_size = s->size,
		.userspace_addr = (uint64_t)(uintptr_t)(vm->mem.host + s->offset),
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

void dirty_log_stop(struct vm *vm)
{
	struct slot s[2];
	for (unsigned i = 0, n = slots(vm, s); i < n; i++)
		set_flags(vm, &s[i], 0);
	guest_mem_log_stop(&vm->mem);
}

int dirty_log_start(struct vm *vm, char *err, size_t errlen)
{
	if (guest_mem_log_start(&vm->mem, err, errlen) < 0)
		return -1;
	struct slot s[2];
	for (unsigned i = 0, n = slots(vm, s); i < n; i++) {
		int rc = set_flags(vm, &s[i], KVM_MEM_LOG_DIRTY_PAGES);
		if (rc < 0) {
			snprintf(err, errlen, "dirty log: KVM_MEM_LOG_DIRTY_PAGES on slot %u: %s", s[i].id,
				 strerror(-rc));
			dirty_log_stop(vm);
			return -1;
		}
	}
	return 0;
}

int dirty_log_sync(struct vm *vm, uint64_t *bitmap, char *err, size_t errlen)
{
	/* VMM writes first: a page both marks is sent once either way, and a
	 * VMM write racing this sync lands in the next one. */
	guest_mem_take_dirty(&vm->mem, bitmap);
	struct slot s[2];
	for (unsigned i = 0, n = slots(vm, s); i < n; i++) {
		uint64_t words = (s[i].size / 4096 + 63) / 64;
		uint64_t *part = bitmap + s[i].offset / 4096 / 64;
		/* KVM writes the slot's whole bitmap: a scratch copy, then OR. */
		uint64_t tmp_words = words;
		uint64_t *tmp = calloc(tmp_words, sizeof(uint64_t));
		if (!tmp) {
			snprintf(err, errlen, "dirty log: out of memory");
			return -1;
		}
		struct kvm_dirty_log log = { .slot = s[i].id, .dirty_bitmap = tmp };
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
			snprintf(err, errlen, "dirty log: KVM_GET_DIRTY_LOG on slot %u: %s", s[i].id,
				 strerror(errno));
			free(tmp);
			return -1;
		}
		for (uint64_t w = 0; w < words; w++)
			part[w] |= tmp[w];
		free(tmp);
	}
	return 0;
}

static bool any_bit(const uint64_t *bitmap, uint64_t first_page, uint64_t end_page)
{
	for (uint64_t w = first_page / 64; w < (end_page + 63) / 64; w++)
		if (bitmap[w])
			return true;
	return false;
}

/* KVM_CLEAR_DIRTY_LOG on one slot's part [a, b) of the range (RAM page
 * numbers). The bitmap is passed in place: a starts a word (checked). */
static int clear_slot(struct vm *vm, const struct slot *s, const uint64_t *bitmap, uint64_t a,
		      uint64_t b, char *err, size_t errlen)
{
	uint64_t s0 = s->offset / 4096, s_end = s0 + s->size / 4096;
	/* Checked even when nothing is to be cleared: a caller's bug shows at once. */
	if ((a - s0) % 64 || ((b - a) % 64 && b != s_end) || b - a > UINT32_MAX) {
		snprintf(err, errlen, "dirty log: clear of pages %llu..%llu of slot %u is not 64-page aligned",
			 (unsigned long long)(a - s0), (unsigned long long)(b - s0), s->id);
		return -1;
	}
	if (!any_bit(bitmap, a, b))   /* nothing to clear: no ioctl */
		return 0;
	struct kvm_clear_dirty_log c = {
		.slot = s->id, .num_pages = (uint32_t)(b - a), .first_page = a - s0,
		.dirty_bitmap = (void *)(uintptr_t)(bitmap + a / 64),   /* KVM only reads it */
	};
	if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0) {
		snprintf(err, errlen, "dirty log: KVM_CLEAR_DIRTY_LOG on slot %u: %s", s->id,
			 strerror(errno));
		return -1;
	}
	return 0;
}

int dirty_log_clear(struct vm *vm, const uint64_t *bitmap, uint64_t first_page, uint64_t npages,
		    char *err, size_t errlen)
{
	if (!vm->dirty_manual)
		return 0;
	struct slot s[2];
	uint64_t end = first_page + npages;
	for (unsigned i = 0, n = slots(vm, s); i < n; i++) {
		uint64_t s0 = s[i].offset / 4096, s_end = s0 + s[i].size / 4096;
		uint64_t a = first_page > s0 ? first_page : s0, b = end < s_end ? end : s_end;
		if (a >= b)
			continue;
		if (clear_slot(vm, &s[i], bitmap, a, b, err, errlen) < 0)
			return -1;
	}
	return 0;
}
