/*
 * ACPI table builder: RSDP, XSDT, FADT (hardware-reduced), MADT, DSDT, and
 * MCFG when there is a PCI root. Pure code on a caller-provided buffer; no
 * KVM calls, no threads.
 */
#ifndef CORE_ACPI_H
#define CORE_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acpi_params {
	unsigned n_cpus;		/* local APIC ids 0 .. n_cpus-1 */
	uint32_t lapic_addr;		/* 0xfee00000 */
	uint32_t ioapic_addr;		/* 0xfec00000 */
	uint8_t ioapic_id;
	uint16_t sleep_port;		/* sleep control and status register (PIO, 8 bit) */
	uint16_t reset_port;		/* reset register (PIO, 8 bit) */
	uint8_t reset_value;		/* written to reset_port to reset */
	/* A PCI root (dev/pci.h) is present: the DSDT gets the host bridge
	 * \_SB.PCI0 (bus 0, mechanism #1 at 0xcf8, I/O windows around it,
	 * memory window [MEM_PCI_HOLE_START, MEM_PCI_ECAM_BASE)) and a
	 * motherboard device reserving the ECAM; the MCFG points at the ECAM
	 * (MEM_PCI_ECAM_BASE, segment 0, bus 0). */
	bool pci;
};

/* Value of SLP_TYP that the DSDT's \_S5 object gives for soft-off: the
 * guest writes (ACPI_S5_SLP_TYP << 2) | ACPI_SLP_EN to sleep_port. */
#define ACPI_S5_SLP_TYP 5
#define ACPI_SLP_EN 0x20

/* Most CPUs the MADT can describe with xAPIC entries: APIC id and
 * processor UID 0xff mean "all processors". */
#define ACPI_MAX_CPUS 254

/*
 * Writes the tables into buf (size bytes), which the guest sees at guest
 * physical address gpa. The RSDP is at the start of buf (gpa must be
 * 16-byte aligned). Returns the number of bytes used, -EINVAL for bad
 * params (0 CPUs, more than 254), or -ENOSPC if buf is too small.
 * An unaligned gpa or a NULL buf or p is -EINVAL too. Nothing is written
 * on error, and nothing past the returned length.
 *
 * The tables describe hardware-reduced ACPI. sleep_port is both the sleep
 * control and the sleep status register: to power off, Linux first writes
 * WAK_STS (0x80) there, then (ACPI_S5_SLP_TYP << 2) | ACPI_SLP_EN, so the
 * device must act only on writes with ACPI_SLP_EN set. A reset_port of 0
 * leaves RESET_REG out. The MADT routes ISA IRQ0 to GSI 2: the VMM's GSI
 * routing must send the PIT (KVM GSI 0) to I/O APIC pin 2, which is not
 * KVM's default routing.
 */
int acpi_build(void *buf, size_t size, uint64_t gpa, const struct acpi_params *p);

#endif
