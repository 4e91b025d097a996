/*
 * Raw images: the disk's bytes are the file's (or block device's) bytes.
 * Every request goes to the caller's loop as one READV, WRITEV, FSYNC or
 * FALLOCATE; a short transfer is resubmitted for its remainder (the
 * request's iovec array is advanced in place) and a transfer that moves
 * nothing ends the request with -EIO. Zeroing tries, in order, punching a
 * hole, FALLOC_FL_ZERO_RANGE and writing zeroes, and remembers per image
 * what the file system refused (EOPNOTSUPP) so later requests skip it.
 * With O_DIRECT, a request whose buffers or iovec lengths are not aligned
 * goes through a bounce buffer allocated for it.
 *
 * Threads: open and close on the main thread; each request in the owner
 * thread of its loop, and requests of one image run on several loops at
 * once. The fd and geometry are immutable after open; what the file system
 * refused (can_unmap in the header, can_zero_range here) is a relaxed
 * atomic: a stale value costs one more refused fallocate, nothing else.
 *
 * Ownership: a request owns its iovec array and bounce buffer until done
 * runs; the bounce buffer is freed just before.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/driver.h"

/* Linux UAPI value; musl 1.2.3's fcntl.h stops at PUNCH_HOLE. */
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

#define RAW_SECTOR 512U
/* Largest O_DIRECT alignment looked for (the biggest logical block size
 * of common devices). */
#define RAW_ALIGN_MAX 4096U
/* Bytes of zeroes written per WRITEV where fallocate cannot zero. */
#define RAW_ZERO_CHUNK (1U << 20)

struct raw {
	struct block blk;
	int fd;				/* immutable */
	atomic_bool can_zero_range;	/* false once refused; any thread */
};

/* Source of the zeroes written where fallocate cannot zero. Never written:
 * in .bss it costs no memory beyond the kernel's shared zero page. */
static char raw_zeroes[RAW_ZERO_CHUNK] __attribute__((aligned(RAW_ALIGN_MAX)));

static const char raw_no_direct[] =
	"%s: the file system does not support O_DIRECT (cache = \"none\"); "
	"use cache = \"writeback\"";

static void raw_read_done(struct loop_io *io, int res);
static void raw_write_done(struct loop_io *io, int res);

static struct raw *raw_of(struct block *b)
{
	return container_of(b, struct raw, blk);
}

/* Writes one line into err and returns ret. */
__attribute__((format(printf, 4, 5)))
static int raw_fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

/* ---- open ---- */

static const char *raw_file_kind(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISFIFO(mode))
		return "a FIFO";
	return "a socket or another special file";
}

/* Opens path. O_NONBLOCK keeps open() from waiting on a FIFO; it is
 * cleared once the type is checked, since io_uring would answer -EAGAIN
 * instead of waiting on a non-blocking file. */
static int raw_open_fd(const struct block_open_params *p, char *err, size_t errlen)
{
	int flags = (p->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK |
		    (p->direct ? O_DIRECT : 0);
	int fd = open(p->path, flags), e = errno;

	if (fd >= 0)
		return fd;
	if (e == EINVAL && p->direct)
		return raw_fail(err, errlen, -EINVAL, raw_no_direct, p->path);
	return raw_fail(err, errlen, -e, "%s: cannot open %s: %s", p->path,
			p->readonly ? "read-only" : "read-write", strerror(e));
}

/* Checks the file's type, finds the image size (the file's or device's,
 * rounded down to 512 bytes) and makes the fd blocking. */
static int raw_check_file(const char *path, int fd, uint64_t *size, char *err, size_t errlen)
{
	struct stat st;
	uint64_t bytes;

	if (fstat(fd, &st))
		return raw_fail(err, errlen, -errno, "%s: fstat: %s", path, strerror(errno));
	if (S_ISREG(st.st_mode))
		bytes = (uint64_t)st.st_size;
	else if (!S_ISBLK(st.st_mode))
		return raw_fail(err, errlen, -EINVAL, "%s: expected a regular file or a block device, found %s",
				path, raw_file_kind(st.st_mode));
	else if (ioctl(fd, BLKGETSIZE64, &bytes))
		return raw_fail(err, errlen, -errno, "%s: BLKGETSIZE64: %s", path, strerror(errno));
	if (bytes < RAW_SECTOR)
		return raw_fail(err, errlen, -EINVAL, "%s: expected an image of at least %u bytes, found %llu bytes",
				path, RAW_SECTOR, (unsigned long long)bytes);
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK))
		return raw_fail(err, errlen, -errno, "%s: fcntl: %s", path, strerror(errno));
	*size = bytes & ~(uint64_t)(RAW_SECTOR - 1);
	return 0;
}

/*
 * The alignment O_DIRECT needs here, found by reading the first block with
 * sizes and buffer alignments 512, 1024, ... until the kernel accepts one
 * (file systems and devices differ, and statx's DIOALIGN is not in every
 * libc). Each buffer is aligned to the size tried and no more.
 */
static int raw_probe_align(const char *path, int fd, unsigned *align, char *err, size_t errlen)
{
	unsigned a;
	void *buf;
	int e = 0;

	if (posix_memalign(&buf, RAW_ALIGN_MAX, 2 * RAW_ALIGN_MAX))
		return raw_fail(err, errlen, -ENOMEM, "%s: %s", path, strerror(ENOMEM));
	for (a = RAW_SECTOR; a <= RAW_ALIGN_MAX; a *= 2) {
		e = pread(fd, (char *)buf + a, a, 0) < 0 ? errno : 0;
		if (e != EINVAL)
			break;
	}
	free(buf);
	if (e == EINVAL)
		return raw_fail(err, errlen, -EINVAL, raw_no_direct, path);
	if (e)
		return raw_fail(err, errlen, -e, "%s: cannot read: %s", path, strerror(e));
	*align = a;
	return 0;
}

static int raw_open(const struct block_open_params *p, struct block **out, char *err,
		    size_t errlen)
{
	unsigned align = 1;
	struct raw *raw;
	uint64_t size = 0;
	int fd, ret;

	fd = raw_open_fd(p, err, errlen);
	if (fd < 0)
		return fd;
	ret = raw_check_file(p->path, fd, &size, err, errlen);
	if (!ret && p->direct)
		ret = raw_probe_align(p->path, fd, &align, err, errlen);
	if (ret)
		goto err_close;
	raw = malloc(sizeof(*raw));
	if (!raw) {
		ret = raw_fail(err, errlen, -ENOMEM, "%s: %s", p->path, strerror(ENOMEM));
		goto err_close;
	}
	block_init(&raw->blk, &block_raw_driver, size, align, p->readonly, !p->readonly);
	raw->fd = fd;
	atomic_init(&raw->can_zero_range, true);
	*out = &raw->blk;
	return 0;

err_close:
	close(fd);
	return ret;
}

static void raw_close(struct block *b)
{
	struct raw *raw = raw_of(b);

	close(raw->fd);
	free(raw);
}

/* ---- reads and writes ---- */

static bool raw_needs_bounce(const struct block_req *r)
{
	unsigned a = r->blk->align, i;

	for (i = 0; a > 1 && i < r->niov; i++) {
		if ((uintptr_t)r->iov[i].iov_base % a || r->iov[i].iov_len % a)
			return true;
	}
	return false;
}

/* Copies between the request's iovecs and its bounce buffer. */
static void raw_bounce_copy(struct block_req *r, bool to_bounce)
{
	char *p = r->bounce;
	unsigned i;

	for (i = 0; i < r->niov; i++) {
		if (to_bounce)
			memcpy(p, r->iov[i].iov_base, r->iov[i].iov_len);
		else
			memcpy(r->iov[i].iov_base, p, r->iov[i].iov_len);
		p += r->iov[i].iov_len;
	}
}

/* Submits what is left of the transfer: the iovecs, or the bounce buffer. */
static int raw_submit(struct block_req *r, bool write)
{
	const struct iovec *iov = r->bounce ? &r->one : r->iov;
	unsigned niov = r->bounce ? 1 : r->niov;
	uint64_t offset = r->offset + r->done_bytes;
	int fd = raw_of(r->blk)->fd;

	if (write)
		return loop_io_writev(r->loop, &r->io, fd, iov, niov, offset, raw_write_done);
	return loop_io_readv(r->loop, &r->io, fd, iov, niov, offset, raw_read_done);
}

static int raw_rw_start(struct block_req *r, bool write)
{
	int ret;

	if (raw_needs_bounce(r)) {
		if (posix_memalign(&r->bounce, r->blk->align, r->len))
			return -ENOMEM;
		if (write)
			raw_bounce_copy(r, true);
		r->one = (struct iovec){ r->bounce, r->len };
	}
	ret = raw_submit(r, write);
	if (ret) {
		free(r->bounce);
		r->bounce = NULL;
	}
	return ret;
}

static int raw_readv(struct block_req *r)
{
	return raw_rw_start(r, false);
}

static int raw_writev(struct block_req *r)
{
	return raw_rw_start(r, true);
}

/* Accounts a transfer of res bytes: 1 when some of the request is left,
 * 0 when all of it is done, -errno (-EIO for no progress at all). */
static int raw_progress(struct block_req *r, int res)
{
	if (res < 0)
		return res;
	if (res == 0)
		return -EIO;
	r->done_bytes += (size_t)res;
	return r->done_bytes < r->len;
}

/* Drops the first n bytes, already transferred, from the transfer. */
static void raw_advance(struct block_req *r, size_t n)
{
	struct iovec *v = &r->one;

	if (!r->bounce) {
		for (; n >= r->iov->iov_len; r->iov++, r->niov--)
			n -= r->iov->iov_len;
		v = r->iov;
	}
	v->iov_base = (char *)v->iov_base + n;
	v->iov_len -= n;
}

static void raw_rw_done(struct block_req *r, int res, bool write)
{
	int ret = raw_progress(r, res);

	if (ret == 1) {
		raw_advance(r, (size_t)res);
		ret = raw_submit(r, write);
		if (!ret)
			return;
	}
	if (r->bounce) {
		if (!ret && !write)
			raw_bounce_copy(r, false);
		free(r->bounce);
		r->bounce = NULL;
	}
	r->done(r, ret);
}

static void raw_read_done(struct loop_io *io, int res)
{
	raw_rw_done(block_req_of(io), res, false);
}

static void raw_write_done(struct loop_io *io, int res)
{
	raw_rw_done(block_req_of(io), res, true);
}

static int raw_flush(struct block_req *r)
{
	return loop_io_fsync(r->loop, &r->io, raw_of(r->blk)->fd, true, block_req_complete);
}

/* ---- zeroing ---- */

static void raw_fill_done(struct loop_io *io, int res);
static void raw_punch_done(struct loop_io *io, int res);
static void raw_zero_range_done(struct loop_io *io, int res);

/* Writes the next piece of zeroes; the request is done once all are. */
static int raw_fill(struct block_req *r)
{
	uint64_t left = r->len - r->done_bytes;

	r->one = (struct iovec){ raw_zeroes, left < RAW_ZERO_CHUNK ? left : RAW_ZERO_CHUNK };
	return loop_io_writev(r->loop, &r->io, raw_of(r->blk)->fd, &r->one, 1,
			      r->offset + r->done_bytes, raw_fill_done);
}

static void raw_fill_done(struct loop_io *io, int res)
{
	struct block_req *r = block_req_of(io);
	int ret = raw_progress(r, res);

	if (ret == 1) {
		ret = raw_fill(r);
		if (!ret)
			return;
	}
	r->done(r, ret);
}

/* KEEP_SIZE: files must not grow, and block devices require it. */
static int raw_fallocate(struct block_req *r, int mode, void (*done)(struct loop_io *io, int res))
{
	return loop_io_fallocate(r->loop, &r->io, raw_of(r->blk)->fd, mode | FALLOC_FL_KEEP_SIZE,
				 r->offset, r->len, done);
}

/* Zeroes that stay allocated: ZERO_RANGE, else written zeroes. */
static int raw_zero_keep(struct block_req *r)
{
	if (atomic_load_explicit(&raw_of(r->blk)->can_zero_range, memory_order_relaxed))
		return raw_fallocate(r, FALLOC_FL_ZERO_RANGE, raw_zero_range_done);
	return raw_fill(r);
}

static int raw_zero_range(struct block_req *r, enum block_zero_mode mode)
{
	if (mode != BLOCK_ZEROES && atomic_load_explicit(&r->blk->can_unmap, memory_order_relaxed))
		return raw_fallocate(r, FALLOC_FL_PUNCH_HOLE, raw_punch_done);
	return raw_zero_keep(r);
}

/* Ends a fallocate; when the file system refused it (EOPNOTSUPP), marks
 * that way as unusable in *works and goes on with the next one. */
static void raw_zero_step_done(struct block_req *r, int res, atomic_bool *works,
			       int (*next)(struct block_req *r))
{
	if (res == -EOPNOTSUPP) {
		atomic_store_explicit(works, false, memory_order_relaxed);
		res = next(r);
		if (!res)
			return;
	}
	r->done(r, res);
}

static void raw_punch_done(struct loop_io *io, int res)
{
	struct block_req *r = block_req_of(io);

	raw_zero_step_done(r, res, &r->blk->can_unmap, raw_zero_keep);
}

static void raw_zero_range_done(struct loop_io *io, int res)
{
	struct block_req *r = block_req_of(io);

	raw_zero_step_done(r, res, &raw_of(r->blk)->can_zero_range, raw_fill);
}

const struct block_driver block_raw_driver = {
	.open = raw_open,
	.readv = raw_readv,
	.writev = raw_writev,
	.flush = raw_flush,
	.zero_range = raw_zero_range,
	.close = raw_close,
};
