/* idle.elf: prints a line, then idles in sti; hlt forever (a VM that runs
 * until it is stopped). The PIC is masked and an IDT with a do-nothing
 * handler is installed, so a stray interrupt cannot triple-fault it. */
#include "guest.h"

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	mov al, 0xFF
	out 0x21, al
	out 0xA1, al
	call install_idt
	test r15, r15        /* only vCPU 0 prints: the others just idle */
	jnz 1f
	PUTS msg
1:	sti
	hlt
	jmp 1b

/* 32 gates for vectors 0-31, 32 more for 32-63, all to iret_stub. */
install_idt:
	lea rdi, [rip + idt]
	lea rax, [rip + iret_stub]
	mov ecx, 64
1:	mov word ptr [rdi], ax
	mov word ptr [rdi + 2], 0x10
	mov word ptr [rdi + 4], 0x8E00
	mov rdx, rax
	shr rdx, 16
	mov word ptr [rdi + 6], dx
	shr rdx, 16
	mov dword ptr [rdi + 8], edx
	mov dword ptr [rdi + 12], 0
	add rdi, 16
	loop 1b
	lidt [rip + idtr]
	ret

iret_stub:
	iretq

	.data
	.balign 16
idtr:
	.word 64 * 16 - 1
	.quad idt
msg:
	.asciz "kvz-test-guest: idle\n"
	.bss
	.balign 16
idt:
	.skip 64 * 16

	GUEST_LIB
