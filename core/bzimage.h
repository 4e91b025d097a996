/*
 * Linux x86 boot protocol: bzImage header checks and the zero page
 * (struct boot_params). Pure code on buffers; no KVM calls.
 */
#ifndef CORE_BZIMAGE_H
#define CORE_BZIMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/handoff.h"

#define BZIMAGE_ZERO_PAGE_SIZE 4096

/* What the loader needs from a kernel's setup header. */
struct bzimage_info {
	size_t setup_size;		/* bytes before the protected-mode code */
	uint16_t version;		/* boot protocol, e.g. 0x020f */
	uint64_t pref_address;		/* where the kernel runs */
	uint32_t init_size;		/* bytes it needs from there while booting */
	uint32_t initrd_addr_max;	/* highest byte an initrd may use */
	uint32_t cmdline_size;		/* longest command line, without NUL */
};

/* Checks magic, boot protocol (2.12+, 64-bit entry) and sizes. Returns 0,
 * or -EINVAL with a reason in err. */
int bzimage_parse(const uint8_t *img, size_t len, struct bzimage_info *info,
		  char *err, size_t errlen);

/* Fills the zero page `zp` (BZIMAGE_ZERO_PAGE_SIZE bytes) for the image.
 * Returns 0, or -EINVAL for more e820 entries than the zero page holds or a
 * command line or initrd above 4 GiB (its fields are 32-bit). */
int bzimage_fill_zero_page(uint8_t *zp, const uint8_t *img, const struct boot_handoff *b);

#endif
