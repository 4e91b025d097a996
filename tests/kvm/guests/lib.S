/*
 * Runtime of the tiny test guests: the PVH entry (a stack, then main),
 * polled COM1 output and input as a real driver does it, and the ways a
 * guest ends the VM. Every routine preserves the registers it does not
 * return in.
 */
#include "tiny.h"

	.code32
	.text
	.globl _start
_start:
	cli
	mov $stack_top, %esp
	call main
	jmp triple_fault		/* main does not return */

/* putc: writes %al to THR once LSR says the transmitter is empty; a
 * transmitter that never empties ends the guest with a triple fault. */
	.globl putc
putc:
	push %ebp
	push %edx
	push %eax
	call deadline_set
	mov $COM1_LSR, %dx
1:	in %dx, %al
	test $LSR_THRE, %al
	jnz 2f
	call deadline_passed
	jae triple_fault
	pause
	jmp 1b
2:	pop %eax
	mov $COM1, %dx
	out %al, %dx
	pop %edx
	pop %ebp
	ret

/* deadline_set: %ebp = the TSC's high half plus 2, so the deadline is
 * 2^32 to 2^33 cycles away. */
	.globl deadline_set
deadline_set:
	push %eax
	push %edx
	rdtsc
	lea 2(%edx), %ebp
	pop %edx
	pop %eax
	ret

/* deadline_passed: compares the TSC's high half with %ebp; CF clear (jae)
 * once the deadline set by deadline_set has passed. */
	.globl deadline_passed
deadline_passed:
	push %eax
	push %edx
	rdtsc
	cmp %ebp, %edx
	pop %edx
	pop %eax
	ret

/* puts: writes the NUL-terminated string at %esi. */
	.globl puts
puts:
	push %esi
	push %eax
1:	lodsb
	test %al, %al
	jz 2f
	call putc
	jmp 1b
2:	pop %eax
	pop %esi
	ret

/* put_dec: writes %eax in decimal. */
	.globl put_dec
put_dec:
	push %eax
	push %ecx
	push %edx
	push %ebx
	mov $10, %ebx
	xor %ecx, %ecx
1:	xor %edx, %edx
	div %ebx
	push %edx
	inc %ecx
	test %eax, %eax
	jnz 1b
2:	pop %eax
	add $'0', %al
	call putc
	loop 2b
	pop %ebx
	pop %edx
	pop %ecx
	pop %eax
	ret

/* getc: waits (without bound: input comes when the host sends it) until
 * LSR has data, then returns the byte in %al. */
	.globl getc
getc:
	push %edx
	mov $COM1_LSR, %dx
1:	in %dx, %al
	test $LSR_DR, %al
	jnz 2f
	pause
	jmp 1b
2:	mov $COM1, %dx
	in %dx, %al
	pop %edx
	ret

/* The exits. Each writes its register, then waits for the VMM to stop the
 * vCPU; if the write was ignored, the wait runs out and the guest triple
 * faults, so a broken exit path fails fast instead of hanging. */
	.globl acpi_reset
acpi_reset:
	mov $ACPI_RESET_PORT, %dx
	mov $1, %al
	out %al, %dx
	jmp exit_ignored

	.globl acpi_poweroff
acpi_poweroff:
	mov $ACPI_SLEEP_PORT, %dx
	mov $ACPI_S5, %al
	out %al, %dx
	jmp exit_ignored

	.globl i8042_reset
i8042_reset:
	mov $I8042_CMD_PORT, %dx
	mov $I8042_PULSE_RESET, %al
	out %al, %dx
	jmp exit_ignored

exit_ignored:
	call deadline_set
1:	pause
	call deadline_passed
	jb 1b
	/* fall through */

/* triple_fault: with an empty IDT, ud2's #UD cannot be delivered (#GP),
 * nor can that (#DF), so the CPU shuts down. (Not int3: on PVM hosts KVM
 * emulates software interrupts and fails with an internal error.) */
	.globl triple_fault
triple_fault:
	lidt null_idt
	ud2
1:	hlt
	jmp 1b

	.section .rodata
	.p2align 2
null_idt:
	.word 0
	.long 0

	.bss
	.p2align 4
	.space 4096
stack_top:

	.section .note.Xen, "a"
	.p2align 2
	.long 4, 4, 18			/* name size, desc size, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long _start
