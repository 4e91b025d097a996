/*
 * Block layer front: checks each request against its image (bounds,
 * alignment, readonly), fills the request and hands it to the format's
 * driver through a const ops table (block/driver.h). Model: kvmtool's
 * disk_image_operations, kept to a handful of slots.
 *
 * Threads: block_open/block_close on the main thread; requests in the
 * owner thread of the loop they are submitted on. Nothing here keeps state
 * between calls; a struct block is read-only after open apart from the
 * atomic can_unmap that drivers clear.
 */
#include "block/driver.h"

#include <assert.h>
#include <errno.h>

static const struct block_driver *const block_drivers[] = {
	[BLOCK_FORMAT_RAW] = &block_raw_driver,
	[BLOCK_FORMAT_NULL] = &block_null_driver,
};

void block_init(struct block *b, const struct block_driver *drv, uint64_t size, unsigned align,
		bool readonly, bool can_unmap)
{
	*b = (struct block){ .drv = drv, .size = size, .align = align, .readonly = readonly };
	atomic_init(&b->can_unmap, can_unmap);
}

int block_open(const struct block_open_params *p, struct block **out, char *err, size_t errlen)
{
	assert((unsigned)p->format < ARRAY_SIZE(block_drivers));
	return block_drivers[p->format]->open(p, out, err, errlen);
}

void block_close(struct block *b)
{
	if (b)
		b->drv->close(b);
}

uint64_t block_size(const struct block *b)
{
	return b->size;
}

bool block_readonly(const struct block *b)
{
	return b->readonly;
}

unsigned block_align(const struct block *b)
{
	return b->align;
}

bool block_can_unmap(const struct block *b)
{
	return atomic_load_explicit(&b->can_unmap, memory_order_relaxed);
}

void block_req_complete(struct loop_io *io, int res)
{
	struct block_req *r = block_req_of(io);

	r->done(r, res);
}

/* Fills r for a request on [offset, offset + len); -EINVAL when the image
 * cannot take it as it is. */
static int block_req_prep(struct block *b, struct loop *l, struct block_req *r,
			  struct iovec *iov, unsigned niov, uint64_t offset, uint64_t len,
			  void (*done)(struct block_req *r, int res))
{
	assert(offset <= b->size && len <= b->size - offset);
	if (!len || offset % b->align || len % b->align)
		return -EINVAL;
	*r = (struct block_req){ .done = done, .blk = b, .loop = l, .iov = iov, .niov = niov,
				 .offset = offset, .len = len };
	return 0;
}

static uint64_t block_iov_len(const struct iovec *iov, unsigned niov)
{
	uint64_t len = 0;
	unsigned i;

	for (i = 0; i < niov; i++)
		len += iov[i].iov_len;
	return len;
}

int block_readv(struct block *b, struct loop *l, struct block_req *r, struct iovec *iov,
		unsigned niov, uint64_t offset, void (*done)(struct block_req *r, int res))
{
	int ret = block_req_prep(b, l, r, iov, niov, offset, block_iov_len(iov, niov), done);

	return ret ? ret : b->drv->readv(r);
}

int block_writev(struct block *b, struct loop *l, struct block_req *r, struct iovec *iov,
		 unsigned niov, uint64_t offset, void (*done)(struct block_req *r, int res))
{
	int ret;

	if (b->readonly)
		return -EROFS;
	ret = block_req_prep(b, l, r, iov, niov, offset, block_iov_len(iov, niov), done);
	return ret ? ret : b->drv->writev(r);
}

int block_flush(struct block *b, struct loop *l, struct block_req *r,
		void (*done)(struct block_req *r, int res))
{
	*r = (struct block_req){ .done = done, .blk = b, .loop = l };
	return b->drv->flush(r);
}

static int block_zero(struct block *b, struct loop *l, struct block_req *r, uint64_t offset,
		      uint64_t len, enum block_zero_mode mode,
		      void (*done)(struct block_req *r, int res))
{
	int ret;

	if (b->readonly)
		return -EROFS;
	ret = block_req_prep(b, l, r, NULL, 0, offset, len, done);
	return ret ? ret : b->drv->zero_range(r, mode);
}

int block_discard(struct block *b, struct loop *l, struct block_req *r, uint64_t offset,
		  uint64_t len, void (*done)(struct block_req *r, int res))
{
	return block_zero(b, l, r, offset, len, BLOCK_DISCARD, done);
}

int block_write_zeroes(struct block *b, struct loop *l, struct block_req *r, uint64_t offset,
		       uint64_t len, bool unmap, void (*done)(struct block_req *r, int res))
{
	return block_zero(b, l, r, offset, len, unmap ? BLOCK_ZEROES_UNMAP : BLOCK_ZEROES, done);
}
