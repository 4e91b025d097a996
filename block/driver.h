/*
 * Private interface between block/block.c (argument checks, request set-up,
 * dispatch, format probing) and the format drivers (block/raw.c,
 * block/null.c, block/qcow2*.c). Only block/ includes this file.
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
 * -errno and never calls it.
 */
struct block_driver {
	/* Whether the first len bytes of a file (len < 512 only for shorter
	 * files) are this format's. NULL for formats that cannot be told from
	 * their contents (raw, the fallback). Pure. */
	bool (*probe)(const uint8_t *head, size_t len);
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
extern const struct block_driver block_qcow2_driver;

/* Bytes block_probe reads from the start of a file. */
#define BLOCK_PROBE_LEN 512

/*
 * The format of the file at path, from its first bytes: the first driver
 * whose probe accepts them, else BLOCK_FORMAT_RAW (also when the file
 * cannot be read: opening it as raw then reports why). Any thread; reads
 * the file synchronously.
 */
enum block_format block_probe(const char *path);

/* Fills the header; for drivers' open. */
void block_init(struct block *b, const struct block_driver *drv, uint64_t size, unsigned align,
		bool readonly, bool can_unmap);

/* Writes one line into err (printf format) and returns ret: for drivers'
 * open errors. */
int block_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A loop completion that ends the request with the loop's result (0 or
 * -errno: flush, fallocate, NOP). */
void block_req_complete(struct loop_io *io, int res);

static inline struct block_req *block_req_of(struct loop_io *io)
{
	return container_of(io, struct block_req, io);
}

#endif
