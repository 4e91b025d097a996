/* e820 map builder (see e820.h). Pure code, any thread. */
#include "core/e820.h"

#include <errno.h>

#include "core/mem.h"

int e820_build(uint64_t low_end, uint64_t high_size, struct e820_entry *out, unsigned max)
{
	const struct e820_entry map[] = {
		{ 0, E820_EBDA_START, E820_RAM },
		{ E820_EBDA_START, 0xa0000 - E820_EBDA_START, E820_RESERVED },
		{ E820_BIOS_START, E820_HIGH_START - E820_BIOS_START, E820_RESERVED },
		{ E820_HIGH_START, low_end - E820_HIGH_START, E820_RAM },
		/* Linux uses the MCFG's ECAM only if e820 (or an ACPI
		 * motherboard device) reserves it. */
		{ MEM_PCI_ECAM_BASE, MEM_PCI_ECAM_SIZE, E820_RESERVED },
		{ MEM_4G, high_size, E820_RAM },
	};
	unsigned n = high_size ? 6 : 5;

	if (low_end <= E820_HIGH_START || low_end > MEM_PCI_HOLE_START)
		return -EINVAL;
	if (n > max)
		return -ENOSPC;
	for (unsigned i = 0; i < n; i++)
		out[i] = map[i];
	return (int)n;
}
