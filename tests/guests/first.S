/* first.elf: for bench/vmm_start.sh. Its first I/O instruction powers the
 * machine off, so kvz-vmm's first exit marks the first guest instructions
 * having run. Nothing else touches memory. */
#include "guest.h"

	.section .text.entry
	.globl _start
_start:
	mov dx, POWEROFF_PORT
	mov ax, 0x2000
	out dx, ax
1:	hlt
	jmp 1b
