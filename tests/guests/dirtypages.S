/* dirtypages.elf: for the dirty log test. vCPU 0 increments one qword at
 * guest physical 8 MiB and one at 8 MiB + 8 KiB, forever, touching no
 * other memory (no stack, no output): between two syncs of the dirty log
 * exactly those two pages are dirty. Other vCPUs halt. */
#include "guest.h"

	.section .text.entry
	.globl _start
_start:
	mov eax, 1
	cpuid
	shr ebx, 24
	jnz 2f
	mov rdi, 0x800000
1:	inc qword ptr [rdi]
	inc qword ptr [rdi + 0x2000]
	jmp 1b
2:	hlt
	jmp 2b
