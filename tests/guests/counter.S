/* counter.elf: drops to CPL3 (where the software KVM backend runs at
 * native speed) and counts forever, printing a '.' every 2^22 iterations.
 * A paused VM prints no dots; a resumed one prints them again. */
#include "guest.h"

#define USER_DS 0x23
#define USER_CS 0x2B

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	lgdt [rip + gdtr]
	/* User access to the first 2 MiB: set U in the kvz-vmm page tables. */
	mov rax, cr3
	and rax, ~0xFFF
	or qword ptr [rax], 4
	mov rax, [rax]
	and rax, ~0xFFF
	or qword ptr [rax], 4
	mov rax, [rax]
	and rax, ~0xFFF
	or qword ptr [rax], 4
	mov rax, cr3
	mov cr3, rax
	PUTS msg
	/* iretq to CPL3 with IOPL 3 (so that user code may write the UART)
	 * and interrupts off (no IDT needed). */
	lea rax, [rip + user_stack_top]
	push USER_DS
	push rax
	push 0x3002
	push USER_CS
	lea rax, [rip + user_loop]
	push rax
	iretq

user_loop:
	xor ebx, ebx
	mov dx, COM1
1:	inc rbx
	test ebx, 0x3FFFFF
	jnz 1b
	mov al, '.'
	out dx, al
	jmp 1b

	.data
	.balign 16
gdt:
	.quad 0
	.quad 0
	.quad 0x00AF9B000000FFFF   /* 0x10 kernel code */
	.quad 0x00CF93000000FFFF   /* 0x18 kernel data */
	.quad 0x00CFF3000000FFFF   /* 0x20 user data */
	.quad 0x00AFFB000000FFFF   /* 0x28 user code */
gdtr:
	.word 6 * 8 - 1
	.quad gdt
msg:	.asciz "kvz-test-guest: counting\n"
	.bss
	.balign 4096
	.skip 4096
user_stack_top:

	GUEST_LIB
