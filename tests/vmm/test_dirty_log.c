/* The dirty log on the host /dev/kvm (skipped without it), in both modes
 * (--dirty-log legacy and manual; manual skipped where KVM lacks it): a
 * guest that writes two known pages (dirtypages.elf) shows exactly those
 * two in each sync while logging, with the page between them clean; with
 * no devices kvz-vmm itself writes nothing. Logging stops cleanly and
 * starts again. Manual mode: the first sync shows every page (initially
 * set), a bit stays until dirty_log_clear() and only the bits passed to it
 * are cleared. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "page_bitmap.h"

#include "dirty_log.h"
#include "vm_internal.h"

#define PAGE_A 0x800000u
#define PAGE_B 0x802000u

static const char *guest_path(void)
{
	static char path[4096];
	const char *dir = getenv("KVZ_BUILD_DIR");
	snprintf(path, sizeof(path), "%s/tests/guests/dirtypages.elf", dir ? dir : ".");
	return path;
}

/* Syncs once the guest has gone round its loop at least twice more (so
 * both pages were written since the last sync), or at once for progress
 * 0, then clears what it saw (as the migration job does before sending;
 * nothing in legacy mode). A fixed sleep was not enough: on a loaded host
 * the software /dev/kvm may not run the vCPU at all for 50 ms. */
static void sync_after(struct vm *vm, uint64_t *bm, uint64_t words, uint64_t progress)
{
	char err[256];
	const volatile uint64_t *a = (const volatile uint64_t *)(vm->mem.host + PAGE_A);
	uint64_t start = *a;
	for (int i = 0; i < 10000 && *a < start + progress; i++)
		usleep(1000);
	assert_true(*a >= start + progress);
	memset(bm, 0, words * sizeof(uint64_t));
	assert_int_equal(dirty_log_sync(vm, bm, err, sizeof(err)), 0);
	if (dirty_log_clear(vm, bm, 0, vm->mem.size / 4096, err, sizeof(err)) < 0)
		fail_msg("dirty_log_clear: %s", err);
}

/* A running dirtypages guest in the mode asked for; NULL (test skipped)
 * when that mode is manual and KVM lacks it. */
static struct vm *start_guest(enum vm_dirty_log mode)
{
	char err[512] = "";
	struct vm_config cfg = { .mem_size = 32u << 20, .ncpus = 1, .cpu_model = "kvz64",
				 .dirty_log = mode };
	struct vm *vm = vm_create(&cfg, err, sizeof(err));
	if (!vm && mode == VM_DIRTY_LOG_MANUAL && strstr(err, "lacks")) {
		printf("SKIP: %s\n", err);
		return NULL;
	}
	if (!vm)
		fail_msg("vm_create: %s", err);
	assert_int_equal(dirty_log_manual(vm), mode == VM_DIRTY_LOG_MANUAL);
	struct boot_config boot = { .kernel = guest_path() };
	assert_int_equal(vm_load(vm, &boot, err, sizeof(err)), 0);
	assert_int_equal(vm_start(vm, err, sizeof(err)), 0);
	const volatile uint64_t *a = (const volatile uint64_t *)(vm->mem.host + PAGE_A);
	while (*a < 1000)   /* running, its page-table bits set */
		usleep(1000);
	return vm;
}

static void end_guest(struct vm *vm)
{
	vm_request_stop(vm, VM_STOP_QUIT, "test done");
	bool joined;
	vm_wait(vm, 10, &joined);
	assert_true(joined);
	vm_destroy(vm);
}

static void exactly_the_written_pages(enum vm_dirty_log mode)
{
	char err[512] = "";
	struct vm *vm = start_guest(mode);
	if (!vm) {
		skip();
		return;
	}
	uint64_t words = guest_mem_bitmap_words(&vm->mem);
	uint64_t *bm = calloc(words, sizeof(uint64_t));
	assert_non_null(bm);
	const volatile uint64_t *a = (const volatile uint64_t *)(vm->mem.host + PAGE_A);

	assert_int_equal(dirty_log_start(vm, err, sizeof(err)), 0);
	sync_after(vm, bm, words, 0);   /* what happened before the start */
	if (mode == VM_DIRTY_LOG_MANUAL)   /* initially set: every page */
		assert_int_equal(page_count(bm, words), vm->mem.size / 4096);
	for (int round = 0; round < 3; round++) {
		sync_after(vm, bm, words, 2);
		assert_true(page_bit(bm, PAGE_A));
		assert_true(page_bit(bm, PAGE_B));
		assert_false(page_bit(bm, PAGE_A + 0x1000));
		assert_int_equal(page_count(bm, words), 2);
	}
	/* kvz-vmm's own writes join the same bitmap */
	guest_mem_mark_dirty(&vm->mem, 0x100000, 1);
	sync_after(vm, bm, words, 2);
	assert_true(page_bit(bm, 0x100000));
	assert_int_equal(page_count(bm, words), 3);
	dirty_log_stop(vm);
	uint64_t before = *a;
	usleep(20000);
	assert_true(*a > before);       /* the guest runs on unlogged */
	assert_int_equal(dirty_log_start(vm, err, sizeof(err)), 0);
	sync_after(vm, bm, words, 0);
	sync_after(vm, bm, words, 2);
	assert_int_equal(page_count(bm, words), 2);
	dirty_log_stop(vm);
	free(bm);
	end_guest(vm);
}

static void test_legacy(void **state)
{
	(void)state;
	exactly_the_written_pages(VM_DIRTY_LOG_LEGACY);
}

static void test_manual(void **state)
{
	(void)state;
	exactly_the_written_pages(VM_DIRTY_LOG_MANUAL);
}

/* Manual mode: a sync leaves KVM's bits; a clear removes exactly the bits
 * passed (a page kept out of it is reported again, as a page dirtied after
 * a pass's sync but not sent in it must be); a misaligned clear is refused
 * with one line. */
static void test_manual_clear_only_what_is_sent(void **state)
{
	(void)state;
	char err[512] = "";
	struct vm *vm = start_guest(VM_DIRTY_LOG_MANUAL);
	if (!vm) {
		skip();
		return;
	}
	uint64_t words = guest_mem_bitmap_words(&vm->mem), pages = vm->mem.size / 4096;
	uint64_t *bm = calloc(words, sizeof(uint64_t));
	assert_non_null(bm);
	assert_int_equal(dirty_log_start(vm, err, sizeof(err)), 0);
	assert_int_equal(dirty_log_sync(vm, bm, err, sizeof(err)), 0);
	assert_int_equal(page_count(bm, words), pages);
	/* no clear: the next sync still has every page */
	memset(bm, 0, words * sizeof(uint64_t));
	assert_int_equal(dirty_log_sync(vm, bm, err, sizeof(err)), 0);
	assert_int_equal(page_count(bm, words), pages);
	/* clear all but one page the guest never writes, in 64-page chunks */
	const uint64_t kept = 0x400000;
	bm[kept / 4096 / 64] &= ~(UINT64_C(1) << (kept / 4096 % 64));
	for (uint64_t first = 0; first < pages; first += 64)
		assert_int_equal(dirty_log_clear(vm, bm, first, 64, err, sizeof(err)), 0);
	sync_after(vm, bm, words, 2);
	assert_true(page_bit(bm, kept));
	assert_true(page_bit(bm, PAGE_A));
	assert_true(page_bit(bm, PAGE_B));
	assert_int_equal(page_count(bm, words), 3);
	sync_after(vm, bm, words, 2);   /* the kept page cleared now */
	assert_int_equal(page_count(bm, words), 2);
	/* KVM's alignment rule, checked before the ioctl */
	assert_int_equal(dirty_log_clear(vm, bm, 1, 64, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not 64-page aligned"));
	assert_int_equal(dirty_log_clear(vm, bm, 0, 65, err, sizeof(err)), -1);
	dirty_log_stop(vm);
	free(bm);
	end_guest(vm);
}

int main(void)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		printf("SKIP: no usable /dev/kvm\n");
		return 77;
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_legacy),
		cmocka_unit_test(test_manual),
		cmocka_unit_test(test_manual_clear_only_what_is_sent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
