#include "dirty_log.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vm_internal.h"

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
