/*
 * A virtio-pci driver for tests, playing the guest without a VM: the
 * tests, the fuzzer and the benchmark drive our devices through it the way
 * Linux's virtio_pci_modern and virtio_ring do.
 *
 * It finds the function through configuration mechanism #1 on the pio
 * bus, sizes and enables its BARs, walks the virtio vendor capabilities
 * (common, notify, ISR, device, PCI cfg access) and MSI-X, negotiates
 * features with the status dance, sets up split virtqueues in guest RAM
 * (one MSI-X vector per queue, vector 0 for config changes), and moves
 * buffers: chains on the avail ring (direct or indirect), kicks honouring
 * VIRTIO_RING_F_EVENT_IDX or VIRTQ_USED_F_NO_NOTIFY, completions from the
 * used ring. What KVM would do is done through the guest_platform: a kick
 * writes the ioeventfd registered for the doorbell (or, when none is,
 * becomes an MMIO bus write, as a vCPU exit would); an interrupt is the
 * irqfd registered for the vector's message becoming readable.
 *
 * The driver does not check what it is asked to put on the rings: tests
 * hand it hostile chains on purpose.
 *
 * Threads: one thread drives a struct virtio_guest (the "vCPU"); it must
 * be registered with RCU (bus accesses). Devices run on their own threads.
 * Once virtio_guest_start has returned, the queues may instead be driven
 * from several threads at once, one thread per queue (vCPUs each with
 * their own queue): the per-queue calls (add, kick, notify, get,
 * used_idx, wait_used, set_used_event, set_avail_flags, irq_wait for the
 * queue's own vector, the blk_* requests on that queue) and alloc, hva
 * and irq_fd are safe together. Probe, start, reset, destroy and register
 * accesses need the driver to be alone again.
 * Every wait is bounded, so a hung device fails a test instead of hanging it.
 */
#ifndef TESTS_LIB_VIRTIO_GUEST_H
#define TESTS_LIB_VIRTIO_GUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/mem.h"
#include "tests/lib/guest_platform.h"

#define VIRTIO_GUEST_MAX_QUEUES 16
#define VIRTIO_GUEST_INDIRECT_MAX 32	/* descriptors in the driver's indirect tables */
#define VIRTIO_GUEST_TIMEOUT_MS 10000	/* longest wait for anything the device does */
#define VIRTIO_GUEST_CONFIG_VECTOR 0	/* queue q uses vector 1 + q */

/* Descriptor flags and layout (virtio 1.x 2.7.5). */
#define VIRTIO_GUEST_DESC_F_NEXT 1
#define VIRTIO_GUEST_DESC_F_WRITE 2
#define VIRTIO_GUEST_DESC_F_INDIRECT 4
#define VIRTIO_GUEST_AVAIL_F_NO_INTERRUPT 1
#define VIRTIO_GUEST_USED_F_NO_NOTIFY 1

struct virtio_guest_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Common configuration registers (virtio 1.x 4.1.4.3), offsets and widths. */
#define VIRTIO_GUEST_DEVICE_FEATURE_SELECT 0	/* 4 */
#define VIRTIO_GUEST_DEVICE_FEATURE 4		/* 4 */
#define VIRTIO_GUEST_DRIVER_FEATURE_SELECT 8	/* 4 */
#define VIRTIO_GUEST_DRIVER_FEATURE 12		/* 4 */
#define VIRTIO_GUEST_CONFIG_MSIX_VECTOR 16	/* 2 */
#define VIRTIO_GUEST_NUM_QUEUES 18		/* 2 */
#define VIRTIO_GUEST_DEVICE_STATUS 20		/* 1 */
#define VIRTIO_GUEST_CONFIG_GENERATION 21	/* 1 */
#define VIRTIO_GUEST_QUEUE_SELECT 22		/* 2 */
#define VIRTIO_GUEST_QUEUE_SIZE 24		/* 2 */
#define VIRTIO_GUEST_QUEUE_MSIX_VECTOR 26	/* 2 */
#define VIRTIO_GUEST_QUEUE_ENABLE 28		/* 2 */
#define VIRTIO_GUEST_QUEUE_NOTIFY_OFF 30	/* 2 */
#define VIRTIO_GUEST_QUEUE_DESC 32		/* 8 */
#define VIRTIO_GUEST_QUEUE_DRIVER 40		/* 8 */
#define VIRTIO_GUEST_QUEUE_DEVICE 48		/* 8 */
#define VIRTIO_GUEST_COMMON_LEN 56

/* virtio-blk (virtio 1.x 5.2): feature bits, config offsets, requests. */
#define VIRTIO_GUEST_BLK_F_SIZE_MAX 1
#define VIRTIO_GUEST_BLK_F_SEG_MAX 2
#define VIRTIO_GUEST_BLK_F_GEOMETRY 4
#define VIRTIO_GUEST_BLK_F_RO 5
#define VIRTIO_GUEST_BLK_F_BLK_SIZE 6
#define VIRTIO_GUEST_BLK_F_FLUSH 9
#define VIRTIO_GUEST_BLK_F_TOPOLOGY 10
#define VIRTIO_GUEST_BLK_F_CONFIG_WCE 11
#define VIRTIO_GUEST_BLK_F_MQ 12
#define VIRTIO_GUEST_BLK_F_DISCARD 13
#define VIRTIO_GUEST_BLK_F_WRITE_ZEROES 14

#define VIRTIO_GUEST_BLK_CFG_CAPACITY 0			/* 8, in 512-byte sectors */
#define VIRTIO_GUEST_BLK_CFG_SIZE_MAX 8			/* 4 */
#define VIRTIO_GUEST_BLK_CFG_SEG_MAX 12			/* 4 */
#define VIRTIO_GUEST_BLK_CFG_BLK_SIZE 20		/* 4 */
#define VIRTIO_GUEST_BLK_CFG_PHYS_BLOCK_EXP 24		/* 1 */
#define VIRTIO_GUEST_BLK_CFG_MIN_IO_SIZE 26		/* 2 */
#define VIRTIO_GUEST_BLK_CFG_OPT_IO_SIZE 28		/* 4 */
#define VIRTIO_GUEST_BLK_CFG_NUM_QUEUES 34		/* 2 */
#define VIRTIO_GUEST_BLK_CFG_MAX_DISCARD_SECTORS 36	/* 4 */
#define VIRTIO_GUEST_BLK_CFG_MAX_DISCARD_SEG 40		/* 4 */
#define VIRTIO_GUEST_BLK_CFG_DISCARD_ALIGN 44		/* 4 */
#define VIRTIO_GUEST_BLK_CFG_MAX_WZ_SECTORS 48		/* 4 */
#define VIRTIO_GUEST_BLK_CFG_MAX_WZ_SEG 52		/* 4 */
#define VIRTIO_GUEST_BLK_CFG_WZ_MAY_UNMAP 56		/* 1 */

#define VIRTIO_GUEST_BLK_T_IN 0
#define VIRTIO_GUEST_BLK_T_OUT 1
#define VIRTIO_GUEST_BLK_T_FLUSH 4
#define VIRTIO_GUEST_BLK_T_GET_ID 8
#define VIRTIO_GUEST_BLK_T_DISCARD 11
#define VIRTIO_GUEST_BLK_T_WRITE_ZEROES 13
#define VIRTIO_GUEST_BLK_S_OK 0
#define VIRTIO_GUEST_BLK_S_IOERR 1
#define VIRTIO_GUEST_BLK_S_UNSUPP 2
#define VIRTIO_GUEST_BLK_S_NONE 0xff		/* what the driver leaves in the status byte */
#define VIRTIO_GUEST_BLK_ID_BYTES 20
#define VIRTIO_GUEST_BLK_WZ_F_UNMAP 1

/* One buffer: a descriptor's address, length and flags (WRITE: the device
 * writes it; INDIRECT: gpa holds a table the caller built). */
struct virtio_guest_buf {
	uint64_t gpa;
	uint32_t len;
	uint16_t flags;
};

/* The driver's side of one split virtqueue. */
struct virtio_guest_queue {
	uint16_t size;				/* 0: not set up */
	uint64_t desc, avail, used;		/* ring gpas */
	uint64_t indirect;			/* per head: VIRTIO_GUEST_INDIRECT_MAX descs */
	struct virtio_guest_desc *d;		/* host views of the rings */
	uint16_t *a;				/* flags, idx, ring[size], used_event */
	uint8_t *u;				/* flags, idx, {id, len}[size], avail_event */
	uint16_t free_head, num_free;
	uint16_t *next;				/* host copy of the chain links and free list */
	uint16_t *ndesc;			/* per head: 0 free, else descriptors in the chain */
	void **cookie;				/* per head */
	uint16_t avail_idx;			/* entries added (published by kick) */
	uint16_t kicked_idx;			/* avail idx at the last kick */
	uint16_t last_used;
	uint64_t notify;			/* doorbell gpa */
	uint16_t vector;
} __attribute__((aligned(64)));		/* queues driven by different threads share no line */

struct virtio_guest_params {
	struct mem_map *mem;
	struct bus *pio, *mmio;
	struct guest_platform *platform;
	uint64_t heap, heap_size;		/* guest RAM the driver may allocate from */
	uint16_t pci_device;			/* 0: 0x1042, virtio-blk */
};

struct virtio_guest {
	struct mem_map *mem;
	struct bus *pio, *mmio;
	struct guest_platform *platform;
	uint64_t heap, heap_end;
	unsigned slot;				/* PCI device number on bus 0 */
	uint64_t bar[2], bar_size[2];
	uint64_t common, notify, isr, device;	/* register gpas */
	uint32_t notify_mult, device_len;
	unsigned pci_cfg_cap;			/* config offset of the PCI cfg access cap, 0: none */
	unsigned msix_cap, msix_n;
	uint64_t msix_table;			/* gpa */
	uint64_t device_features, features;	/* offered; negotiated */
	unsigned num_queues;			/* set up by virtio_guest_start */
	bool kick_by_exit;			/* tests: always kick with an MMIO write */
	/* What the driver does while it polls the device (reset, used index):
	 * NULL sleeps; a single-threaded stack runs the device's loops. */
	void (*idle)(struct virtio_guest *g);
	unsigned reset_polls;			/* status reads that were not yet 0, last reset */
	struct virtio_guest_queue q[VIRTIO_GUEST_MAX_QUEUES];
	uint64_t ring_mem[VIRTIO_GUEST_MAX_QUEUES];	/* allocated once per queue */
};

/*
 * Finds the function on bus 0, sizes its BARs, enables memory decoding
 * and bus mastering, and reads the capabilities. Returns 0, -ENODEV (no
 * such function), -EINVAL (a capability missing or outside its BAR).
 */
int virtio_guest_probe(struct virtio_guest *g, const struct virtio_guest_params *p);
/* Frees the driver's host memory (guest RAM is the stack's). Reset first. */
void virtio_guest_destroy(struct virtio_guest *g);

/*
 * Resets the device, then ACKNOWLEDGE, DRIVER, offers features & the
 * device's (read in two halves), FEATURES_OK, MSI-X, nq queues of at most
 * qsize entries, DRIVER_OK. Returns 0, -ENOTSUP when the device refused
 * the features (FEATURES_OK did not stick; FAILED is then set), -ERANGE
 * when it has fewer than nq queues, -EIO when it refused a vector or
 * setting, -ETIMEDOUT when the reset did not finish, -ENOMEM (guest heap).
 */
int virtio_guest_start(struct virtio_guest *g, uint64_t features, unsigned nq, uint16_t qsize);

/* Writes status 0 and polls until it reads 0, counting the non-zero reads
 * in reset_polls. Returns 0 or -ETIMEDOUT. */
int virtio_guest_reset(struct virtio_guest *g);

/* Register accesses: common config, device config (len 1, 2, 4 or 8; 8 is
 * two 4-byte reads), PCI config space through 0xcf8/0xcfc, any MMIO gpa. A
 * read nobody answers gives all ones. */
uint64_t virtio_guest_common_read(struct virtio_guest *g, unsigned off, unsigned len);
void virtio_guest_common_write(struct virtio_guest *g, unsigned off, uint64_t val, unsigned len);
uint64_t virtio_guest_config_read(struct virtio_guest *g, unsigned off, unsigned len);
uint32_t virtio_guest_pci_read(struct virtio_guest *g, unsigned off, unsigned len);
void virtio_guest_pci_write(struct virtio_guest *g, unsigned off, uint32_t val, unsigned len);
uint64_t virtio_guest_mmio_read(struct virtio_guest *g, uint64_t gpa, unsigned len);
void virtio_guest_mmio_write(struct virtio_guest *g, uint64_t gpa, uint64_t val, unsigned len);
uint8_t virtio_guest_status(struct virtio_guest *g);

/* Guest RAM: a bump allocator over the heap (0 when exhausted, never
 * freed), and host pointers (NULL outside RAM). */
uint64_t virtio_guest_alloc(struct virtio_guest *g, uint64_t size, uint64_t align);
void *virtio_guest_hva(struct virtio_guest *g, uint64_t gpa, uint64_t len);

/*
 * Puts a chain of n buffers on queue q's avail ring, unpublished until
 * virtio_guest_kick. With indirect, the chain goes into the head's
 * indirect table (n <= VIRTIO_GUEST_INDIRECT_MAX) behind one descriptor.
 * Returns the head, -ENOSPC (not enough free descriptors) or -E2BIG.
 */
int virtio_guest_add(struct virtio_guest *g, unsigned q, const struct virtio_guest_buf *bufs,
		     unsigned n, bool indirect, void *cookie);

/* Publishes the added entries and notifies the device unless it asked
 * not to be. Returns whether it notified. */
bool virtio_guest_kick(struct virtio_guest *g, unsigned q);
/* Notifies unconditionally: the guest's write to the queue's doorbell. */
void virtio_guest_notify(struct virtio_guest *g, unsigned q);

/*
 * Takes the next used entry: 1 with *len and *cookie set, 0 when none,
 * -EIO when the device returned a head that is not in flight. With
 * EVENT_IDX it then asks for an interrupt at the next entry (used_event).
 */
int virtio_guest_get(struct virtio_guest *g, unsigned q, uint32_t *len, void **cookie);
/* The device's used index (acquire). */
uint16_t virtio_guest_used_idx(struct virtio_guest *g, unsigned q);
/* Polls until queue q's used index reaches idx. 0 or -ETIMEDOUT. */
int virtio_guest_wait_used(struct virtio_guest *g, unsigned q, uint16_t idx, int timeout_ms);
/* Sets used_event (EVENT_IDX) or the avail flags of queue q. */
void virtio_guest_set_used_event(struct virtio_guest *g, unsigned q, uint16_t idx);
void virtio_guest_set_avail_flags(struct virtio_guest *g, unsigned q, uint16_t flags);

/*
 * Waits up to timeout_ms for MSI-X vector `vector` (VIRTIO_GUEST_CONFIG_VECTOR,
 * or 1 + queue) and returns how many interrupts arrived since the last
 * call (0 on timeout; timeout 0 just looks), or -ENOENT when no irqfd
 * delivers that vector's message.
 */
int virtio_guest_irq_wait(struct virtio_guest *g, unsigned vector, int timeout_ms);
/* The eventfd that delivers `vector` (for poll over several), or -1. */
int virtio_guest_irq_fd(struct virtio_guest *g, unsigned vector);

/*
 * A virtio-blk request in guest RAM: header at hdr, status byte at hdr + 16
 * (allocated on first submit), data segments in between.
 */
struct virtio_guest_blk_req {
	uint32_t type;
	uint64_t sector;
	unsigned n;
	struct virtio_guest_buf data[VIRTIO_GUEST_INDIRECT_MAX - 2];
	uint64_t hdr;
	uint32_t used_len;			/* set by virtio_guest_blk_run */
};

/* Appends a data segment, writable for IN and GET_ID. */
void virtio_guest_blk_data(struct virtio_guest_blk_req *r, uint64_t gpa, uint32_t len);
/* Writes the header and status VIRTIO_GUEST_BLK_S_NONE and adds the chain
 * (header, data, status). Returns the head or -errno as virtio_guest_add. */
int virtio_guest_blk_submit(struct virtio_guest *g, unsigned q, struct virtio_guest_blk_req *r,
			    bool indirect, void *cookie);
/* The status byte the device wrote (VIRTIO_GUEST_BLK_S_NONE: none). */
uint8_t virtio_guest_blk_status(struct virtio_guest *g, const struct virtio_guest_blk_req *r);
/* Submits r alone on an idle queue, kicks and waits for its completion by
 * interrupt. Returns the status byte, -ETIMEDOUT, or -EIO when another
 * chain completed. */
int virtio_guest_blk_run(struct virtio_guest *g, unsigned q, struct virtio_guest_blk_req *r,
			 bool indirect);

#endif
