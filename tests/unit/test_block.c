/*
 * Block layer tests on real files and a real io_uring loop: raw images in a
 * temporary directory (under $TMPDIR or /var/tmp), written and read back
 * against an in-memory model with multi-iovec requests, buffered and with
 * O_DIRECT (aligned, and unaligned through the bounce buffer); readonly
 * images; flush; discard and write_zeroes checked with SEEK_HOLE and
 * st_blocks; open errors; a read cut short by a truncation; and, when this
 * process may mount (in a private mount namespace, so no mount outlives
 * it), a tiny tmpfs (ENOSPC after a short write; no ZERO_RANGE) and a
 * ramfs (no fallocate at all, no O_DIRECT); a loop block device. The null backend: zeros over garbage, writes complete.
 * Every request checks that done never runs inside the submitting call.
 * Two threads share one image from their own loops (for TSan).
 * Exit 0 pass, 1 fail, 77 when io_uring is unavailable here.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/check.h"
#include "block/block.h"
#include "core/loop.h"
#include "core/util.h"

#define IMG (1024 * 1024)
#define MS 1000000ULL
#define POOL_SLOT (128 * 1024)
#define POOL_SLOTS 8

static char test_dir[PATH_MAX];
static unsigned char *pool;		/* POOL_SLOTS slots, 4 KiB aligned */
static unsigned char model[IMG];	/* what the main image should hold */
static struct loop *main_loop;
static bool own_mounts;			/* in a private mount namespace */

/* ---- running requests ---- */

static __thread bool submitting;
static __thread struct block_req *last_req;	/* the request run_op runs */

struct treq {
	struct block_req r;
	int res;
	int calls;
	bool inside_submit;
};

static void treq_done(struct block_req *r, int res)
{
	struct treq *t = container_of(r, struct treq, r);

	t->inside_submit |= submitting;
	t->res = res;
	t->calls++;
}

enum op { OP_READ, OP_WRITE, OP_FLUSH, OP_DISCARD, OP_ZEROES, OP_ZEROES_UNMAP };

static int submit(struct loop *l, struct block *b, struct treq *t, enum op op,
		  struct iovec *iov, unsigned niov, uint64_t off, uint64_t len)
{
	switch (op) {
	case OP_READ:
		return block_readv(b, l, &t->r, iov, niov, off, treq_done);
	case OP_WRITE:
		return block_writev(b, l, &t->r, iov, niov, off, treq_done);
	case OP_FLUSH:
		return block_flush(b, l, &t->r, treq_done);
	case OP_DISCARD:
		return block_discard(b, l, &t->r, off, len, treq_done);
	case OP_ZEROES:
	case OP_ZEROES_UNMAP:
		return block_write_zeroes(b, l, &t->r, off, len, op == OP_ZEROES_UNMAP, treq_done);
	}
	return -EINVAL;
}

/* Submits one request and runs l until it completes. Returns the submit
 * error (then done must never run) or the completion's result. */
static int run_op(struct loop *l, struct block *b, enum op op, struct iovec *iov,
		  unsigned niov, uint64_t off, uint64_t len)
{
	struct treq t = { .res = 1 };
	uint64_t end;
	int ret;

	last_req = &t.r;
	submitting = true;
	ret = submit(l, b, &t, op, iov, niov, off, len);
	submitting = false;
	if (ret) {
		loop_run_once(l, false);
		CHECK(t.calls == 0, "op %d: done ran after the submit failed with %d", op, ret);
		return ret;
	}
	CHECK(t.calls == 0, "op %d: done ran inside the submitting call", op);
	for (end = clock_ns() + 5000 * MS; !t.calls && clock_ns() < end;)
		loop_run_once(l, true);
	CHECK(t.calls == 1, "op %d: done ran %d times", op, t.calls);
	CHECK(!t.inside_submit, "op %d: done ran inside the submitting call", op);
	return t.res;
}

static int run_rw(struct block *b, enum op op, struct iovec *iov, unsigned niov, uint64_t off)
{
	return run_op(main_loop, b, op, iov, niov, off, 0);
}

static int run_zero(struct block *b, enum op op, uint64_t off, uint64_t len)
{
	return run_op(main_loop, b, op, NULL, 0, off, len);
}

/* ---- files and images ---- */

static void path_in(char *out, const char *dir, const char *name)
{
	if (snprintf(out, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX)
		abort();
}

/* Creates (or truncates) dir/name with size bytes of zeros; returns its path. */
static const char *make_file(const char *dir, const char *name, off_t size)
{
	static char path[PATH_MAX];
	int fd;

	path_in(path, dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, size)) {
		printf("FAIL: creating %s: %s\n", path, strerror(errno));
		exit(1);
	}
	close(fd);
	return path;
}

static struct block *open_img(const char *path, bool readonly, bool direct)
{
	struct block_open_params p = { .path = path, .format = BLOCK_FORMAT_RAW,
				       .readonly = readonly, .direct = direct };
	struct block *b = NULL;
	char err[512] = "";
	int ret = block_open(&p, &b, err, sizeof(err));

	CHECK(ret == 0, "block_open %s: %d: %s", path, ret, err);
	return ret ? NULL : b;
}

/* The open error for p, checked against want. */
static void expect_open_error(const struct block_open_params *p, int want_ret, const char *want)
{
	struct block *b = NULL;
	char err[512] = "";
	int ret = block_open(p, &b, err, sizeof(err));

	CHECK_I(ret, want_ret);
	CHECK_S(err, want);
	if (!ret)
		block_close(b);
}

static void pattern(unsigned char *p, size_t len, uint64_t off, unsigned seed)
{
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = (unsigned char)((off + i) * 131 + seed * 17 + ((off + i) >> 9));
}

static bool all_zero(const unsigned char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Reads the whole image through the block layer (in 3 iovecs of odd
 * sizes, 8 KiB apart in memory) and through a plain fd; both must match
 * the model. */
static void check_image(struct block *b, const char *path, const char *what)
{
	static unsigned char back[IMG];
	struct iovec iov[3] = {
		{ pool, 1536 }, { pool + 8192, 4096 - 1536 }, { pool + 16384, 4096 },
	};
	uint64_t off;
	int fd, ret, bad = 0;

	for (off = 0; off < IMG && !bad; off += 8192) {
		memset(pool, 0xa5, 3 * 8192);
		ret = run_rw(b, OP_READ, iov, 3, off);
		bad += ret != 0;
		bad += memcmp(pool, model + off, 1536) != 0;
		bad += memcmp(pool + 8192, model + off + 1536, 4096 - 1536) != 0;
		bad += memcmp(pool + 16384, model + off + 4096, 4096) != 0;
		CHECK(!bad, "%s: block read at %llu: %d or data differs", what,
		      (unsigned long long)off, ret);
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0 && pread(fd, back, IMG, 0) == IMG, "%s: pread", what);
	CHECK(!memcmp(back, model, IMG), "%s: the file differs from the model", what);
	close(fd);
}

/* ---- reads and writes ---- */

struct rw_case {
	uint64_t off;
	size_t lens[4];
	unsigned n;
	size_t shift;			/* added to each buffer's address */
	bool unaligned;			/* a bounce under O_DIRECT */
};

static const struct rw_case rw_cases[] = {
	{ 0, { 4096 }, 1, 0, false },
	{ 512, { 512, 1024, 3584 }, 3, 0, false },
	{ 65536 + 512, { 1536, 512 }, 2, 0, false },
	{ IMG - 2048, { 1024, 1024 }, 2, 0, false },
	{ 8192, { 100, 412, 512 }, 3, 0, true },
	{ 20480, { 4096, 4096, 8192 }, 3, 1, true },
	{ 299520, { 512, 3584, 100000, 1376 }, 4, 8, true },
	{ 777, { 1000, 33 }, 2, 3, true },	/* buffered only */
};

/* Whether the image takes c at all (O_DIRECT: aligned offset and total). */
static bool rw_case_fits(const struct rw_case *c, unsigned align)
{
	uint64_t len = 0;
	unsigned j;

	for (j = 0; j < c->n; j++)
		len += c->lens[j];
	return c->off % align == 0 && len % align == 0;
}

/* Writes each case (a fresh pattern per pass), checking the image after. */
static void test_rw_cases(struct block *b, const char *path, unsigned seed, const char *what)
{
	struct iovec iov[4];
	uint64_t off;
	unsigned i, j;
	int ret;

	for (i = 0; i < ARRAY_SIZE(rw_cases); i++) {
		const struct rw_case *c = &rw_cases[i];

		if (!rw_case_fits(c, block_align(b)))
			continue;
		for (j = 0, off = c->off; j < c->n; off += c->lens[j], j++) {
			iov[j] = (struct iovec){ pool + j * POOL_SLOT + c->shift, c->lens[j] };
			pattern(iov[j].iov_base, c->lens[j], off, seed + i);
			memcpy(model + off, iov[j].iov_base, c->lens[j]);
		}
		ret = run_rw(b, OP_WRITE, iov, c->n, c->off);
		CHECK(ret == 0, "%s: case %u: write: %s", what, i, strerror(-ret));
	}
	check_image(b, path, what);
	/* Reads into the same odd layouts. */
	for (i = 0; i < ARRAY_SIZE(rw_cases); i++) {
		const struct rw_case *c = &rw_cases[i];

		if (!rw_case_fits(c, block_align(b)))
			continue;
		for (j = 0; j < c->n; j++) {
			iov[j] = (struct iovec){ pool + j * POOL_SLOT + c->shift, c->lens[j] };
			memset(iov[j].iov_base, 0x5a, c->lens[j]);
		}
		ret = run_rw(b, OP_READ, iov, c->n, c->off);
		CHECK(ret == 0, "%s: case %u: read: %s", what, i, strerror(-ret));
		for (j = 0, off = c->off; j < c->n; off += c->lens[j], j++)
			CHECK(!memcmp(iov[j].iov_base, model + off, c->lens[j]),
			      "%s: case %u: iovec %u read back wrong", what, i, j);
	}
}

static void test_buffered(const char *path)
{
	struct block *b = open_img(path, false, false);

	if (!b)
		return;
	CHECK_U(block_size(b), IMG);
	CHECK_U(block_align(b), 1);
	CHECK(!block_readonly(b) && block_can_unmap(b), "readonly or cannot unmap");
	test_rw_cases(b, path, 1, "buffered");
	CHECK_I(run_rw(b, OP_FLUSH, NULL, 0, 0), 0);
	CHECK_I(run_rw(b, OP_READ, (struct iovec[]){ { pool, 0 } }, 1, 0), -EINVAL);
	block_close(b);
}

static void test_direct(const char *path)
{
	struct iovec iov = { pool, 4096 };
	struct block *b = open_img(path, false, true);
	unsigned a;

	if (!b)
		return;
	a = block_align(b);
	printf("O_DIRECT alignment here: %u\n", a);
	CHECK(a >= 512 && a <= 4096 && !(a & (a - 1)), "alignment %u", a);
	test_rw_cases(b, path, 100, "O_DIRECT");
	/* Offsets and totals must be aligned: a bounce buffer cannot fix those. */
	CHECK_I(run_rw(b, OP_READ, &iov, 1, a / 2), -EINVAL);
	iov.iov_len = a + 100;
	CHECK_I(run_rw(b, OP_WRITE, &iov, 1, 0), -EINVAL);
	CHECK_I(run_zero(b, OP_ZEROES, 0, a / 2), -EINVAL);
	block_close(b);
}

static void test_readonly(const char *path)
{
	struct iovec iov = { pool, 4096 };
	struct block *b = open_img(path, true, false);

	if (!b)
		return;
	CHECK(block_readonly(b) && !block_can_unmap(b), "readonly image: flags");
	CHECK_I(run_rw(b, OP_WRITE, &iov, 1, 0), -EROFS);
	CHECK_I(run_zero(b, OP_DISCARD, 0, 4096), -EROFS);
	CHECK_I(run_zero(b, OP_ZEROES, 0, 4096), -EROFS);
	CHECK_I(run_zero(b, OP_ZEROES_UNMAP, 0, 4096), -EROFS);
	CHECK_I(run_rw(b, OP_READ, &iov, 1, 4096), 0);
	CHECK(!memcmp(pool, model + 4096, 4096), "readonly read differs");
	CHECK_I(run_rw(b, OP_FLUSH, NULL, 0, 0), 0);
	check_image(b, path, "readonly");
	block_close(b);
}

/* ---- zeroing ---- */

static blkcnt_t blocks_of(const char *path)
{
	struct stat st;

	CHECK(stat(path, &st) == 0, "stat %s", path);
	return st.st_blocks;
}

static off_t hole_at(const char *path, off_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t h = lseek(fd, off, SEEK_HOLE);

	close(fd);
	return h;
}

/* Runs one zeroing op on [off, off + len) and updates the model. */
static void zero_and_model(struct block *b, enum op op, uint64_t off, uint64_t len, const char *what)
{
	int ret = run_zero(b, op, off, len);

	CHECK(ret == 0, "%s: %s", what, strerror(-ret));
	memset(model + off, 0, len);
}

/* Fills the image with a pattern through the block layer. */
static void fill_image(struct block *b, unsigned seed)
{
	struct iovec iov = { pool, POOL_SLOT };
	uint64_t off;

	for (off = 0; off < IMG; off += POOL_SLOT) {
		pattern(pool, POOL_SLOT, off, seed);
		memcpy(model + off, pool, POOL_SLOT);
		CHECK_I(run_rw(b, OP_WRITE, &iov, 1, off), 0);
	}
	CHECK_I(run_rw(b, OP_FLUSH, NULL, 0, 0), 0);
}

static void test_zeroing(const char *path, bool direct)
{
	const char *what = direct ? "O_DIRECT zeroing" : "zeroing";
	struct block *b = open_img(path, false, direct);
	blkcnt_t before;

	if (!b)
		return;
	fill_image(b, direct ? 7 : 3);
	CHECK(hole_at(path, 0) == IMG, "%s: a hole before any discard", what);
	before = blocks_of(path);
	zero_and_model(b, OP_DISCARD, 256 * 1024, 256 * 1024, what);
	CHECK(hole_at(path, 256 * 1024) == 256 * 1024, "%s: no hole after discard", what);
	CHECK(blocks_of(path) <= before - 256 * 2, "%s: discard freed %lld blocks", what,
	      (long long)(before - blocks_of(path)));
	before = blocks_of(path);
	zero_and_model(b, OP_ZEROES, 512 * 1024 + 4096, 64 * 1024, what);
	CHECK(blocks_of(path) >= before, "%s: write_zeroes without unmap freed blocks", what);
	zero_and_model(b, OP_ZEROES_UNMAP, 640 * 1024, 128 * 1024, what);
	CHECK(hole_at(path, 640 * 1024) == 640 * 1024, "%s: no hole after write_zeroes unmap", what);
	CHECK(block_can_unmap(b), "%s: can_unmap cleared on a file system that punches", what);
	check_image(b, path, what);
	block_close(b);
}

/* ---- errors ---- */

static void test_open_errors(void)
{
	char path[PATH_MAX], want[PATH_MAX + 128];
	struct block_open_params p = { .path = path, .format = BLOCK_FORMAT_RAW };
	struct block *b;

	path_in(path, test_dir, "missing");
	snprintf(want, sizeof(want), "%s: cannot open read-write: %s", path, strerror(ENOENT));
	expect_open_error(&p, -ENOENT, want);
	p.readonly = true;
	snprintf(want, sizeof(want), "%s: cannot open read-only: %s", path, strerror(ENOENT));
	expect_open_error(&p, -ENOENT, want);
	snprintf(path, sizeof(path), "%s", test_dir);
	snprintf(want, sizeof(want), "%s: expected a regular file or a block device, found a directory", path);
	expect_open_error(&p, -EINVAL, want);
	path_in(path, test_dir, "fifo");
	CHECK(mkfifo(path, 0600) == 0, "mkfifo: %s", strerror(errno));
	snprintf(want, sizeof(want), "%s: expected a regular file or a block device, found a FIFO", path);
	expect_open_error(&p, -EINVAL, want);
	unlink(path);
	snprintf(path, sizeof(path), "%s", make_file(test_dir, "tiny", 511));
	snprintf(want, sizeof(want), "%s: expected an image of at least 512 bytes, found 511 bytes", path);
	expect_open_error(&p, -EINVAL, want);
	/* 1000 bytes: a 512-byte image. */
	snprintf(path, sizeof(path), "%s", make_file(test_dir, "odd", 1000));
	b = open_img(path, false, false);
	CHECK(b && block_size(b) == 512, "1000-byte file: size %llu",
	      b ? (unsigned long long)block_size(b) : 0ULL);
	block_close(b);
	unlink(path);
	path_in(path, test_dir, "tiny");
	unlink(path);
}

/* Grows the file back once the request in flight has moved some bytes:
 * a BH runs after the completions of its iteration, before the driver's
 * resubmission of the remainder reaches the kernel. */
struct grow {
	struct loop_bh bh;
	int fd;
	bool grown;
};

static void grow_bh(struct loop_bh *bh)
{
	struct grow *g = container_of(bh, struct grow, bh);

	if (!last_req->done_bytes) {
		loop_bh_schedule(main_loop, bh);
		return;
	}
	pattern(pool + 3 * POOL_SLOT, 65536, 0, 2);
	CHECK(pwrite(g->fd, pool + 3 * POOL_SLOT + 41472, 65536 - 41472, 41472) == 65536 - 41472,
	      "pwrite: %s", strerror(errno));
	g->grown = true;
}

/*
 * A file cut short after open: the read that crosses the new end is short.
 * If the file grows back before the remainder is read, the request
 * succeeds with the data placed right (the iovecs, or the bounce buffer
 * under O_DIRECT, advanced past the short part); if not, the remainder
 * reads nothing and the request fails with -EIO.
 */
static void test_short_read(bool direct)
{
	const char *path = make_file(test_dir, "shrinks", 65536);
	size_t shift = direct ? 1 : 0;
	struct iovec iov[3] = { { pool + shift, 16384 }, { pool + POOL_SLOT + shift, 16384 },
				{ pool + 2 * POOL_SLOT + shift, 32768 } };
	struct grow g = { .fd = open(path, O_RDWR | O_CLOEXEC) };
	struct block *b = open_img(path, false, direct);
	unsigned char *want = pool + 4 * POOL_SLOT;

	if (!b)
		return;
	pattern(want, 65536, 0, 1);
	CHECK(pwrite(g.fd, want, 65536, 0) == 65536, "pwrite");
	CHECK(ftruncate(g.fd, 41472) == 0, "truncate: %s", strerror(errno));
	loop_bh_init(&g.bh, grow_bh);
	loop_bh_schedule(main_loop, &g.bh);
	CHECK_I(run_rw(b, OP_READ, iov, 3, 0), 0);
	CHECK(g.grown, "the read was never short");
	pattern(want + 41472, 65536 - 41472, 41472, 2);
	CHECK(!memcmp(pool + shift, want, 16384) && !memcmp(pool + POOL_SLOT + shift, want + 16384, 16384) &&
	      !memcmp(pool + 2 * POOL_SLOT + shift, want + 32768, 32768),
	      "%s: short read continued with misplaced data", direct ? "O_DIRECT" : "buffered");
	CHECK(ftruncate(g.fd, 40960) == 0, "truncate: %s", strerror(errno));
	iov[0] = (struct iovec){ pool + shift, 32768 };
	CHECK_I(run_rw(b, OP_READ, iov, 1, 16384), -EIO);
	iov[0].iov_len = 4096;
	CHECK_I(run_rw(b, OP_READ, iov, 1, 49152), -EIO);
	CHECK_I(run_rw(b, OP_READ, iov, 1, 36864), 0);
	block_close(b);
	close(g.fd);
	unlink(path);
}

/* ---- file systems this process mounts ---- */

/* Mounts a fresh fs of type at dir/name; false (with a note) when it cannot. */
static bool mount_fs(const char *type, const char *name, const char *opts, char *out)
{
	if (!own_mounts) {
		printf("skip %s tests: no private mount namespace here\n", name);
		return false;
	}
	path_in(out, test_dir, name);
	if (mkdir(out, 0700) || mount(type, out, type, 0, opts)) {
		printf("skip %s tests: cannot mount a %s here: %s\n", name, type, strerror(errno));
		rmdir(out);
		return false;
	}
	return true;
}

static void unmount_fs(const char *dir)
{
	CHECK(umount2(dir, MNT_DETACH) == 0, "umount %s: %s", dir, strerror(errno));
	rmdir(dir);
}

/* A tmpfs has no FALLOC_FL_ZERO_RANGE: write_zeroes writes zeroes. When
 * it fills up, a write is short and its remainder fails with ENOSPC. */
static void test_tmpfs(void)
{
	char dir[PATH_MAX];
	struct block *b;
	const char *path;
	struct iovec iov = { pool, 160 * 1024 };

	if (!mount_fs("tmpfs", "tmpfs", "size=256k", dir))
		return;
	path = make_file(dir, "img", IMG);
	b = open_img(path, false, false);
	if (b) {
		memset(pool, 0xee, iov.iov_len);
		CHECK_I(run_rw(b, OP_WRITE, &iov, 1, 0), 0);
		CHECK_I(run_zero(b, OP_ZEROES, 4096, 65536), 0);
		CHECK_I(run_zero(b, OP_ZEROES, 131072, 8192), 0);
		CHECK_I(run_rw(b, OP_READ, &iov, 1, 0), 0);
		CHECK(all_zero(pool + 4096, 65536) && all_zero(pool + 131072, 8192) &&
		      pool[4095] == 0xee && pool[69632] == 0xee && pool[139264] == 0xee,
		      "tmpfs write_zeroes: wrong data");
		CHECK(block_can_unmap(b), "tmpfs punches holes");
		/* 512 KiB into a 256 KiB file system. */
		iov.iov_len = 4 * POOL_SLOT;
		CHECK_I(run_rw(b, OP_WRITE, &iov, 1, 512 * 1024), -ENOSPC);
		block_close(b);
	}
	unmount_fs(dir);
}

/* A ramfs has no fallocate and no O_DIRECT: discards write zeroes, and
 * the image stops claiming it can unmap. */
static void test_ramfs(void)
{
	char dir[PATH_MAX], want[PATH_MAX + 128];
	struct iovec iov = { pool, 65536 };
	struct block *b;
	const char *path;

	if (!mount_fs("ramfs", "ramfs", "", dir))
		return;
	path = make_file(dir, "img", 65536);
	snprintf(want, sizeof(want), "%s: the file system does not support O_DIRECT "
		 "(cache = \"none\"); use cache = \"writeback\"", path);
	expect_open_error(&(struct block_open_params){ .path = path, .direct = true },
			  -EINVAL, want);
	b = open_img(path, false, false);
	if (b) {
		memset(pool, 0x77, 65536);
		CHECK_I(run_rw(b, OP_WRITE, &iov, 1, 0), 0);
		CHECK(block_can_unmap(b), "ramfs image: can_unmap before any discard");
		CHECK_I(run_zero(b, OP_DISCARD, 8192, 8192), 0);
		CHECK(!block_can_unmap(b), "ramfs image: can_unmap after a refused punch");
		CHECK_I(run_zero(b, OP_DISCARD, 32768, 4096), 0);
		CHECK_I(run_zero(b, OP_ZEROES, 49152, 512), 0);
		CHECK_I(run_rw(b, OP_READ, &iov, 1, 0), 0);
		CHECK(all_zero(pool + 8192, 8192) && all_zero(pool + 32768, 4096) &&
		      all_zero(pool + 49152, 512) && pool[8191] == 0x77 && pool[16384] == 0x77 &&
		      pool[36864] == 0x77 && pool[49664] == 0x77, "ramfs zeroing: wrong data");
		block_close(b);
	}
	unmount_fs(dir);
}

/* A loop block device over a file: the size comes from BLKGETSIZE64. */
static void test_blockdev(void)
{
	const char *file = make_file(test_dir, "backing", 2 * IMG + 1024);
	int ctl, n, dev = -1, backing = open(file, O_RDWR | O_CLOEXEC);
	char name[32];
	struct block *b;
	struct iovec iov = { pool, 8192 };

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	n = ctl < 0 ? -1 : ioctl(ctl, LOOP_CTL_GET_FREE);
	snprintf(name, sizeof(name), "/dev/loop%d", n);
	if (n >= 0)
		dev = open(name, O_RDWR | O_CLOEXEC);
	if (dev < 0 || ioctl(dev, LOOP_CONFIGURE, &(struct loop_config){
		.fd = (unsigned)backing, .info.lo_flags = LO_FLAGS_AUTOCLEAR })) {
		printf("skip block device tests: no loop device here: %s\n", strerror(errno));
		goto out;
	}
	b = open_img(name, false, true);
	if (b) {
		CHECK_U(block_size(b), 2 * IMG + 1024);
		pattern(pool, 8192, 0, 9);
		CHECK_I(run_rw(b, OP_WRITE, &iov, 1, IMG), 0);
		memset(pool, 0, 8192);
		CHECK_I(run_rw(b, OP_READ, &iov, 1, IMG), 0);
		pattern(pool + POOL_SLOT, 8192, 0, 9);
		CHECK(!memcmp(pool, pool + POOL_SLOT, 8192), "block device read back wrong");
		CHECK_I(run_zero(b, OP_ZEROES, IMG, 4096), 0);
		CHECK_I(run_rw(b, OP_READ, &iov, 1, IMG), 0);
		CHECK(all_zero(pool, 4096), "block device write_zeroes");
		block_close(b);
	}
out:
	if (dev >= 0)
		close(dev);
	if (ctl >= 0)
		close(ctl);
	close(backing);
	unlink(file);
}

/* ---- null ---- */

static void test_null(void)
{
	struct block_open_params p = { .format = BLOCK_FORMAT_NULL, .size = 64 * 1024 * 1024 };
	struct iovec iov[3] = { { pool, 100 }, { pool + 4096, 3996 }, { pool + 16384, 65536 } };
	struct block *b = NULL;
	char err[256] = "";

	CHECK(block_open(&p, &b, err, sizeof(err)) == 0, "null: %s", err);
	if (!b)
		return;
	CHECK_U(block_size(b), 64 * 1024 * 1024);
	CHECK(!block_readonly(b) && block_can_unmap(b), "null: flags");
	memset(pool, 0xcc, 2 * POOL_SLOT);
	CHECK_I(run_rw(b, OP_READ, iov, 3, 12345 * 512), 0);
	CHECK(all_zero(pool, 100) && all_zero(pool + 4096, 3996) && all_zero(pool + 16384, 65536),
	      "null read did not zero the buffers");
	CHECK(pool[100] == 0xcc && pool[16384 + 65536] == 0xcc, "null read wrote outside the iovecs");
	CHECK_I(run_rw(b, OP_WRITE, iov, 3, 0), 0);
	CHECK_I(run_rw(b, OP_FLUSH, NULL, 0, 0), 0);
	CHECK_I(run_zero(b, OP_DISCARD, 0, 1 << 20), 0);
	CHECK_I(run_zero(b, OP_ZEROES, 4096, 512), 0);
	CHECK_I(run_zero(b, OP_ZEROES_UNMAP, 8192, 512), 0);
	block_close(b);

	p.readonly = true;
	CHECK(block_open(&p, &b, err, sizeof(err)) == 0, "readonly null: %s", err);
	CHECK_I(run_rw(b, OP_WRITE, iov, 3, 0), -EROFS);
	CHECK_I(run_zero(b, OP_DISCARD, 0, 512), -EROFS);
	block_close(b);
	p.size = 1000;
	expect_open_error(&p, -EINVAL, "null image: expected a size that is a non-zero multiple "
			  "of 512 bytes, found 1000");
}

/* ---- two loops, one image ---- */

struct worker {
	pthread_t th;
	struct block *b;
	uint64_t base;			/* its own 256 KiB of the image */
	unsigned char *buf;		/* its own 2 pool slots */
	int bad;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct iovec iov = { w->buf, 16384 };
	struct loop *l;
	int i;

	if (loop_new(&(struct loop_params){ .name = "worker" }, &l)) {
		w->bad = 1;
		return NULL;
	}
	for (i = 0; i < 40; i++) {
		uint64_t off = w->base + (uint64_t)(i % 16) * 16384;

		pattern(w->buf, 16384, off, (unsigned)i);
		w->bad += run_op(l, w->b, OP_WRITE, &iov, 1, off, 0) != 0;
		memset(w->buf, 0, 16384);
		w->bad += run_op(l, w->b, OP_READ, &iov, 1, off, 0) != 0;
		pattern(w->buf + POOL_SLOT, 16384, off, (unsigned)i);
		w->bad += memcmp(w->buf, w->buf + POOL_SLOT, 16384) != 0;
		w->bad += run_op(l, w->b, OP_DISCARD, NULL, 0, off, 4096) != 0;
	}
	loop_free(l);
	return NULL;
}

static void test_threads(const char *path)
{
	struct worker w[2];
	struct block *b = open_img(path, false, false);
	unsigned i;

	if (!b)
		return;
	for (i = 0; i < 2; i++) {
		w[i] = (struct worker){ .b = b, .base = i * 256 * 1024, .buf = pool + 2 * i * POOL_SLOT };
		pthread_create(&w[i].th, NULL, worker_main, &w[i]);
	}
	for (i = 0; i < 2; i++) {
		pthread_join(w[i].th, NULL);
		CHECK(w[i].bad == 0, "worker %u: %d failures", i, w[i].bad);
	}
	block_close(b);
}

/* ---- main ---- */

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	const char *why;
	int ret;

	/* Mounts made here vanish with the process, even if it crashes. Before
	 * any thread exists (io_uring's workers included). */
	own_mounts = !unshare(CLONE_NEWNS) && !mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
	ret = loop_new(&(struct loop_params){ .name = "test" }, &main_loop);
	if (ret) {
		why = loop_unavailable_reason(ret);
		printf("%s: loop_new: %s\n", why ? "SKIP" : "FAIL", why ? why : strerror(-ret));
		exit(why ? 77 : 1);
	}
	snprintf(test_dir, sizeof(test_dir), "%s/test_block.XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(test_dir) || posix_memalign((void **)&pool, 4096, POOL_SLOTS * POOL_SLOT)) {
		printf("FAIL: setup: %s\n", strerror(errno));
		exit(1);
	}
}

int main(void)
{
	char path[PATH_MAX];

	setvbuf(stdout, NULL, _IONBF, 0);
	alarm(120);
	setup();
	snprintf(path, sizeof(path), "%s", make_file(test_dir, "img", IMG + 100));
	test_buffered(path);
	test_readonly(path);
	test_direct(path);
	test_zeroing(path, false);
	test_zeroing(path, true);
	test_open_errors();
	test_short_read(false);
	test_short_read(true);
	test_tmpfs();
	test_ramfs();
	test_blockdev();
	test_null();
	test_threads(path);
	unlink(path);
	CHECK(rmdir(test_dir) == 0, "rmdir %s: %s", test_dir, strerror(errno));
	loop_free(main_loop);
	free(pool);
	if (test_failures) {
		printf("%d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_block: all passed\n");
	return 0;
}
