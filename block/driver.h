/*
 * Private interface between block/block.c (argument checks, request set-up,
 * dispatch) and the format drivers (block/raw.c, block/null.c). Only block/
 * includes this file.
 *
 * Threads: open and close run on the main thread; the request ops run in
 * the owner thread of r->loop, which may differ between requests of one
 * image (one IOThread per queue), so per-image state a request op touches
 * is read-only after open or atomic.
 */
#ifndef BLOCK_DRIVER_H
#define BLOCK_DRIVER_H

#include <stdatomic.h>

#include "block/block.h"
#include "core/util.h"

/* What a zeroing request promises about the range afterwards. */
enum block_zero_mode {
	BLOCK_DISCARD,			/* anything until written */
	BLOCK_ZEROES,			/* zeros, still allocated */
	BLOCK_ZEROES_UNMAP,		/* zeros, possibly deallocated */
};

/*
 * A format. block.c has checked the request (inside the image, not empty,
 * aligned, not a write to a readonly image) and filled every field of r
 * that block.h lists (done_bytes 0, bounce NULL). A request op returns 0
 * and later calls r->done exactly once from a loop completion, or returns
 * -errno and never calls it. A probe slot comes with the first format that
 * can be recognised from its contents.
 */
struct block_driver {
	/* Same contract as block_open. */
	int (*open)(const struct block_open_params *p, struct block **out, char *err,
		    size_t errlen);
	int (*readv)(struct block_req *r);
	int (*writev)(struct block_req *r);
	int (*flush)(struct block_req *r);
	/* Discard and write_zeroes. */
	int (*zero_range)(struct block_req *r, enum block_zero_mode mode);
	/* No request in flight. Frees the image. */
	void (*close)(struct block *b);
};

/* Generic header embedded first in each driver's image (container_of). */
struct block {
	const struct block_driver *drv;	/* immutable after open */
	uint64_t size;			/* immutable */
	unsigned align;			/* immutable */
	bool readonly;			/* immutable */
	atomic_bool can_unmap;		/* any thread; drivers may clear it */
};

extern const struct block_driver block_raw_driver;
extern const struct block_driver block_null_driver;

/* Fills the header; for drivers' open. */
void block_init(struct block *b, const struct block_driver *drv, uint64_t size, unsigned align,
		bool readonly, bool can_unmap);

/* A loop completion that ends the request with the loop's result (0 or
 * -errno: flush, fallocate, NOP). */
void block_req_complete(struct loop_io *io, int res);

static inline struct block_req *block_req_of(struct loop_io *io)
{
	return container_of(io, struct block_req, io);
}

#endif
