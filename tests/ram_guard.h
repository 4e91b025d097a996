/*
 * Test helper: guest RAM (one region, below the PCI hole) with PROT_NONE
 * guard pages right before and after its host mapping, so that code under
 * test that reaches outside guest RAM crashes (with or without ASan, which
 * does not watch mmap'd memory) instead of quietly using a neighbouring
 * mapping.
 *
 * mem_init places the mapping itself, so the helper first reserves RAM
 * plus two pages, frees the middle and lets mem_init take that hole (the
 * kernel hands out the highest free gap that fits, which is the hole). If
 * the mapping lands elsewhere, it guards whichever neighbouring pages are
 * free and says which side stays unguarded. Setup code, single-threaded;
 * the guard pages stay for the life of the process.
 */
#ifndef TESTS_RAM_GUARD_H
#define TESTS_RAM_GUARD_H

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>

#include "core/mem.h"

#define RAM_GUARD_PAGE 4096

static int ram_guard_region(const struct mem_region *r, void *arg)
{
	uint8_t *at[2] = { r->hva - RAM_GUARD_PAGE, r->hva + r->size };
	uint8_t *hole = arg;

	if (r->hva == hole)
		return 0;
	for (unsigned i = 0; i < 2; i++) {
		void *p = mmap(at[i], RAM_GUARD_PAGE, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

		if (p != at[i])
			printf("note: no guard page at %p (address in use)\n", (void *)at[i]);
		/* Kernels before 4.17 take the address as a hint only. */
		if (p != MAP_FAILED && p != at[i])
			munmap(p, RAM_GUARD_PAGE);
	}
	return 0;
}

/* mem_init(m, size) with guard pages; returns what mem_init returns. */
static inline int ram_guard_init(struct mem_map *m, uint64_t size)
{
	uint8_t *r = mmap(NULL, size + 2 * RAM_GUARD_PAGE, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int ret;

	if (r == MAP_FAILED)
		r = NULL;
	else
		munmap(r + RAM_GUARD_PAGE, size);
	ret = mem_init(m, size);
	if (!ret)
		mem_for_each(m, ram_guard_region, r ? r + RAM_GUARD_PAGE : NULL);
	return ret;
}

#endif
