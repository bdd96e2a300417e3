/* fwcfg.elf: a hostile guest against fw_cfg (direct boot). Reads the
 * signature through the data port and through DMA, then tries DMA that
 * must be refused: a buffer outside RAM, a length past the end of RAM, an
 * address that wraps, a write to a read-only item, a descriptor outside
 * RAM (nothing may happen, the VM must go on). Prints "ok NAME" or
 * "FAIL NAME" per check, then powers off. */
#include "guest.h"

#define FW_SEL 0x510
#define FW_DATA 0x511
#define FW_DMA_HI 0x514
#define FW_DMA_LO 0x518
#define DMA_ERROR 0x01
#define DMA_READ 0x02
#define DMA_SELECT 0x08
#define DMA_WRITE 0x10

/* Runs DMA with the descriptor at desc (r8 = its address); eax = the
 * control word the device wrote back (host order). */
.macro DMA_AT desc_reg
	mov rax, \desc_reg
	shr rax, 32
	bswap eax
	mov dx, FW_DMA_HI
	out dx, eax
	mov eax, \desc_reg\()d
	bswap eax
	mov dx, FW_DMA_LO
	out dx, eax
.endm

/* Fills the descriptor: control, length, address (a register or an
 * immediate; a label would be read as memory). */
.macro DESC ctl, len, addr
	mov eax, \ctl
	bswap eax
	mov [rip + desc], eax
	mov eax, \len
	bswap eax
	mov [rip + desc + 4], eax
	mov rax, \addr
	bswap rax
	mov [rip + desc + 8], rax
	lea r8, [rip + desc]
	DMA_AT r8
	mov eax, [rip + desc]
	bswap eax
.endm

	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	PUTS hello

	/* Legacy interface: select 0 (signature), four data-port reads. */
	mov dx, FW_SEL
	xor eax, eax
	out dx, ax
	mov dx, FW_DATA
	xor ebx, ebx
	mov ecx, 4
1:	in al, dx
	shl ebx, 8
	mov bl, al
	loop 1b
	cmp ebx, 0x51454D55          /* 'Q' 'E' 'M' 'U' */
	lea rsi, [rip + n_sig]
	call report

	/* DMA read of the signature into buf. */
	lea r9, [rip + buf]
	DESC (DMA_SELECT | DMA_READ), 4, r9
	test eax, eax
	lea rsi, [rip + n_dma_status]
	call report
	cmp dword ptr [rip + buf], 0x554D4551
	lea rsi, [rip + n_dma_data]
	call report

	/* Buffer in the PCI hole: not RAM. */
	DESC (DMA_SELECT | DMA_READ), 4, 0xF0000000
	cmp eax, DMA_ERROR
	lea rsi, [rip + n_hole]
	call report

	/* 4 GiB - 1 bytes from buf: past the end of RAM. */
	lea r9, [rip + buf]
	DESC (DMA_SELECT | DMA_READ), 0xFFFFFFFF, r9
	cmp eax, DMA_ERROR
	lea rsi, [rip + n_huge]
	call report

	/* An address that wraps around 2^64. */
	DESC (DMA_SELECT | DMA_READ), 0x20, -0x10
	cmp eax, DMA_ERROR
	lea rsi, [rip + n_wrap]
	call report

	/* Write to the signature: read-only, refused, and unchanged. */
	mov dword ptr [rip + buf], 0x41414141
	lea r9, [rip + buf]
	DESC (DMA_SELECT | DMA_WRITE), 4, r9
	cmp eax, DMA_ERROR
	lea rsi, [rip + n_write]
	call report
	mov dword ptr [rip + buf], 0
	lea r9, [rip + buf]
	DESC (DMA_SELECT | DMA_READ), 4, r9
	cmp dword ptr [rip + buf], 0x554D4551
	lea rsi, [rip + n_unchanged]
	call report

	/* Descriptor itself in the PCI hole: ignored, and we are still here. */
	mov r8, 0xF0000000
	DMA_AT r8
	mov r8, 0xFFFFFFFFFFFFFFF8
	DMA_AT r8
	xor eax, eax
	lea rsi, [rip + n_desc]
	call report

	PUTS done
	POWEROFF

/* Prints "ok " or "FAIL " (by ZF) and the name at rsi. */
report:
	push rsi
	lea rsi, [rip + s_ok]
	je 1f
	lea rsi, [rip + s_fail]
1:	call puts
	pop rsi
	call puts
	ret

	.data
hello:	.asciz "kvz-test-guest: fwcfg\n"
done:	.asciz "fwcfg: done\n"
s_ok:	.asciz "ok "
s_fail:	.asciz "FAIL "
n_sig:	.asciz "signature-port\n"
n_dma_status:	.asciz "dma-status\n"
n_dma_data:	.asciz "dma-data\n"
n_hole:	.asciz "dma-buffer-outside-ram\n"
n_huge:	.asciz "dma-huge-length\n"
n_wrap:	.asciz "dma-address-wraps\n"
n_write:	.asciz "dma-write-refused\n"
n_unchanged:	.asciz "item-unchanged\n"
n_desc:	.asciz "descriptor-outside-ram\n"
	.balign 16
desc:	.skip 16
buf:	.skip 16

	GUEST_LIB
