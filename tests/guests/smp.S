/* smp.elf: every vCPU starts here (kvz-vmm starts all vCPUs of an ELF
 * guest at the entry). Each one announces its APIC id and counts itself
 * in; vCPU 0 waits until all the vCPUs that CPUID reports have checked in,
 * then powers off. */
#include "guest.h"

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	/* The console is shared: take a spinlock around the line. */
1:	mov eax, 1
	xchg eax, dword ptr [rip + print_lock]
	test eax, eax
	jz 2f
	pause
	jmp 1b
2:	PUTS up
	mov rax, r15
	call putdigit
	PUTS nl
	mov dword ptr [rip + print_lock], 0
	lock inc dword ptr [rip + checked_in]
	test r15, r15
	jnz ap_park

	/* CPUID.1:EBX[23:16]: how many logical CPUs this package has. */
	mov eax, 1
	cpuid
	shr ebx, 16
	and ebx, 0xFF
	mov r14d, ebx
3:	cmp dword ptr [rip + checked_in], r14d
	jae 4f
	pause
	jmp 3b
4:	PUTS all
	mov eax, r14d
	call putdigit
	PUTS nl
	POWEROFF

ap_park:
	cli
	hlt
	jmp ap_park

	.data
	.balign 4
print_lock:	.long 0
checked_in:	.long 0
up:	.asciz "kvz-test-guest: cpu up apic-id "
all:	.asciz "kvz-test-guest: cpus checked in: "
nl:	.asciz "\n"

	GUEST_LIB
