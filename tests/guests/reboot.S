/* reboot.elf: asks the i8042 keyboard controller to pulse the reset line,
 * as Linux's reboot=k does. kvz-vmm must exit 0. */
#include "guest.h"

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	PUTS msg
	mov al, 0xFE
	out 0x64, al
1:	hlt
	jmp 1b

	.data
msg:	.asciz "kvz-test-guest: rebooting\n"

	GUEST_LIB
