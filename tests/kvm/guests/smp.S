/*
 * Starts every AP with INIT-SIPI-SIPI through the local APIC ICR and
 * prints the APIC ids that checked in: "CPUS 0 1 2 3" with four vCPUs.
 *
 * The BSP copies the 16-bit trampoline below to TRAMP_ADDR (a page the
 * loader leaves alone, see core/boot.h; the loader itself refuses ELF
 * segments below 1 MiB), reads its APIC id and the vCPU count from CPUID
 * leaf 1 (EBX bits 31:24 and 23:16), broadcasts INIT then two SIPIs with
 * vector TRAMP_ADDR >> 12, and waits (at most 2^33 TSC cycles) until every
 * AP has incremented the trampoline's ap_count. Each AP starts in real
 * mode at TRAMP_ADDR, reads its own APIC id with CPUID, marks seen[id],
 * increments ap_count with a locked add and halts. The BSP then prints
 * every marked id in order and resets.
 */
#include "tiny.h"

#define TRAMP_ADDR 0x10000
/* Where the BSP sees a trampoline symbol once the trampoline is copied. */
#define COPIED(sym) (TRAMP_ADDR + (sym - ap_tramp))

	.text
	.code16
/* Position independent: it addresses its data relative to %cs. */
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
ap_tramp_end:

	.code32
	.globl main
main:
	mov $ap_tramp, %esi
	mov $TRAMP_ADDR, %edi
	mov $(ap_tramp_end - ap_tramp), %ecx
	rep movsb
	mov $1, %eax
	cpuid
	mov %ebx, %edi
	shr $16, %edi
	and $0xff, %edi
	dec %edi			/* APs expected */
	shr $24, %ebx
	movb $1, COPIED(seen)(%ebx)
	orl $0x100, LAPIC_SVR		/* APIC software enable */
	movl $0, LAPIC_ICR_HI
	mov $ICR_INIT_ALL_BUT_SELF, %eax
	call send_ipi
	mov $(ICR_SIPI_ALL_BUT_SELF | (TRAMP_ADDR >> 12)), %eax
	call send_ipi
	call send_ipi
	call deadline_set
1:	cmp %edi, COPIED(ap_count)
	je 2f
	pause
	call deadline_passed
	jb 1b
2:	mov $msg, %esi
	call puts
	xor %ebx, %ebx
3:	cmpb $0, COPIED(seen)(%ebx)
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
