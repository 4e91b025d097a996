/*
 * Prints "spinning" on COM1, then busy-loops forever: only the VMM (a
 * signal) can end it.
 */
	.code32
	.text
	.globl main
main:
	mov $msg, %esi
	call puts
1:	pause
	jmp 1b

	.section .rodata
msg:	.asciz "spinning\n"
