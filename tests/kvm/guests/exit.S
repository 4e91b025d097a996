/*
 * Prints a known line on COM1, then ends the VM through EXIT, a lib.S
 * routine chosen at build time (-DEXIT=acpi_reset, acpi_poweroff,
 * i8042_reset or triple_fault).
 */
	.code32
	.text
	.globl main
main:
	mov $msg, %esi
	call puts
	jmp EXIT

	.section .rodata
msg:	.asciz "tiny guest: serial ok\n"
