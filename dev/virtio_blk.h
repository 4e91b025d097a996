/*
 * virtio-blk (virtio 1.x section 5.2): multiqueue, each queue served by one
 * IOThread's event loop, requests submitted to a block backend (block/) on
 * that loop's io_uring, guest buffers used in place.
 *
 * Threads: created and destroyed on the main thread; the transport calls
 * its ops on vCPU threads; each queue's state (ring, requests, counters) is
 * owned by its IOThread from start to reset.
 */
#ifndef DEV_VIRTIO_BLK_H
#define DEV_VIRTIO_BLK_H

#include <stdint.h>

#include "block/block.h"
#include "core/config.h"
#include "core/loop.h"
#include "core/mem.h"
#include "dev/virtio.h"

struct virtio_blk;

struct virtio_blk_params {
	const struct disk_config *cfg;	/* readonly, num_queues, queue_size, serial */
	struct block *blk;		/* opened by the caller, outlives the device */
	struct mem_map *mem;
	struct loop **loops;		/* cfg->num_queues loops: queue i is served by loops[i] */
};

/* Per-queue counters, readable from any thread (relaxed). */
struct virtio_blk_stats {
	uint64_t requests;		/* completed, any type */
	uint64_t read_bytes, write_bytes;
	uint64_t errors;		/* VIRTIO_BLK_S_IOERR and UNSUPP answered */
	uint64_t kicks;			/* notifications handled */
	uint64_t interrupts;		/* notifications sent */
};

int virtio_blk_create(struct virtio_blk **out, const struct virtio_blk_params *p);
/* The device must be stopped (never started, or reset). */
void virtio_blk_destroy(struct virtio_blk *b);
struct virtio_dev *virtio_blk_dev(struct virtio_blk *b);
/* Copies queue q's counters. Any thread. */
void virtio_blk_stats(struct virtio_blk *b, unsigned q, struct virtio_blk_stats *out);

#endif
