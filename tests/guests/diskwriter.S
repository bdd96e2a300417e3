/* diskwriter.elf: for tests of migration without shared storage. Drives
 * the first virtio-blk disk (modern virtio-pci, polled, no interrupts):
 * write number n (from 1) fills sector n % NSECT with the qword n, forever,
 * and every 1024 writes it prints "w=<16 hex digits>\n". A migrated guest
 * continues its count, so the disk always holds a contiguous run of
 * stamps. Assumes kvz-vmm's virtio-pci layout (BAR0: common config at 0,
 * notify at 0x3000 with a multiplier of 4): a test guest, not a driver.
 * Prints "NODISK\n" or "IOERR\n" and halts when something is wrong. Other
 * vCPUs halt. */
#include "guest.h"

#define NSECT 8192              /* sectors written: the first 4 MiB */
#define QSIZE 8
#define PCI_ADDR 0xCF8
#define PCI_DATA 0xCFC
#define BLK_ID 0x10421af4       /* virtio 1.0 block device, vendor 0x1af4 */
/* common configuration (virtio 1.0, 4.1.4.3) */
#define C_DFSEL 0x00
#define C_DF 0x04
#define C_GFSEL 0x08
#define C_GF 0x0c
#define C_STATUS 0x14
#define C_QSEL 0x16
#define C_QSIZE 0x18
#define C_QENABLE 0x1c
#define C_QDESC 0x20
#define C_QAVAIL 0x28
#define C_QUSED 0x30
#define NOTIFY 0x3000

	VCPU0_ENTRY banner
	call find_disk
	test rax, rax
	jz nodisk
	mov r12, rax                    /* r12 = BAR0 */
	call setup_queue
	mov r13, 1                      /* r13 = n */
	xor r14d, r14d                  /* r14 = avail idx */
loop:
	call fill
	call submit
	test r13, 1023
	jnz 1f
	PUTS prefix
	mov rax, r13
	call puthex
	PUTS nl
1:	inc r13
	jmp loop

/* rax := BAR0 of the first virtio-blk function on bus 0 (memory decoding
 * switched on), or 0. */
find_disk:
	xor ebx, ebx                    /* device number */
1:	mov eax, ebx
	shl eax, 11
	or eax, 0x80000000
	mov dx, PCI_ADDR
	out dx, eax
	mov dx, PCI_DATA
	in eax, dx
	cmp eax, BLK_ID
	je 2f
	inc ebx
	cmp ebx, 32
	jb 1b
	xor eax, eax
	ret
2:	mov eax, ebx                    /* command: memory space + bus master */
	shl eax, 11
	or eax, 0x80000004
	mov dx, PCI_ADDR
	out dx, eax
	mov dx, PCI_DATA
	mov ax, 6
	out dx, ax
	mov eax, ebx
	shl eax, 11
	or eax, 0x80000010
	mov dx, PCI_ADDR
	out dx, eax
	mov dx, PCI_DATA
	in eax, dx
	and eax, 0xfffffff0
	ret

/* Reset, features (VERSION_1 only), queue 0 of QSIZE entries, DRIVER_OK. */
setup_queue:
	mov byte ptr [r12 + C_STATUS], 0
	mov byte ptr [r12 + C_STATUS], 3            /* ACKNOWLEDGE | DRIVER */
	mov dword ptr [r12 + C_GFSEL], 0
	mov dword ptr [r12 + C_GF], 0
	mov dword ptr [r12 + C_GFSEL], 1
	mov dword ptr [r12 + C_GF], 1               /* VIRTIO_F_VERSION_1 */
	mov byte ptr [r12 + C_STATUS], 11           /* | FEATURES_OK */
	mov word ptr [r12 + C_QSEL], 0
	mov word ptr [r12 + C_QSIZE], QSIZE
	lea rax, [rip + desc]
	mov [r12 + C_QDESC], eax
	mov dword ptr [r12 + C_QDESC + 4], 0
	lea rax, [rip + avail]
	mov [r12 + C_QAVAIL], eax
	mov dword ptr [r12 + C_QAVAIL + 4], 0
	lea rax, [rip + used]
	mov [r12 + C_QUSED], eax
	mov dword ptr [r12 + C_QUSED + 4], 0
	mov word ptr [r12 + C_QENABLE], 1
	mov byte ptr [r12 + C_STATUS], 15           /* | DRIVER_OK */
	/* The request's three descriptors, the same every time. */
	lea rdi, [rip + desc]
	lea rax, [rip + hdr]
	mov [rdi], rax
	mov dword ptr [rdi + 8], 16
	mov word ptr [rdi + 12], 1                  /* NEXT */
	mov word ptr [rdi + 14], 1
	lea rax, [rip + sector]
	mov [rdi + 16], rax
	mov dword ptr [rdi + 24], 512
	mov word ptr [rdi + 28], 1
	mov word ptr [rdi + 30], 2
	lea rax, [rip + status]
	mov [rdi + 32], rax
	mov dword ptr [rdi + 40], 1
	mov word ptr [rdi + 44], 2                  /* WRITE (device writes) */
	mov word ptr [rip + avail], 1               /* NO_INTERRUPT */
	ret

/* The header and the sector for write r13. */
fill:
	mov dword ptr [rip + hdr], 1                /* VIRTIO_BLK_T_OUT */
	mov rax, r13
	xor edx, edx
	mov ecx, NSECT
	div rcx
	mov [rip + hdr + 8], rdx
	lea rdi, [rip + sector]
	mov rax, r13
	mov ecx, 64
	rep stosq
	ret

/* Hands descriptor chain 0 to the device and waits for it. */
submit:
	mov byte ptr [rip + status], 0xff
	mov eax, r14d
	and eax, QSIZE - 1
	lea rdi, [rip + avail]
	mov word ptr [rdi + 4 + rax * 2], 0
	inc r14d
	mfence
	mov [rdi + 2], r14w
	mfence
	mov word ptr [r12 + NOTIFY], 0
1:	pause
	movzx eax, word ptr [rip + used + 2]
	cmp ax, r14w
	jne 1b
	cmp byte ptr [rip + status], 0
	jne ioerr
	ret

nodisk:
	PUTS nodisk_msg
	jmp park
ioerr:
	PUTS ioerr_msg
	jmp park

	.data
banner:	.asciz "kvz-test-guest: diskwriter\n"
prefix:	.asciz "w="
nl:	.asciz "\n"
nodisk_msg:	.asciz "NODISK\n"
ioerr_msg:	.asciz "IOERR\n"

	.bss
	.balign 4096
desc:	.skip 16 * QSIZE
	.balign 4096
avail:	.skip 6 + 2 * QSIZE
	.balign 4096
used:	.skip 6 + 8 * QSIZE
	.balign 16
hdr:	.skip 16
status:	.skip 16
	.balign 512
sector:	.skip 512

	GUEST_LIB
