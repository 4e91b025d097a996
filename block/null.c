/*
 * Null images, a benchmarking aid: no file, a size from the config, reads
 * give zeros and writes are dropped. Every request still completes through
 * the loop's ring (a NOP), so the device above sees the same completion
 * path, batching and timing shape as with real I/O, minus the storage.
 *
 * Threads: open and close on the main thread; requests in the owner
 * thread of their loop. The image is only the immutable generic header.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/driver.h"

#define NULL_SECTOR 512U

static int null_open(const struct block_open_params *p, struct block **out, char *err,
		     size_t errlen)
{
	struct block *b;

	if (!p->size || p->size % NULL_SECTOR) {
		snprintf(err, errlen, "null image: expected a size that is a non-zero multiple of %u bytes, found %llu",
			 NULL_SECTOR, (unsigned long long)p->size);
		return -EINVAL;
	}
	b = malloc(sizeof(*b));
	if (!b) {
		snprintf(err, errlen, "null image: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	block_init(b, &block_null_driver, p->size, 1, p->readonly, true);
	*out = b;
	return 0;
}

static void null_close(struct block *b)
{
	free(b);
}

static int null_complete(struct block_req *r)
{
	return loop_io_nop(r->loop, &r->io, block_req_complete);
}

static int null_readv(struct block_req *r)
{
	unsigned i;

	for (i = 0; i < r->niov; i++)
		memset(r->iov[i].iov_base, 0, r->iov[i].iov_len);
	return null_complete(r);
}

static int null_zero_range(struct block_req *r, enum block_zero_mode mode)
{
	return null_complete(r);
}

const struct block_driver block_null_driver = {
	.open = null_open,
	.readv = null_readv,
	.writev = null_complete,
	.flush = null_complete,
	.zero_range = null_zero_range,
	.close = null_close,
};
