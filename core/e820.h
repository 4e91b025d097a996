/*
 * The guest's physical memory map (e820 types), shared by the bzImage zero
 * page and the PVH start_info. Pure code.
 */
#ifndef CORE_E820_H
#define CORE_E820_H

#include <stdint.h>

#define E820_RAM 1
#define E820_RESERVED 2

/* Legacy areas kept out of RAM: the EBDA below 640K and the BIOS area
 * (where the ACPI tables live) from 0xE0000 to 1 MiB. */
#define E820_EBDA_START 0x9fc00ULL
#define E820_BIOS_START 0xe0000ULL
#define E820_HIGH_START 0x100000ULL

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

/* Fills out[] for RAM [0, low_end) and [4 GiB, 4 GiB + high_size), with the
 * legacy areas and the PCI ECAM (MEM_PCI_ECAM_BASE) reserved. Returns the
 * number of entries (at most 6), -ENOSPC if max is too small, or -EINVAL
 * unless 1 MiB < low_end <= MEM_PCI_HOLE_START. */
int e820_build(uint64_t low_end, uint64_t high_size, struct e820_entry *out, unsigned max);

#endif
