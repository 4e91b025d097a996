/*
 * What the loader hands a kernel, whichever entry protocol carries it (the
 * bzImage zero page or the PVH start_info): where the command line, the
 * initrd and the ACPI RSDP are, and the memory map. Pure data.
 */
#ifndef CORE_HANDOFF_H
#define CORE_HANDOFF_H

#include <stdint.h>

#include "core/e820.h"

struct boot_handoff {
	uint64_t cmdline_addr;
	uint64_t initrd_addr, initrd_size;	/* 0 size: none */
	uint64_t rsdp_addr;
	const struct e820_entry *e820;
	unsigned n_e820;
};

#endif
