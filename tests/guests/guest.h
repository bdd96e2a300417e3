/* Shared pieces of the tiny test guests (assembly, Intel syntax). Every
 * vCPU enters _start in 64-bit mode with paging on (identity map of 4 GiB,
 * set up by kvz-vmm), interrupts off, RSP undefined. CPL0 code here runs
 * emulated at ~500 ns per instruction on the software KVM backend: keep it
 * short; loops that must be long run at CPL3. */
	.intel_syntax noprefix

#define COM1 0x3F8
#define POWEROFF_PORT 0x604
#define STACK_SIZE 4096
#define MAX_CPUS 8

/* RSP := the stack of this vCPU (APIC id from CPUID.1:EBX[31:24]); the id
 * is left in r15. Clobbers rax, rbx, rcx, rdx. */
.macro SETUP_STACK
	mov eax, 1
	cpuid
	shr ebx, 24
	mov r15, rbx
	lea rsp, [rip + stacks_top]
	mov rax, rbx
	shl rax, 12
	sub rsp, rax
.endm

/* The entry of a guest that vCPU 0 alone runs: _start, the stack, the
 * other vCPUs halted for good at park (their state is still saved and
 * restored), then vCPU 0 prints the string at banner and goes on after the
 * macro. The guest may jump to park too. */
.macro VCPU0_ENTRY banner
	.section .text.entry
	.globl _start
_start:
	SETUP_STACK
	test r15, r15
	jz 1f
park:
	cli
	hlt
	jmp park
1:	PUTS \banner
.endm

/* Prints the NUL-terminated string at label. */
.macro PUTS label
	lea rsi, [rip + \label]
	call puts
.endm

.macro POWEROFF
	mov dx, POWEROFF_PORT
	mov ax, 0x2000
	out dx, ax
1:	hlt
	jmp 1b
.endm

/* Emits the helper routines and the per-vCPU stacks; once per guest. */
.macro GUEST_LIB
	.text
/* puts: rsi = string. The UART sends at once, no need to poll LSR. */
puts:
	mov dx, COM1
1:	lodsb
	test al, al
	jz 2f
	out dx, al
	jmp 1b
2:	ret

/* puthex: prints rax as 16 hex digits. */
puthex:
	mov rdi, rax
	mov ecx, 16
	mov dx, COM1
1:	rol rdi, 4
	mov eax, edi
	and eax, 0xF
	add eax, '0'
	cmp eax, '9'
	jbe 2f
	add eax, 'a' - '9' - 1
2:	out dx, al
	loop 1b
	ret

/* putdec1: prints the single digit in al. */
putdigit:
	add al, '0'
	mov dx, COM1
	out dx, al
	ret

	.bss
	.balign 4096
stacks:
	.skip STACK_SIZE * MAX_CPUS
stacks_top:
	.text
.endm
