/* hello.elf: serial output, port I/O to the PCI host bridge and the CMOS,
 * an MMIO read and write where no device lives, then power-off. Prints
 * what it read so that tests compare it with what the devices must say. */
#include "guest.h"

#define UNMAPPED_MMIO 0xFEB00000

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	PUTS hello

	/* PCI: vendor/device of 00:00.0 through mechanism #1. */
	PUTS pci
	mov dx, 0xCF8
	mov eax, 0x80000000
	out dx, eax
	mov dx, 0xCFC
	in eax, dx
	call puthex
	PUTS nl

	/* CMOS register 0x0B (status B) and 0x0D (battery good). */
	PUTS cmos
	mov al, 0x0B
	out 0x70, al
	in al, 0x71
	movzx eax, al
	shl eax, 8
	mov ebx, eax
	mov al, 0x0D
	out 0x70, al
	in al, 0x71
	movzx eax, al
	or eax, ebx
	call puthex
	PUTS nl

	/* A port with no device reads all ones. */
	PUTS noport
	mov dx, 0x2F0
	in eax, dx
	call puthex
	PUTS nl

	/* MMIO exit: write then read where no device answers. */
	PUTS mmio
	mov rbx, UNMAPPED_MMIO
	mov dword ptr [rbx], 0x12345678
	mov eax, dword ptr [rbx]
	call puthex
	PUTS nl

	PUTS bye
	POWEROFF

	.data
hello:	.asciz "kvz-test-guest: hello\n"
pci:	.asciz "pci-00:00.0 "
cmos:	.asciz "cmos-b-d "
noport:	.asciz "unhandled-port "
mmio:	.asciz "mmio-unmapped "
nl:	.asciz "\n"
bye:	.asciz "kvz-test-guest: power-off\n"

	GUEST_LIB
