/*
 * The same tiny guest for kvmtool, which loads a flat binary (lkvm run
 * -k FILE) and starts it in real mode. It writes the marker byte 0xa5 to
 * COM1 (0x3f8), then pulses the reset line through the i8042
 * (port 0x64 <- 0xfe), which ends kvmtool.
 */
	.code16
	.text
	.globl _start
_start:
	movw $0x3f8, %dx
	movb $0xa5, %al
	outb %al, %dx
	movb $0xfe, %al
	outb %al, $0x64
1:	hlt
	jmp 1b
