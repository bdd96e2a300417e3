/* flood.elf: console output as fast as the UART takes it, to check that
 * kvz-vmm's buffered console loses and reorders nothing. Prints its
 * banner, waits for one byte on COM1 that says how to end, then 2000
 * numbered lines "flood NNNN\n" and a last line without a line end
 * ("flood-end" and the mode byte), so that something is buffered when
 * the guest ends it:
 *   p  power off         r  reset through the i8042
 *   c  jump into MMIO (KVM_EXIT_INTERNAL_ERROR: the error stop)
 *   h  halt for good (the test stops kvz-vmm from outside) */
#include "guest.h"

#define LINES 2000
#define TARGET 0xFEB00000

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	PUTS banner
	mov dx, COM1 + 5
1:	in al, dx
	test al, 1
	jz 1b
	mov dx, COM1
	in al, dx
	mov r12b, al          /* the mode */
	xor r13d, r13d        /* the line number */
2:	PUTS prefix
	mov eax, r13d
	call putdec4
	mov dx, COM1
	mov al, '\n'
	out dx, al
	inc r13d
	cmp r13d, LINES
	jb 2b
	PUTS last
	mov dx, COM1
	mov al, r12b
	out dx, al
	cmp r12b, 'r'
	je reset
	cmp r12b, 'c'
	je crash
	cmp r12b, 'h'
	je park
	POWEROFF
reset:
	mov al, 0xFE
	out 0x64, al
	jmp park
crash:
	mov rax, TARGET
	jmp rax
park:
	cli
	hlt
	jmp park

/* putdec4: eax (< 10000) as four decimal digits. */
putdec4:
	mov ecx, 1000
	mov ebx, 10
1:	xor edx, edx
	div ecx               /* eax = digit, edx = rest */
	mov edi, edx
	call putdigit
	mov eax, ecx
	xor edx, edx
	div ebx
	mov ecx, eax
	mov eax, edi
	test ecx, ecx
	jnz 1b
	ret

	.data
banner:	.asciz "kvz-test-guest: flood\n"
prefix:	.asciz "flood "
last:	.asciz "flood-end "

	GUEST_LIB
