/*
 * A whole virtio-blk stack without a VM, built the way the vmm builds it:
 * guest RAM, the pio and mmio buses, a PCI root on the test platform
 * (guest_platform.h plays KVM), a block backend, one IOThread per
 * configured thread, the virtio-blk device with queue i on IOThread
 * i % n_iothreads, its virtio-pci function; and the test driver
 * (virtio_guest.h) probed on it, ready for virtio_guest_start.
 *
 * Threads: create and destroy on one thread, which must be registered
 * with RCU; afterwards one thread at a time drives s->guest, or one
 * thread per queue (see virtio_guest.h).
 */
#ifndef TESTS_LIB_BLK_STACK_H
#define TESTS_LIB_BLK_STACK_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "core/bus.h"
#include "core/config.h"
#include "core/iothread.h"
#include "core/mem.h"
#include "dev/pci.h"
#include "dev/virtio_blk.h"
#include "dev/virtio_pci.h"
#include "tests/lib/guest_platform.h"
#include "tests/lib/virtio_guest.h"

#define BLK_STACK_RAM (64 * MiB)
#define BLK_STACK_HEAP 0x100000ULL	/* the driver allocates from 1 MiB up */

struct blk_stack_params {
	const char *path;		/* image, or NULL for format = null */
	enum block_format format;	/* the image's format; default raw */
	uint64_t l2_cache;		/* qcow2: bytes of L2 tables cached; 0: default */
	uint64_t null_size;		/* format = null: bytes */
	bool readonly;
	bool direct;			/* cache = none */
	unsigned num_queues;		/* default 1 */
	unsigned queue_size;		/* default 256 */
	unsigned n_iothreads;		/* default 1 */
	const char *serial;		/* default "" */
	uint64_t ram;			/* default BLK_STACK_RAM */
	uint64_t poll_max_ns;		/* the IOThreads' busy-poll window; default 0 */
	bool pin_iothreads;		/* IOThread i on CPU pin_first_cpu + i, */
	unsigned pin_first_cpu;		/* which must be online */
	/* No IOThreads: n_iothreads loops owned by the calling thread, run
	 * by the driver whenever it waits (virtio_guest.idle) or by the
	 * caller with blk_stack_pump. For valgrind, whose 3.19 deadlocks
	 * when a thread blocks in io_uring_enter while another must run. */
	bool inline_loops;
};

struct blk_stack {
	uint64_t ram;			/* guest RAM bytes */
	struct mem_map mem;
	struct bus pio, mmio;
	struct guest_platform platform;
	struct pci_root *root;
	struct disk_config disk;
	struct block *blk;
	unsigned n_iothreads;
	struct iothread *io[CONFIG_MAX_QUEUES];	/* or, inline_loops: */
	struct loop *own[CONFIG_MAX_QUEUES];
	struct loop *loops[CONFIG_MAX_QUEUES];
	struct virtio_blk *vblk;
	struct virtio_pci *vp;
	struct virtio_guest guest;
	char err[256];			/* why create failed, one line */
};

/*
 * Builds the stack. Returns 0, or -errno with the reason in s->err and
 * everything undone; iothread_start's error comes back as is, so
 * loop_unavailable_reason tells whether io_uring is missing here.
 */
int blk_stack_create(struct blk_stack *s, const struct blk_stack_params *p);
/* Resets the device through the driver and tears everything down. */
void blk_stack_destroy(struct blk_stack *s);

/* inline_loops: runs every loop once; blocks in the first one when block
 * (then the caller must know that something will arrive there). */
void blk_stack_pump(struct blk_stack *s, bool block);

#endif
