/*
 * Split virtqueues (virtio 1.x, section 2.7) seen from the device: pop a
 * descriptor chain as host iovecs into guest RAM, push it back to the used
 * ring, decide whether the driver wants an interrupt. VIRTIO_RING_F_EVENT_IDX
 * and VIRTIO_RING_F_INDIRECT_DESC are supported.
 *
 * Everything in the rings is guest-controlled and hostile: addresses
 * outside RAM, descriptor loops, chains longer than the queue, nested or
 * misaligned indirect tables, a readable descriptor after a writable one,
 * an avail index that runs more than `size` ahead. virtq_pop reports those
 * as errors (the device then sets NEEDS_RESET); it never reads or writes
 * outside guest RAM and never loops unboundedly.
 *
 * Threads: a virtq is owned by one thread (the IOThread serving the queue)
 * from virtq_init on; no locks. Ring memory is shared with the guest's
 * vCPUs, so indices are read and published with acquire/release order.
 */
#ifndef DEV_VIRTQ_H
#define DEV_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/mem.h"

#define VIRTQ_MAX_SIZE 1024

/* Ring flag bits (virtio 1.x, 2.7.5 - 2.7.8). */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1

/* Where the driver put the rings, and what was negotiated. */
struct virtq_config {
	uint16_t size;			/* a power of two, 1..VIRTQ_MAX_SIZE */
	uint64_t desc, avail, used;	/* guest physical addresses */
	bool event_idx;			/* VIRTIO_RING_F_EVENT_IDX */
	bool indirect;			/* VIRTIO_RING_F_INDIRECT_DESC */
};

struct virtq {
	struct mem_map *mem;
	uint16_t size;
	bool event_idx, indirect;
	/* Host views of the rings, translated once by virtq_init (guest RAM
	 * does not move while the queue runs). */
	volatile uint8_t *desc;		/* struct virtq_desc[size] */
	volatile uint16_t *avail;	/* flags, idx, ring[size], used_event */
	volatile uint8_t *used;		/* flags, idx, elems[size], avail_event */
	uint16_t last_avail;		/* next avail entry to pop */
	uint16_t used_idx;		/* next used entry to fill (published) */
	uint16_t signalled_used;	/* used_idx at the last should_notify */
	bool signalled_valid;		/* signalled_used means something */
	bool kicks_off;			/* virtq_set_kicks(q, false) in force */
};

/* One popped chain: `n_out` device-readable segments, then `n_in`
 * device-writable ones, in iov[] and (guest addresses, for dirty tracking
 * and messages) gpa[]. The arrays are the caller's, max entries each. */
struct virtq_elem {
	uint16_t head;
	unsigned n_out, n_in;
	unsigned max;
	struct iovec *iov;
	uint64_t *gpa;
};

/* Checks cfg (power-of-two size, ring alignment: desc 16, avail 2, used 4)
 * and translates the rings. Returns 0, -EINVAL for a bad size or alignment,
 * -EFAULT when a ring is not inside guest RAM. */
int virtq_init(struct virtq *q, struct mem_map *mem, const struct virtq_config *cfg);

/*
 * Pops the next available chain into e (e->max, e->iov, e->gpa set by the
 * caller). Returns 1 with e filled, 0 when the ring is empty, or for a
 * hostile ring: -EFAULT (an address outside RAM), -ELOOP (a chain longer
 * than the queue, which includes descriptor loops), -EINVAL (bad index,
 * bad indirect table, readable after writable, avail idx too far ahead),
 * -E2BIG (more segments than e->max). After an error the queue is broken:
 * the caller stops using it and asks for a device reset.
 * A zero-length descriptor carries no data: it counts towards the chain
 * length but yields no segment and its address is not checked. Indirect
 * tables need no alignment (the spec sets none). With EVENT_IDX and kicks
 * enabled, an empty pop first publishes avail_event (see virtq_set_kicks),
 * so a caller that pops until 0 never misses a kick. The calling thread
 * must be RCU-registered (mem_translate).
 */
int virtq_pop(struct virtq *q, struct virtq_elem *e);

/* Returns chain `head` to the driver with `len` bytes written into its
 * device-writable segments, and publishes the used index. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t len);

/*
 * After one or more pushes: whether the driver asked to be interrupted
 * (EVENT_IDX: used_event was crossed since the last call, or this is the
 * first call or the used index wrapped all the way round since; otherwise
 * VIRTQ_AVAIL_F_NO_INTERRUPT is clear). A true result counts as sent.
 */
bool virtq_should_notify(struct virtq *q);

/*
 * Asks the driver for (enable) or off kicks: avail_event with EVENT_IDX,
 * else VIRTQ_USED_F_NO_NOTIFY. After enabling, returns true when chains
 * arrived meanwhile (the caller pops again, so no kick is lost).
 */
bool virtq_set_kicks(struct virtq *q, bool enable);

/* True when the driver has made chains available that were not popped. */
bool virtq_has_avail(const struct virtq *q);

#endif
