/*
 * Prints "ready", then echoes every byte read from COM1 (polling LSR.DR)
 * back to COM1; after a newline it resets through the ACPI reset register.
 */
	.code32
	.text
	.globl main
main:
	mov $msg, %esi
	call puts
1:	call getc
	call putc
	cmp $'\n', %al
	jne 1b
	jmp acpi_reset

	.section .rodata
msg:	.asciz "ready\n"
