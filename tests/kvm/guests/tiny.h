/*
 * Shared constants of the tiny test guests (tests/kvm/guests/*.S, run
 * through gcc's preprocessor). The guests enter at the PVH entry: 32-bit
 * protected mode, flat segments, paging and interrupts off.
 */
#ifndef TINY_H
#define TINY_H

#define COM1 0x3f8
#define COM1_LSR 0x3fd
#define LSR_DR 0x01
#define LSR_THRE 0x20

#define ACPI_SLEEP_PORT 0x600
#define ACPI_RESET_PORT 0x601
#define ACPI_S5 ((5 << 2) | 0x20)	/* SLP_TYP 5, SLP_EN */
#define I8042_CMD_PORT 0x64
#define I8042_PULSE_RESET 0xfe

#define LAPIC_SVR 0xfee000f0
#define LAPIC_ICR_LO 0xfee00300
#define LAPIC_ICR_HI 0xfee00310
#define ICR_INIT_ALL_BUT_SELF 0x000c4500	/* shorthand 3, level assert, INIT */
#define ICR_SIPI_ALL_BUT_SELF 0x000c4600	/* | vector: start at vector << 12 */
#define ICR_BUSY 0x1000				/* delivery status */

/* On a PVM host every instruction of these guests is emulated (a few
 * microseconds each), so waits are bounded by the TSC, not by a count:
 * deadline_set and deadline_passed (lib.S) allow 2^32 to 2^33 cycles,
 * about 1 to 4 s on any host. */

#endif
