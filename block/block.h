/*
 * Block backends: an open disk image behind a small ops table (one driver
 * per format: raw, null, qcow2), with asynchronous requests that run on
 * the calling thread's event loop.
 *
 * Threads: block_open/block_close on the main thread. A struct block is
 * shared by every queue of a disk; each request is submitted from, and
 * completes in, the owner thread of the loop passed with it (one IOThread
 * per virtqueue). Drivers keep per-image state that is read-only after
 * open, or document their own rule.
 */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/loop.h"

enum block_format {
	BLOCK_FORMAT_RAW,
	BLOCK_FORMAT_NULL,	/* no file: reads give zeros, writes are dropped */
	BLOCK_FORMAT_QCOW2,	/* docs/qcow2.md */
	BLOCK_FORMAT_AUTO,	/* qcow2 when the file starts with its magic, else raw */
};

struct block_open_params {
	const char *path;		/* unused by null */
	enum block_format format;
	bool readonly;
	bool direct;			/* cache = none: O_DIRECT */
	uint64_t size;			/* null only: bytes */
	uint64_t l2_cache;		/* qcow2 (and auto): bytes of L2 tables kept in
					 * memory; 0: the driver's default */
};

struct block;

/*
 * A request, embedded in the caller's per-request state. done(r, res) runs
 * once in the owner thread of the loop the request was submitted on, never
 * from inside the submitting call; res is 0 or -errno (a short transfer is
 * completed by the driver or reported as -EIO, never passed up).
 */
struct block_req {
	void (*done)(struct block_req *r, int res);
	/* private to the driver */
	struct block *blk;
	struct loop *loop;
	struct loop_io io;
	struct iovec *iov;
	unsigned niov;
	uint64_t offset;
	uint64_t len;
	size_t done_bytes;
	void *bounce;			/* O_DIRECT with unaligned buffers */
	struct iovec one;		/* a one-buffer transfer: bounce or zeroes */
};

/*
 * Opens an image. On failure returns -errno and writes one line for the
 * user into err ("PATH: why"). Readonly images are opened O_RDONLY; the
 * size is the file's (raw) or the virtual disk's (qcow2), rounded down to
 * 512 bytes. A qcow2 image's backing files are opened read-only, here.
 * BLOCK_FORMAT_AUTO reads the first bytes of the file to choose; a file
 * opened as BLOCK_FORMAT_RAW is never looked into.
 */
int block_open(const struct block_open_params *p, struct block **out, char *err, size_t errlen);
/* No request may be in flight. */
void block_close(struct block *b);

uint64_t block_size(const struct block *b);		/* bytes, a multiple of 512 */
bool block_readonly(const struct block *b);
/* Largest alignment of offset, length and buffer that the image needs
 * (512 for O_DIRECT on most file systems; 1 otherwise). Requests with
 * unaligned buffers still work, through a bounce buffer. */
unsigned block_align(const struct block *b);
/* Whether discard and write_zeroes really deallocate (holes), else they
 * write zeroes. A writable raw image starts true and turns false for good
 * once the file system refuses to punch a hole. Any thread. */
bool block_can_unmap(const struct block *b);

/*
 * Requests. offset and lengths are in bytes and must lie inside the image
 * (the device checks; drivers assert). The iovec array belongs to the
 * request until done and the driver may modify it. Each returns 0 (done
 * will run) or -errno (it will not), e.g. -EROFS on a readonly image,
 * -EINVAL for an empty request or, on an image whose block_align is above
 * 1, an offset or total length that is not a multiple of it (buffers and
 * single iovec lengths may be unaligned). Owner thread of l.
 */
int block_readv(struct block *b, struct loop *l, struct block_req *r, struct iovec *iov,
		unsigned niov, uint64_t offset, void (*done)(struct block_req *r, int res));
int block_writev(struct block *b, struct loop *l, struct block_req *r, struct iovec *iov,
		 unsigned niov, uint64_t offset, void (*done)(struct block_req *r, int res));
int block_flush(struct block *b, struct loop *l, struct block_req *r,
		void (*done)(struct block_req *r, int res));
/* Deallocates if it can; afterwards the range may read as anything until
 * written (raw reads zeros). */
int block_discard(struct block *b, struct loop *l, struct block_req *r, uint64_t offset,
		  uint64_t len, void (*done)(struct block_req *r, int res));
/* The range reads as zeros afterwards; unmap allows deallocating it. */
int block_write_zeroes(struct block *b, struct loop *l, struct block_req *r, uint64_t offset,
		       uint64_t len, bool unmap, void (*done)(struct block_req *r, int res));

#endif
