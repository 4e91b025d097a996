/*
 * libFuzzer target for the qcow2 driver on hostile images. Each input is
 * an image file: qcow2_header_parse must accept it or refuse it with one
 * line; then the file (a memfd) is opened through block.h, read-only and
 * then read-write, and every mapping path runs on it: reads at both ends
 * and at offsets taken from the input (L2 lookups, compressed clusters
 * through the inflater, zero clusters), a few writes, a discard, a zeroing
 * and a flush (allocation, refcounts, table growth, writeback). Nothing
 * may crash or leak, requests end with 0 or -errno, and the file never
 * grows past what the writes can need. Images that name a backing file
 * are only parsed, so the run never opens files of the host.
 * Single-threaded, as libFuzzer runs it; one event loop for all inputs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2.h"
#include "core/loop.h"
#include "core/util.h"

#define FUZZ_IO (64 * 1024)
#define FUZZ_GROWTH (128 * 1024 * 1024)	/* 2 MiB clusters, a 32 MiB L1 table */

static struct loop *fuzz_loop;
static uint8_t fuzz_buf[FUZZ_IO];

struct fuzz_req {
	struct block_req r;
	int res;
	bool done;
};

static void fuzz_assert(bool ok)
{
	if (!ok)
		abort();
}

static void fuzz_done(struct block_req *r, int res)
{
	struct fuzz_req *f = container_of(r, struct fuzz_req, r);

	fuzz_assert(!f->done && res <= 0);
	f->res = res;
	f->done = true;
}

/* Runs the request that submit started; its result. */
static int fuzz_wait(struct fuzz_req *f, int submitted)
{
	if (submitted)
		return submitted;
	while (!f->done)
		fuzz_assert(loop_run_once(fuzz_loop, true) == 0);
	return f->res;
}

static void fuzz_rw(struct block *b, bool write, uint64_t off, size_t len)
{
	uint64_t size = block_size(b);
	struct fuzz_req f = { .done = false };
	struct iovec iov[2];

	len = len < size ? len : size;
	off = (off % (size - len + 1)) & ~511ULL;
	iov[0] = (struct iovec){ fuzz_buf, len / 3 };
	iov[1] = (struct iovec){ fuzz_buf + len / 3, len - len / 3 };
	fuzz_wait(&f, write ? block_writev(b, fuzz_loop, &f.r, iov, 2, off, fuzz_done) :
			      block_readv(b, fuzz_loop, &f.r, iov, 2, off, fuzz_done));
}

static void fuzz_zero(struct block *b, bool discard, uint64_t off)
{
	struct fuzz_req f = { .done = false };
	uint64_t size = block_size(b), len = size < FUZZ_IO ? size : FUZZ_IO;

	off = (off % (size - len + 1)) & ~511ULL;
	fuzz_wait(&f, discard ? block_discard(b, fuzz_loop, &f.r, off, len, fuzz_done) :
				block_write_zeroes(b, fuzz_loop, &f.r, off, len, true, fuzz_done));
}

static uint64_t fuzz_word(const uint8_t *data, size_t size, size_t at)
{
	uint64_t v = 0;

	if (size >= 8)
		memcpy(&v, data + (at % (size - 7)), 8);
	return v;
}

/* Opens the memfd as qcow2 and runs every kind of request on it. */
static void fuzz_image(const char *path, const uint8_t *data, size_t size, bool readonly)
{
	struct block_open_params p = { .path = path, .format = BLOCK_FORMAT_QCOW2,
				       .readonly = readonly };
	struct fuzz_req f = { .done = false };
	struct block *b;
	char err[512];
	unsigned i;

	if (block_open(&p, &b, err, sizeof(err))) {
		fuzz_assert(!strchr(err, '\n') && strlen(err) > 0);
		return;
	}
	fuzz_rw(b, false, 0, FUZZ_IO);
	fuzz_rw(b, false, UINT64_MAX, FUZZ_IO);
	for (i = 0; i < 4; i++)
		fuzz_rw(b, false, fuzz_word(data, size, i * 13), 512 * (1 + i * 37));
	for (i = 0; !readonly && i < 4; i++)
		fuzz_rw(b, true, fuzz_word(data, size, i * 7 + 3), FUZZ_IO);
	if (!readonly) {
		fuzz_zero(b, true, fuzz_word(data, size, 5));
		fuzz_zero(b, false, fuzz_word(data, size, 11));
		fuzz_wait(&f, block_flush(b, fuzz_loop, &f.r, fuzz_done));
		fuzz_rw(b, false, fuzz_word(data, size, 3), FUZZ_IO);
	}
	block_close(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qcow2_header h;
	char why[256], path[64];
	struct stat st;
	int fd, ret;

	if (!fuzz_loop && loop_new(&(struct loop_params){ .name = "fuzz" }, &fuzz_loop))
		abort();
	ret = qcow2_header_parse(data, size, size, &h, why, sizeof(why));
	fuzz_assert(ret == 0 || ret == -EAGAIN || ret == -EINVAL || ret == -ENOTSUP);
	fuzz_assert(ret >= 0 || (why[0] && !strchr(why, '\n')));
	if (ret || h.backing[0])
		return 0;
	fd = memfd_create("fuzz.qcow2", MFD_CLOEXEC);
	fuzz_assert(fd >= 0 && write(fd, data, size) == (ssize_t)size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	fuzz_image(path, data, size, true);
	fuzz_image(path, data, size, false);
	fuzz_assert(!fstat(fd, &st) && (uint64_t)st.st_size <= size + FUZZ_GROWTH);
	close(fd);
	return 0;
}
