/*
 * A tiny PVH guest for bench/startup.sh. Its first instruction that reaches
 * the VMM writes the byte 0xa5 to the serial port (COM1, 0x3f8): the VMM
 * copies it to its stdout, where bench/runstat.c notes its arrival (start
 * -> first guest instruction). Then it writes one byte to an I/O port that
 * ends the VMM at once (start -> first instruction -> exit -> teardown).
 *
 * EXIT_PORT selects the port (set by bench/guest/build.sh):
 *   0x601 (default)  our vmm: ACPI reset register, value 1 -> exit status 0
 *   0xf4             QEMU: -device isa-debug-exit,iobase=0xf4 -> status 3
 * Entry: 32-bit protected mode, paging off (the PVH boot ABI), at 0x100000.
 */
#ifndef EXIT_PORT
#define EXIT_PORT 0x601
#endif

	.section .note.Xen, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 4			/* descsz */
	.long 18		/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.long _start

	.text
	.code32
	.globl _start
_start:
	movw $0x3f8, %dx
	movb $0xa5, %al		/* the marker: not text, so no banner holds it */
	outb %al, %dx
	movw $EXIT_PORT, %dx
	movb $1, %al
	outb %al, %dx
1:	hlt			/* not reached when the VMM handles the port */
	jmp 1b
