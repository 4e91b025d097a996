/*
 * Block layer front: checks each request against its image (bounds,
 * alignment, readonly), fills the request and hands it to the format's
 * driver through a const ops table (block/driver.h). Model: kvmtool's
 * disk_image_operations, kept to a handful of slots. format = auto reads
 * the file's first sector and asks each driver's probe in table order
 * (raw, which has none, is the fallback); an explicit format is never
 * second-guessed, so a raw image whose guest wrote a qcow2 header stays
 * raw.
 *
 * Threads: block_open/block_close on the main thread; requests in the
 * owner thread of the loop they are submitted on. Nothing here keeps state
 * between calls; a struct block is read-only after open apart from the
 * atomic can_unmap that drivers clear.
 */
#include "block/driver.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static const struct block_driver *const block_drivers[] = {
	[BLOCK_FORMAT_RAW] = &block_raw_driver,
	[BLOCK_FORMAT_NULL] = &block_null_driver,
	[BLOCK_FORMAT_QCOW2] = &block_qcow2_driver,
};

void block_init(struct block *b, const struct block_driver *drv, uint64_t size, unsigned align,
		bool readonly, bool can_unmap)
{
	*b = (struct block){ .drv = drv, .size = size, .align = align, .readonly = readonly };
	atomic_init(&b->can_unmap, can_unmap);
}

enum block_format block_probe(const char *path)
{
	uint8_t head[BLOCK_PROBE_LEN];
	ssize_t n = -1;
	unsigned i;
	/* O_NONBLOCK: a FIFO must not stall the probe; raw refuses it later. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd >= 0) {
		n = pread(fd, head, sizeof(head), 0);
		close(fd);
	}
	for (i = 0; n > 0 && i < ARRAY_SIZE(block_drivers); i++) {
		if (block_drivers[i]->probe && block_drivers[i]->probe(head, (size_t)n))
			return (enum block_format)i;
	}
	return BLOCK_FORMAT_RAW;
}

int block_open(const struct block_open_params *p, struct block **out, char *err, size_t errlen)
{
	struct block_open_params probed;

	if (p->format == BLOCK_FORMAT_AUTO) {
		probed = *p;
		probed.format = block_probe(p->path);
		p = &probed;
	}
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

int block_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
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
