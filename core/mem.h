/*
 * Guest physical memory: RAM regions backed by anonymous host mappings.
 *
 * The region list is an immutable snapshot published with RCU, so device
 * threads translate guest addresses without locks (mem_translate). It is
 * published once at setup; memory hot-plug would publish a new snapshot and
 * free the old one after a grace period. Guest RAM below
 * 4 GiB stops at MEM_PCI_HOLE_START; the rest is placed above 4 GiB.
 */
#ifndef CORE_MEM_H
#define CORE_MEM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEM_PCI_HOLE_START 0xC0000000ULL
#define MEM_4G 0x100000000ULL
/* PCI ECAM (MMCONFIG) for bus 0 only: 32 slots x 8 functions x 4 KiB. The
 * hole below it, [MEM_PCI_HOLE_START, MEM_PCI_ECAM_BASE), is the 32-bit BAR
 * window. e820 marks the ECAM reserved and the ACPI MCFG points at it. */
#define MEM_PCI_ECAM_BASE 0xE0000000ULL
#define MEM_PCI_ECAM_SIZE 0x100000ULL

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
	unsigned slot;		/* KVM memory slot */
};

struct mem_snapshot;

struct mem_map {
	struct mem_snapshot *_Atomic snap;	/* RCU-published */
	atomic_bool dirty_on;			/* mem_dirty_log */
};

/* Splits `size` bytes of RAM around the PCI hole into regions, maps them and
 * publishes the snapshot. Returns 0, -EINVAL or -ENOMEM. No KVM calls. */
int mem_init(struct mem_map *m, uint64_t size);
/* Unmaps everything; no reader may be running. */
void mem_destroy(struct mem_map *m);

/* Calls fn for each region of the current snapshot (setup code: KVM slot
 * registration, e820). Stops at and returns the first non-zero result. */
int mem_for_each(struct mem_map *m, int (*fn)(const struct mem_region *r, void *arg), void *arg);

/* Host pointer for [gpa, gpa+len) if it lies inside one RAM region, else
 * NULL. The pointer stays valid while the caller is in an RCU read section
 * (and for RAM that is never unplugged, for the VM's lifetime). */
void *mem_translate(struct mem_map *m, uint64_t gpa, uint64_t len);

/* Copies in/out of guest RAM; -EFAULT if the range is not inside RAM. */
int mem_write(struct mem_map *m, uint64_t gpa, const void *src, size_t len);
int mem_read(struct mem_map *m, uint64_t gpa, void *dst, size_t len);

/*
 * Dirty tracking for live migration. Device writes to guest RAM (virtio
 * DMA) are marked in an atomic bitmap per region, one bit per 4 KiB page;
 * vCPU writes come from KVM's own dirty log. Marking is lock-free, from
 * any thread, and costs one relaxed load when logging is off.
 */
#define MEM_DIRTY_PAGE 4096ULL

/* Starts or stops logging (clears the bitmaps on start). Any thread.
 * Marks that begin after a start returns are recorded; one racing with it
 * may be missed, so migration copies all RAM after starting the log. */
void mem_dirty_log(struct mem_map *m, bool on);
/* Marks [gpa, gpa+len) written by a device, after the write. Any
 * RCU-registered thread; the parts of the range outside RAM are ignored. */
void mem_dirty_mark(struct mem_map *m, uint64_t gpa, uint64_t len);
/* Copies and clears the dirty bits of the region holding gpa, one bit per
 * page from the region's start, into bits (region size / 4 KiB bits,
 * rounded up to whole unsigned longs).
 * Returns the number of pages in the region, or -EINVAL. Any thread;
 * concurrent marks land either in this copy or the next one. */
long mem_dirty_fetch(struct mem_map *m, uint64_t region_gpa, unsigned long *bits);

/* How much of `size` bytes of RAM lies below 4 GiB: everything up to
 * MEM_PCI_HOLE_START. Pure; the loader plans with it before a map exists. */
uint64_t mem_low_size(uint64_t size);

#endif
