/* internal.elf: jumps into MMIO space where no RAM is. KVM must emulate
 * the instruction fetch and cannot: KVM_EXIT_INTERNAL_ERROR (emulation
 * failure) with RIP at the target, which kvz-vmm must report and exit. */
#include "guest.h"

#define TARGET 0xFEB00000

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	PUTS msg
	mov rax, TARGET
	jmp rax

	.data
msg:	.asciz "kvz-test-guest: jumping into MMIO\n"

	GUEST_LIB
