/* mbr.bin: a 512-byte boot sector for firmware-boot tests. The firmware
 * loads it from the first disk to 0x7C00 and jumps to it in real mode; it
 * prints a marker through the BIOS video service (int 10h, which SeaBIOS
 * sends to the serial port: etc/sercon-port) and, if the byte at offset
 * POWEROFF_FLAG is set, powers off through the ACPI PM1 control port, or
 * with RESET_FLAG set too resets through port 0xCF9 (as an installer's
 * reboot); otherwise it halts (a test resets it and sees the marker
 * again). */
	.code16
	.intel_syntax noprefix
#define POWEROFF_FLAG 0x1B0
#define RESET_FLAG 0x1B1

	.text
	.globl _start
_start:
	cli
	xor ax, ax
	mov ds, ax
	mov es, ax
	mov ss, ax
	mov sp, 0x7C00
	sti
	mov si, 0x7C00 + msg - _start
1:	lodsb
	test al, al
	jz 2f
	mov ah, 0x0E
	mov bx, 7
	int 0x10
	jmp 1b
2:	cmp byte ptr [0x7C00 + POWEROFF_FLAG], 0
	je 3f
	mov cx, 4            /* four timer ticks: SeaBIOS's serial console */
4:	sti                  /* sends what it buffered on the ticks */
	hlt
	loop 4b
	cmp byte ptr [0x7C00 + RESET_FLAG], 0
	jne 5f
	mov dx, 0x604
	mov ax, 0x2000
	out dx, ax
3:	hlt
	jmp 3b
5:	mov dx, 0xCF9        /* system and CPU reset */
	mov al, 0x06
	out dx, al
	jmp 3b
msg:	.asciz "kvz-fw-mbr: booted\r\n"
	.org POWEROFF_FLAG
	.byte 0
	.byte 0              /* RESET_FLAG */
	.org 510
	.byte 0x55, 0xAA
