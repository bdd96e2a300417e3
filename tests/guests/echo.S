/* echo.elf: reads bytes from COM1 (polling LSR.DR) and writes each back;
 * 'q' powers off. Tests the console input path (stdin -> UART RX FIFO). */
#include "guest.h"

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	PUTS msg
1:	mov dx, COM1 + 5
2:	in al, dx
	test al, 1
	jz 2b
	mov dx, COM1
	in al, dx
	out dx, al
	cmp al, 'q'
	jne 1b
	PUTS nl
	POWEROFF

	.data
msg:	.asciz "kvz-test-guest: echo\n"
nl:	.asciz "\n"

	GUEST_LIB
