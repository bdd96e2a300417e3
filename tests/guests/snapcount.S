/* snapcount.elf: for snapshot tests. Fills a 64 KiB pattern, then every
 * 2^24 TSC cycles increments a counter in RAM and prints
 * "n=<16 hex digits> ok" (or "BAD" when the pattern changed). A restored
 * guest continues from the saved count without printing its banner again.
 * Other vCPUs halt (their state is saved and restored too). */
#include "guest.h"

#define PATTERN_QWORDS 8192
#define PATTERN_MUL 0x9E3779B97F4A7C15

	VCPU0_ENTRY banner
	lea rdi, [rip + pattern]
	xor ecx, ecx
1:	call pattern_value
	mov [rdi + rcx * 8], rax
	inc rcx
	cmp rcx, PATTERN_QWORDS
	jb 1b
	rdtsc
	shl rdx, 32
	or rax, rdx
	mov rbx, rax
2:	rdtsc
	shl rdx, 32
	or rax, rdx
	sub rax, rbx
	cmp rax, 0x1000000
	jb 2b
	add rbx, rax
	inc qword ptr [rip + counter]
	PUTS prefix
	mov rax, [rip + counter]
	call puthex
	call check
	jmp 2b

/* Prints " ok\n" when the pattern is intact, " BAD\n" otherwise. */
check:
	lea rdi, [rip + pattern]
	xor ecx, ecx
1:	call pattern_value
	cmp [rdi + rcx * 8], rax
	jne 2f
	inc rcx
	cmp rcx, PATTERN_QWORDS
	jb 1b
	PUTS ok
	ret
2:	PUTS bad
	ret

/* rax := the pattern's qword number rcx. */
pattern_value:
	lea rax, [rcx + 1]
	movabs r8, PATTERN_MUL
	imul rax, r8
	ret

	.data
banner:	.asciz "kvz-test-guest: snapcount\n"
prefix:	.asciz "n="
ok:	.asciz " ok\n"
bad:	.asciz " BAD\n"
	.balign 8
counter:	.quad 0

	.bss
	.balign 4096
pattern:	.skip PATTERN_QWORDS * 8

	GUEST_LIB
