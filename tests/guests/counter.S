/* counter.elf: prints a '.' every 2^24 TSC cycles (a few ms) forever. A
 * paused VM prints no dots; a resumed one prints them again. Paced by the
 * TSC rather than by iterations, and all at CPL0: the PVM software backend
 * emulates CPL0 code slowly and ignores IOPL (an `out` from CPL3 faults),
 * while a real KVM runs the loop at full speed; the dot rate is the same
 * order on both. */
#include "guest.h"

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	PUTS msg
	mov dx, COM1
	rdtsc
	shl rdx, 32
	or rax, rdx
	mov rbx, rax                 /* TSC of the last dot */
1:	rdtsc
	shl rdx, 32
	or rax, rdx
	sub rax, rbx
	cmp rax, 0x1000000
	jb 1b
	add rbx, rax
	mov dx, COM1
	mov al, '.'
	out dx, al
	jmp 1b

	.data
msg:	.asciz "kvz-test-guest: counting\n"

	GUEST_LIB
