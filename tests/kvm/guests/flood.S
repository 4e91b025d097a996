/*
 * Prints FLOOD_LINES lines of 64 bytes as fast as the UART takes them, then
 * resets through the ACPI reset register: more than a terminal buffers, so
 * a slow reader makes the vmm's output wait.
 */
#define FLOOD_LINES 2048
	.code32
	.text
	.globl main
main:
	mov $FLOOD_LINES, %ecx
1:	mov $line, %esi
	call puts
	loop 1b
	jmp acpi_reset

	.section .rodata
line:	.asciz "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"
