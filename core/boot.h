/*
 * Kernel loading: a bzImage (64-bit boot protocol) or an ELF vmlinux with a
 * PVH entry note, plus initrd, command line, e820 map, page tables and GDT,
 * placed in guest RAM. Main thread, before vCPUs start.
 *
 * Guest physical layout below 1 MiB: GDT at BOOT_GDT_ADDR, PVH start_info,
 * the zero page, identity page tables for the first 4 GiB, the command line,
 * and the ACPI tables in the BIOS area. The kernel goes at 1 MiB (bzImage)
 * or its ELF addresses (PVH); the initrd at the top of low RAM.
 */
#ifndef CORE_BOOT_H
#define CORE_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mem_map;
struct vm_config;

#define BOOT_GDT_ADDR 0x500
#define BOOT_START_INFO_ADDR 0x6000
#define BOOT_ZERO_PAGE_ADDR 0x7000
#define BOOT_PML4_ADDR 0x9000		/* then PDPT, then 4 page directories */
#define BOOT_CMDLINE_ADDR 0x20000
#define BOOT_ACPI_ADDR 0xe0000
#define BOOT_ACPI_SIZE 0x20000
#define BOOT_RESET_VECTOR_ADDR 0xffff0
#define BOOT_KERNEL_ADDR 0x100000

/* GDT selectors (the boot protocol's __BOOT_CS/__BOOT_DS for 64-bit). */
#define BOOT_SEL_CODE64 0x10
#define BOOT_SEL_DATA 0x18
#define BOOT_SEL_TSS 0x20
#define BOOT_SEL_CODE32 0x28
#define BOOT_GDT_ENTRIES 6

/* How vCPU 0 starts. */
struct boot_setup {
	bool long_mode;		/* bzImage: 64-bit; PVH: 32-bit protected, no paging */
	uint64_t entry;		/* %rip */
	uint64_t arg;		/* %rsi (zero page) or %rbx (start_info) */
};

/*
 * Reads the config's kernel and initrd and checks that they fit in its
 * memory, without touching KVM: `vmm --check` runs this. Returns 0, or
 * -errno / -EINVAL with a one-line message naming the file or key in err.
 */
int boot_check(const struct vm_config *cfg, char *err, size_t errlen);

/*
 * Writes the firmware reset vector at f000:fff0: 16-bit code that writes
 * `value` to I/O port `port` (the ACPI reset register). Linux in
 * hardware-reduced ACPI mode reboots by jumping there (its BOOT_EFI, then
 * BOOT_BIOS path), as it would into real firmware. Returns 0 or -EFAULT.
 */
int boot_write_reset_vector(struct mem_map *mem, uint16_t port, uint8_t value);

/* Loads everything into mem. rsdp_addr is where the ACPI RSDP is. Returns 0
 * or -errno with the message in err. */
int boot_load(struct mem_map *mem, const struct vm_config *cfg, uint64_t rsdp_addr,
	      struct boot_setup *out, char *err, size_t errlen);

#endif
