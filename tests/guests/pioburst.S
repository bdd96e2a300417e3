/* pioburst.elf: what SeaBIOS does on each switch between its 16- and
 * 32-bit code, many times over: 1000 writes each of the CMOS index (NMI
 * off, index 0x7F) and of port 0x92 (the A20 gate), then the CMOS index
 * set to status B and the data port read. Prints that register: the
 * index write that came last must be the one served before the read,
 * however the writes reached kvz-vmm (batched or one exit each). The test
 * counts the vCPU exits. */
#include "guest.h"

#define BURST 1000

	VCPU0_ENTRY hello
	mov ecx, BURST
1:	mov al, 0xFF
	out 0x70, al
	mov al, 0x02
	out 0x92, al
	loop 1b

	PUTS cmos
	mov al, 0x0B
	out 0x70, al
	in al, 0x71
	movzx eax, al
	call puthex
	PUTS nl
	POWEROFF

	.data
hello:	.asciz "kvz-test-guest: pioburst\n"
cmos:	.asciz "cmos-b "
nl:	.asciz "\n"

	GUEST_LIB
