/*
 * Starts every AP with INIT-SIPI-SIPI through the local APIC ICR and
 * prints the APIC ids that checked in: "CPUS 0 1 2 3" with four vCPUs.
 *
 * The BSP reads its APIC id and the vCPU count from CPUID leaf 1 (EBX
 * bits 31:24 and 23:16), broadcasts INIT then two SIPIs with vector 0x10,
 * and waits (at most 2^33 TSC cycles) until every AP has incremented ap_count. Each AP
 * starts in real mode at 0x1000:0 (the trampoline below), reads its own
 * APIC id with CPUID, marks seen[id], increments ap_count with a locked
 * add and halts. The BSP then prints every marked id in order and resets.
 */
#include "tiny.h"

	.section .tramp, "ax"
	.code16
ap_tramp:
	cli
	mov %cs, %ax
	mov %ax, %ds
	mov $1, %eax
	cpuid
	shr $24, %ebx
	movb $1, (seen - ap_tramp)(%bx)
	lock incl (ap_count - ap_tramp)
1:	hlt
	jmp 1b

	.p2align 2
ap_count:
	.long 0
seen:
	.fill 256, 1, 0

	.code32
	.text
	.globl main
main:
	mov $1, %eax
	cpuid
	mov %ebx, %edi
	shr $16, %edi
	and $0xff, %edi
	dec %edi			/* APs expected */
	shr $24, %ebx
	movb $1, seen(%ebx)
	orl $0x100, LAPIC_SVR		/* APIC software enable */
	movl $0, LAPIC_ICR_HI
	mov $ICR_INIT_ALL_BUT_SELF, %eax
	call send_ipi
	mov $(ICR_SIPI_ALL_BUT_SELF | (0x10000 >> 12)), %eax
	call send_ipi
	call send_ipi
	call deadline_set
1:	cmp %edi, ap_count
	je 2f
	pause
	call deadline_passed
	jb 1b
2:	mov $msg, %esi
	call puts
	xor %ebx, %ebx
3:	cmpb $0, seen(%ebx)
	je 4f
	mov $' ', %al
	call putc
	mov %ebx, %eax
	call put_dec
4:	inc %ebx
	cmp $256, %ebx
	jne 3b
	mov $'\n', %al
	call putc
	jmp acpi_reset

/* send_ipi: writes %eax to ICR low, then waits (bounded) for delivery. */
send_ipi:
	push %ebp
	mov %eax, LAPIC_ICR_LO
	call deadline_set
1:	testl $ICR_BUSY, LAPIC_ICR_LO
	jz 2f
	pause
	call deadline_passed
	jb 1b
2:	pop %ebp
	ret

	.section .rodata
msg:	.asciz "CPUS"
