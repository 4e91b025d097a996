/*
 * PVH boot: an ELF vmlinux entered in 32-bit protected mode at the address
 * its Xen PHYS32_ENTRY note gives, with %ebx pointing at a start_info
 * structure. Pure code on buffers; no KVM calls.
 */
#ifndef CORE_PVH_H
#define CORE_PVH_H

#include <stddef.h>
#include <stdint.h>

#include "core/handoff.h"

struct mem_map;

struct pvh_info {
	uint32_t entry;			/* 32-bit physical entry point */
	uint64_t load_end;		/* end of the highest PT_LOAD segment */
};

/* True if the buffer starts like an ELF file. */
int pvh_is_elf(const uint8_t *img, size_t len);

/* Validates an x86_64 ELF executable with in-file, in-range PT_LOAD
 * segments and finds its PVH entry note. Returns 0, or -EINVAL with a
 * reason in err. */
int pvh_parse(const uint8_t *img, size_t len, struct pvh_info *info, char *err, size_t errlen);

/* Copies the PT_LOAD segments to their physical addresses and zeroes their
 * bss. The image must have passed pvh_parse. Returns 0 or -EFAULT. */
int pvh_load(const uint8_t *img, struct mem_map *mem);

/* Writes start_info, then the module list and memory map, into buf, which
 * the guest sees at buf_gpa. Returns bytes used or -ENOSPC. */
int pvh_fill_start_info(uint8_t *buf, size_t size, uint64_t buf_gpa, const struct boot_handoff *b);

#endif
