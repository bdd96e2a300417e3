/* memstamp.elf: for snapshot tests; needs --memory 1G or more. Stamps a
 * qword (its address times a constant) into every 4 KiB page of
 * [16 MiB, 272 MiB) and into the last qword before every 64 MiB boundary
 * up to 1 GiB (the last one is RAM's last qword), then loops: each step
 * reads the TSC and verifies 16 stamps (a full pass takes a fraction of a
 * second on the software KVM backend), and every 2^24 TSC cycles it prints
 * "n=<count> t=<TSC> g=<largest TSC step since the last line>
 * p=<verified passes>" and " ok" or " BAD" (a stamp was wrong). The
 * largest step is the time the guest did not run (on a KVM that restores
 * the TSC, a snapshot whose TSC was captured late shows its jump there);
 * the printing itself is left out of it. */
#include "guest.h"

#define DENSE_START 0x1000000
#define DENSE_PAGES 0x10000       /* 256 MiB; a multiple of VERIFY_STEP */
#define SPARSE 16                 /* 64 MiB steps up to 1 GiB */
#define VERIFY_STEP 16
#define STAMP_MUL 0x9E3779B97F4A7C15

	VCPU0_ENTRY banner
	movabs r8, STAMP_MUL
	mov rdi, DENSE_START
	mov ecx, DENSE_PAGES
1:	mov rax, rdi
	imul rax, r8
	mov [rdi], rax
	add rdi, 4096
	dec ecx
	jnz 1b
	mov ecx, 1
2:	call sparse_at
	mov [rdi], rax
	inc ecx
	cmp ecx, SPARSE
	jbe 2b
	xor r14, r14                 /* next dense page to verify */
	xor r13, r13                 /* largest TSC step since the last line */
	call tsc
	mov r12, rax                 /* TSC of the previous step */
	mov rbx, rax                 /* TSC of the last line */
3:	call tsc
	mov rdx, rax
	sub rdx, r12
	mov r12, rax
	cmp rdx, r13
	jbe 4f
	mov r13, rdx
4:	call verify_some
	mov rax, r12
	sub rax, rbx
	cmp rax, 0x1000000
	jb 3b
	mov rbx, r12
	inc qword ptr [rip + counter]
	PUTS prefix
	mov rax, [rip + counter]
	call puthex
	PUTS at
	mov rax, rbx
	call puthex
	PUTS gap
	mov rax, r13
	call puthex
	PUTS pass
	mov rax, [rip + passes]
	call puthex
	lea rsi, [rip + ok]
	cmp byte ptr [rip + bad], 0
	je 5f
	lea rsi, [rip + badmsg]
5:	call puts
	xor r13, r13
	call tsc
	mov r12, rax                 /* the printing is not a gap */
	jmp 3b

/* rax := the TSC. */
tsc:
	rdtsc
	shl rdx, 32
	or rax, rdx
	ret

/* rdi := the address of sparse stamp number ecx (1..SPARSE), rax := its
 * value (r8 = STAMP_MUL). */
sparse_at:
	mov edi, ecx
	shl rdi, 26
	sub rdi, 8
	mov rax, rdi
	imul rax, r8
	ret

/* Verifies VERIFY_STEP dense stamps from page r14 on; at the end of the
 * dense ones, the sparse ones too, and a pass is counted. */
verify_some:
	movabs r8, STAMP_MUL
	mov rdi, r14
	shl rdi, 12
	add rdi, DENSE_START
	mov ecx, VERIFY_STEP
1:	mov rax, rdi
	imul rax, r8
	cmp [rdi], rax
	je 2f
	mov byte ptr [rip + bad], 1
2:	add rdi, 4096
	dec ecx
	jnz 1b
	add r14, VERIFY_STEP
	cmp r14, DENSE_PAGES
	jb 5f
	xor r14, r14
	mov ecx, 1
3:	call sparse_at
	cmp [rdi], rax
	je 4f
	mov byte ptr [rip + bad], 1
4:	inc ecx
	cmp ecx, SPARSE
	jbe 3b
	inc qword ptr [rip + passes]
5:	ret

	.data
banner:	.asciz "kvz-test-guest: memstamp\n"
prefix:	.asciz "n="
at:	.asciz " t="
gap:	.asciz " g="
pass:	.asciz " p="
ok:	.asciz " ok\n"
badmsg:	.asciz " BAD\n"
	.balign 8
counter:	.quad 0
passes:	.quad 0
bad:	.byte 0

	GUEST_LIB
