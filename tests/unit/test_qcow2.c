/*
 * qcow2 driver tests through block.h, on real files and a real io_uring
 * loop, with QEMU's own tools as the oracle: images made by qemu-img
 * create/convert (v2 = compat 0.10 and v3, clusters of 512 B, 64 KiB and
 * 2 MiB, qcow2 and raw backing files, compressed clusters) and written by
 * qemu-io, read back here and compared with `qemu-img convert -O raw`;
 * our own writes, discards and zeroes then pass `qemu-img check` (no
 * errors, no leaks) and `qemu-img compare` against a raw image written
 * the same way; hostile images (truncated tables, offsets past the end,
 * refcount trouble, absurd sizes, backing loops, unsupported features)
 * are refused with their one-line message or fail I/O; and several real
 * IOThreads hammer overlapping clusters of one image (for TSan).
 * Exit 0 pass, 1 fail, 77 when io_uring or qemu-img is missing here.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/check.h"
#include "block/block.h"
#include "core/iothread.h"
#include "core/loop.h"
#include "core/util.h"

#define MS 1000000ULL
#define BUF_MAX (4 * MiB)

static char test_dir[PATH_MAX];
static struct loop *main_loop;
static unsigned char *buf, *ref;	/* BUF_MAX each */

/* ---- files and commands ---- */

/* dir/name in one of a few rotating buffers. */
static const char *P(const char *name)
{
	static char paths[8][PATH_MAX];
	static unsigned next;
	char *p = paths[next++ % 8];

	if (snprintf(p, PATH_MAX, "%s/%s", test_dir, name) >= PATH_MAX)
		abort();
	return p;
}

/* dir/name into out, for a path that must outlive P's rotation. */
static void path_of(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s", P(name));
}

/* Runs a shell command in test_dir; its exit status (-1: not run). */
__attribute__((format(printf, 1, 2)))
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int n, st;

	n = snprintf(cmd, sizeof(cmd), "cd '%s' && ", test_dir);
	va_start(ap, fmt);
	vsnprintf(cmd + n, sizeof(cmd) - (size_t)n, fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* Like sh, but a failure is a test failure. */
#define SH(...) CHECK(sh(__VA_ARGS__) == 0, "command failed: " __VA_ARGS__)

static uint64_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_size;
}

static void file_read(const char *path, void *p, size_t len, uint64_t off)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	CHECK(fd >= 0 && pread(fd, p, len, (off_t)off) == (ssize_t)len, "read %s", path);
	if (fd >= 0)
		close(fd);
}

static void file_write(const char *path, const void *p, size_t len, uint64_t off)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	CHECK(fd >= 0 && pwrite(fd, p, len, (off_t)off) == (ssize_t)len, "write %s", path);
	if (fd >= 0)
		close(fd);
}

static uint64_t be64_at(const char *path, uint64_t off)
{
	uint64_t v = 0;

	file_read(path, &v, 8, off);
	return __builtin_bswap64(v);
}

static void put_be64(const char *path, uint64_t off, uint64_t v)
{
	v = __builtin_bswap64(v);
	file_write(path, &v, 8, off);
}

static void put_be32(const char *path, uint64_t off, uint32_t v)
{
	v = __builtin_bswap32(v);
	file_write(path, &v, 4, off);
}

/* The offset of header extension `type` of a v3 image, 0 if none. */
static uint64_t find_ext(const char *path, uint32_t type)
{
	uint32_t hl = 0, t, n;
	uint64_t off;

	file_read(path, &hl, 4, 100);
	for (off = __builtin_bswap32(hl); off + 8 <= 4096; off += 8 + ALIGN_UP((uint64_t)n, 8)) {
		file_read(path, &t, 4, off);
		file_read(path, &n, 4, off + 4);
		t = __builtin_bswap32(t);
		n = __builtin_bswap32(n);
		if (t == type)
			return off;
		if (!t)
			break;
	}
	return 0;
}

/* ---- requests ---- */

struct treq {
	struct block_req r;
	int res;
	int calls;
};

static void treq_done(struct block_req *r, int res)
{
	struct treq *t = container_of(r, struct treq, r);

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

/* Submits one request on l and runs l until it completes; the submit
 * error or the completion's result. done must not run inside submit. */
static int run_on(struct loop *l, struct block *b, enum op op, struct iovec *iov, unsigned niov,
		  uint64_t off, uint64_t len)
{
	struct treq t = { .res = 1 };
	uint64_t end;
	int ret = submit(l, b, &t, op, iov, niov, off, len);

	CHECK(t.calls == 0, "op %d: done ran inside the submitting call", op);
	if (ret)
		return ret;
	for (end = clock_ns() + 20000 * MS; !t.calls && clock_ns() < end;)
		loop_run_once(l, true);
	CHECK(t.calls == 1, "op %d: done ran %d times", op, t.calls);
	return t.res;
}

static int run_op(struct block *b, enum op op, struct iovec *iov, unsigned niov, uint64_t off,
		  uint64_t len)
{
	return run_on(main_loop, b, op, iov, niov, off, len);
}

static int rd(struct block *b, void *p, size_t len, uint64_t off)
{
	struct iovec iov = { p, len };

	return run_op(b, OP_READ, &iov, 1, off, 0);
}

static int wr(struct block *b, const void *p, size_t len, uint64_t off)
{
	struct iovec iov = { (void *)p, len };

	return run_op(b, OP_WRITE, &iov, 1, off, 0);
}

static struct block *open_fmt(const char *path, enum block_format fmt, bool readonly,
			      uint64_t l2_cache)
{
	struct block_open_params p = { .path = path, .format = fmt, .readonly = readonly,
				       .l2_cache = l2_cache };
	struct block *b = NULL;
	char err[512] = "";
	int ret = block_open(&p, &b, err, sizeof(err));

	CHECK(ret == 0, "block_open %s: %d: %s", path, ret, err);
	return ret ? NULL : b;
}

static struct block *open_q(const char *path, bool readonly)
{
	return open_fmt(path, BLOCK_FORMAT_QCOW2, readonly, 0);
}

/* Opening path must fail with ret and a message containing want. */
static void expect_refused(const char *path, bool readonly, int want_ret, const char *want)
{
	struct block_open_params p = { .path = path, .format = BLOCK_FORMAT_QCOW2,
				       .readonly = readonly };
	struct block *b = NULL;
	char err[512] = "";
	int ret = block_open(&p, &b, err, sizeof(err));

	CHECK(ret == want_ret, "open %s: got %d (%s), want %d", path, ret, err, want_ret);
	CHECK(strstr(err, want) && !strchr(err, '\n'), "open %s: message \"%s\" lacks \"%s\"",
	      path, err, want);
	if (!ret)
		block_close(b);
}

/* ---- comparing ---- */

static const unsigned char zeros[4096];

static uint64_t rnd_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* Reads all of b in chunks of random sector counts, each split over up to
 * three iovecs at odd places, and compares with the raw file. */
static void compare_raw(struct block *b, const char *raw, const char *what)
{
	uint64_t size = block_size(b), off, len;
	struct iovec iov[3];
	int ret, bad = 0;

	CHECK_U(file_size(raw), size);
	for (off = 0; off < size && !bad; off += len) {
		size_t a, c;

		len = (1 + rnd() % 512) * 512;
		len = len < size - off ? len : size - off;
		a = (size_t)(rnd() % (len + 1));
		c = (size_t)(rnd() % (len - a + 1));
		iov[0] = (struct iovec){ buf, a };
		iov[1] = (struct iovec){ buf + a, c };
		iov[2] = (struct iovec){ buf + a + c, len - a - c };
		memset(buf, 0xee, len);
		ret = run_op(b, OP_READ, iov, 3, off, 0);
		file_read(raw, ref, len, off);
		bad = ret || memcmp(buf, ref, len);
		for (a = 0; bad && a < len && buf[a] == ref[a]; a++)
			;
		CHECK(!bad, "%s: read at %llu+%llu: %d, or byte %llu is %#x, not %#x as in %s", what,
		      (unsigned long long)off, (unsigned long long)len, ret,
		      (unsigned long long)(off + a), a < len ? buf[a] : 0, a < len ? ref[a] : 0, raw);
	}
}

/* qemu-img's view of img as a raw file, compared with ours. */
static void compare_qemu(struct block *b, const char *img, const char *what)
{
	SH("qemu-img convert -O raw '%s' ref.raw", img);
	compare_raw(b, P("ref.raw"), what);
	unlink(P("ref.raw"));
}

/* `qemu-img check` finds neither errors nor leaks. */
static void check_clean(const char *img, const char *what)
{
	int st = sh("qemu-img check -q '%s'", img);

	CHECK(st == 0, "%s: qemu-img check %s exits %d", what, img, st);
	if (st)
		sh("qemu-img check '%s' >&2", img);
}

/* ---- reads of qemu-made images ---- */

/* Data over clusters, unaligned, across L2 tables (at 5M with 512-byte
 * clusters), and v3 zero clusters, with and without an allocation. */
static void write_patterns(const char *img, bool v3)
{
	SH("qemu-io -f qcow2 -c 'write -P 0x11 0 64k' -c 'write -P 0x22 100k 3k' "
	   "-c 'write -P 0x33 1M 512' -c 'write -P 0x44 4800k 1M' -c 'write -P 0x55 7M 1M' "
	   "'%s' >/dev/null", img);
	if (v3)
		SH("qemu-io -f qcow2 -c 'write -z 7M 512k' -c 'write -z -u 4M 2M' '%s' >/dev/null",
		   img);
}

static void test_read_matrix(void)
{
	static const char *const compat[] = { "0.10", "1.1" };
	static const uint64_t cluster[] = { 512, 64 * KiB, 2 * MiB };
	unsigned i, j;
	char what[64];

	for (i = 0; i < ARRAY_SIZE(compat); i++) {
		for (j = 0; j < ARRAY_SIZE(cluster); j++) {
			struct block *b;

			snprintf(what, sizeof(what), "compat %s, cluster %llu", compat[i],
				 (unsigned long long)cluster[j]);
			SH("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%llu r.qcow2 16M",
			   compat[i], (unsigned long long)cluster[j]);
			write_patterns(P("r.qcow2"), i == 1);
			b = open_q(P("r.qcow2"), true);
			if (!b)
				continue;
			CHECK_U(block_size(b), 16 * MiB);
			CHECK(block_readonly(b), "%s: not readonly", what);
			compare_qemu(b, P("r.qcow2"), what);
			block_close(b);
		}
	}
	unlink(P("r.qcow2"));
}

/* format = auto reads the magic; raw never does. */
static void test_probe(void)
{
	struct block *b;

	SH("qemu-img create -q -f qcow2 p.qcow2 1M && qemu-io -f qcow2 -c 'write -P 0x77 0 4k' "
	   "p.qcow2 >/dev/null && head -c 1M /dev/zero > p.raw");
	b = open_fmt(P("p.qcow2"), BLOCK_FORMAT_AUTO, true, 0);
	if (b) {
		CHECK_U(block_size(b), 1 * MiB);
		CHECK_I(rd(b, buf, 4096, 0), 0);
		CHECK(buf[0] == 0x77 && buf[4095] == 0x77, "auto: qcow2 data not seen");
		block_close(b);
	}
	b = open_fmt(P("p.qcow2"), BLOCK_FORMAT_RAW, true, 0);
	if (b) {
		CHECK_I(rd(b, buf, 512, 0), 0);
		CHECK(!memcmp(buf, "QFI\xfb", 4), "raw: the header should be the data");
		block_close(b);
	}
	b = open_fmt(P("p.raw"), BLOCK_FORMAT_AUTO, false, 0);
	if (b) {
		CHECK_U(block_size(b), 1 * MiB);
		block_close(b);
	}
	expect_refused(P("p.raw"), true, -EINVAL, "not a qcow2 image");
	unlink(P("p.qcow2"));
	unlink(P("p.raw"));
}

static void test_compressed(void)
{
	static const uint64_t cluster[] = { 512, 64 * KiB, 2 * MiB };
	struct block *b;
	unsigned j;

	SH("qemu-img create -q -f raw c.raw 8M && qemu-io -f raw -c 'write -P 0x5a 0 1M' "
	   "-c 'write -P 0x00 1M 1M' -c 'write -P 0xa5 5M 100k' c.raw >/dev/null && "
	   "head -c 1M /dev/urandom | dd of=c.raw bs=1M seek=3 conv=notrunc status=none && "
	   "seq 1 200000 | dd of=c.raw bs=1M seek=6 conv=notrunc status=none");
	for (j = 0; j < ARRAY_SIZE(cluster); j++) {
		SH("qemu-img convert -c -O qcow2 -o cluster_size=%llu c.raw c.qcow2",
		   (unsigned long long)cluster[j]);
		b = open_q(P("c.qcow2"), true);
		if (!b)
			continue;
		compare_raw(b, P("c.raw"), "compressed");
		block_close(b);
	}
	unlink(P("c.qcow2"));
	unlink(P("c.raw"));
}

/* qcow2 and raw backing files, relative names, a backing file shorter
 * than the image, a probed backing format. */
static void test_backing(void)
{
	struct block *b;

	SH("mkdir -p sub && qemu-img create -q -f qcow2 sub/base.qcow2 4M && "
	   "qemu-io -f qcow2 -c 'write -P 0x61 0 4M' sub/base.qcow2 >/dev/null && "
	   "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 sub/mid.qcow2 6M && "
	   "qemu-io -f qcow2 -c 'write -P 0x62 64k 64k' -c 'write -P 0x63 3M 2M' sub/mid.qcow2 >/dev/null && "
	   "qemu-img create -q -f qcow2 -b sub/mid.qcow2 -F qcow2 top.qcow2 8M && "
	   "qemu-io -f qcow2 -c 'write -P 0x64 100k 1k' -c 'write -z 3M 64k' top.qcow2 >/dev/null");
	b = open_q(P("top.qcow2"), false);
	if (b) {
		compare_qemu(b, P("top.qcow2"), "qcow2 chain");
		block_close(b);
	}
	SH("head -c 3M /dev/urandom > base.raw && "
	   "qemu-img create -q -f qcow2 -b base.raw -F raw rtop.qcow2 4M && "
	   "qemu-io -f qcow2 -c 'write -P 0x65 1M 4k' rtop.qcow2 >/dev/null && "
	   "qemu-img create -q -f qcow2 -b base.raw -F raw probed.qcow2 4M");
	/* No backing format any more: an unknown extension, skipped. */
	put_be32(P("probed.qcow2"), find_ext(P("probed.qcow2"), 0xe2792aca), 0x12345678);
	b = open_q(P("rtop.qcow2"), true);
	if (b) {
		compare_qemu(b, P("rtop.qcow2"), "raw backing");
		block_close(b);
	}
	check_clean(P("top.qcow2"), "after a read-write open");
	b = open_q(P("probed.qcow2"), true);
	if (b) {
		compare_qemu(b, P("probed.qcow2"), "probed raw backing");
		block_close(b);
	}
}

/* ---- writes ---- */

/* The disk as it should read: what our requests did, starting from what
 * qemu-img says the image held. */
struct model {
	unsigned char *data;
	unsigned char *backing;		/* what unallocated clusters read */
	uint64_t size, cs;
	bool v3;
	bool has_backing;
};

static void model_init(struct model *m, const char *img, uint64_t size, uint64_t cs, bool v3,
		       const char *backing)
{
	*m = (struct model){ .data = malloc(size), .backing = calloc(1, size), .size = size,
			     .cs = cs, .v3 = v3, .has_backing = backing != NULL };
	SH("qemu-img convert -O raw '%s' model.raw", img);
	file_read(P("model.raw"), m->data, size, 0);
	if (backing) {
		uint64_t bs;

		SH("qemu-img convert -O raw '%s' model.raw", backing);
		bs = file_size(P("model.raw"));
		file_read(P("model.raw"), m->backing, bs < size ? bs : size, 0);
	}
	unlink(P("model.raw"));
}

static void model_free(struct model *m)
{
	free(m->data);
	free(m->backing);
}

/* What a discard does here: whole clusters read as zeros, or as the
 * backing file in a v2 image that has one; partial clusters keep their
 * data. The disk's last cluster is whole when the range reaches its end. */
static void model_discard(struct model *m, uint64_t off, uint64_t len)
{
	uint64_t lo = ALIGN_UP(off, m->cs), hi = off + len == m->size ? off + len :
						    (off + len) & ~(m->cs - 1);

	if (lo >= hi)
		return;
	if (m->has_backing && !m->v3)
		memcpy(m->data + lo, m->backing + lo, hi - lo);
	else
		memset(m->data + lo, 0, hi - lo);
}

/* One random request on b, mirrored in m: writes of 1 to 300 sectors
 * in up to 3 iovecs, discards, zeroes and flushes. */
static void random_op(struct block *b, struct model *m, unsigned pct_write)
{
	uint64_t len = (1 + rnd() % 300) * 512, off, r = rnd() % 100;
	struct iovec iov[3];
	size_t a, c;
	int ret;

	len = len < m->size ? len : m->size;
	off = (rnd() % ((m->size - len) / 512 + 1)) * 512;
	if (r < pct_write) {
		a = (size_t)(rnd() % (len + 1));
		c = (size_t)(rnd() % (len - a + 1));
		memset(buf, (int)(rnd() | 1), len);
		buf[0] = (unsigned char)off;
		iov[0] = (struct iovec){ buf, a };
		iov[1] = (struct iovec){ buf + a, c };
		iov[2] = (struct iovec){ buf + a + c, len - a - c };
		ret = run_op(b, OP_WRITE, iov, 3, off, 0);
		memcpy(m->data + off, buf, len);
	} else if (r < pct_write + 8) {
		ret = run_op(b, OP_DISCARD, NULL, 0, off, len);
		model_discard(m, off, len);
	} else if (r < pct_write + 16) {
		ret = run_op(b, r & 1 ? OP_ZEROES_UNMAP : OP_ZEROES, NULL, 0, off, len);
		memset(m->data + off, 0, len);
	} else {
		ret = run_op(b, OP_FLUSH, NULL, 0, 0, 0);
	}
	CHECK(ret == 0, "op at %llu+%llu: %d", (unsigned long long)off, (unsigned long long)len, ret);
}

/* b reads as m, and so does qemu-img once b is closed; the image checks
 * clean (no errors, no leaks). Closes b. */
static void model_verify(struct block *b, struct model *m, const char *img, const char *what)
{
	int fd = open(P("model.raw"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	CHECK(fd >= 0 && write(fd, m->data, m->size) == (ssize_t)m->size, "model.raw");
	close(fd);
	compare_raw(b, P("model.raw"), what);
	block_close(b);
	check_clean(img, what);
	CHECK(sh("qemu-img compare -q '%s' model.raw", img) == 0, "%s: qemu-img compare differs",
	      what);
	unlink(P("model.raw"));
}

/* Random writes, discards, zeroes and flushes on qemu-made images of every
 * version and cluster size, with and without a backing file. */
static void test_write_matrix(void)
{
	static const char *const compat[] = { "0.10", "1.1" };
	static const uint64_t cluster[] = { 512, 64 * KiB, 2 * MiB };
	unsigned i, j, k, n;
	char what[96];

	SH("qemu-img create -q -f qcow2 wb.qcow2 8M && "
	   "qemu-io -f qcow2 -c 'write -P 0x99 0 8M' wb.qcow2 >/dev/null");
	for (i = 0; i < ARRAY_SIZE(compat); i++) {
		for (j = 0; j < ARRAY_SIZE(cluster); j++) {
			for (k = 0; k < 2; k++) {
				struct model m;
				struct block *b;

				snprintf(what, sizeof(what), "writes: compat %s, cluster %llu%s",
					 compat[i], (unsigned long long)cluster[j],
					 k ? ", backing file" : "");
				SH("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%llu %s w.qcow2 8M",
				   compat[i], (unsigned long long)cluster[j],
				   k ? "-b wb.qcow2 -F qcow2" : "");
				write_patterns(P("w.qcow2"), i == 1);
				model_init(&m, P("w.qcow2"), 8 * MiB, cluster[j], i == 1,
					   k ? P("wb.qcow2") : NULL);
				b = open_q(P("w.qcow2"), false);
				if (!b) {
					model_free(&m);
					continue;
				}
				for (n = 0; n < 400; n++)
					random_op(b, &m, 70);
				model_verify(b, &m, P("w.qcow2"), what);
				model_free(&m);
			}
		}
	}
}

/* Writes len bytes of a pattern of off at off, in 256 KiB pieces, and
 * mirrors them in m. */
static void fill(struct block *b, struct model *m, uint64_t off, uint64_t len, unsigned seed)
{
	uint64_t i, n;

	for (; len; off += n, len -= n) {
		n = len < 256 * KiB ? len : 256 * KiB;
		for (i = 0; i < n; i++)
			buf[i] = (unsigned char)((off + i) * 7 + seed + ((off + i) >> 12));
		CHECK_I(wr(b, buf, n, off), 0);
		memcpy(m->data + off, buf, n);
	}
}

/* The refcount table fills up and moves (512-byte clusters: one table
 * cluster covers 8 MiB), with refcount blocks created on the way. */
static void test_refcount_growth(void)
{
	char g[PATH_MAX];
	uint64_t rt0;
	struct model m;
	struct block *b;

	path_of(g, "g.qcow2");

	SH("qemu-img create -q -f qcow2 -o cluster_size=512 g.qcow2 32M");
	rt0 = be64_at(g, 48);
	model_init(&m, g, 32 * MiB, 512, true, NULL);
	b = open_q(g, false);
	if (b) {
		fill(b, &m, 0, 20 * MiB, 1);
		CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
		fill(b, &m, 30 * MiB, 2 * MiB, 2);
		model_verify(b, &m, g, "refcount table growth");
	}
	CHECK(be64_at(g, 48) != rt0, "the refcount table did not move");
	model_free(&m);
}

/* An L1 table smaller than the disk (the size field edited up) grows on
 * the first write past it. */
static void test_l1_growth(void)
{
	char g[PATH_MAX];
	uint64_t l1;
	struct model m;
	struct block *b;

	path_of(g, "l1.qcow2");

	SH("qemu-img create -q -f qcow2 -o cluster_size=512 l1.qcow2 1M && "
	   "qemu-io -f qcow2 -c 'write -P 0x31 0 64k' l1.qcow2 >/dev/null");
	l1 = be64_at(g, 40);
	put_be64(g, 24, 4 * MiB);
	b = open_q(g, false);
	if (!b)
		return;
	CHECK_I(rd(b, buf, 512, 3 * MiB), 0);
	CHECK(!memcmp(buf, zeros, 512), "past the L1 table: not zeros");
	m = (struct model){ .data = calloc(1, 4 * MiB), .size = 4 * MiB, .cs = 512, .v3 = true };
	memset(m.data, 0x31, 64 * KiB);
	fill(b, &m, 3 * MiB, 100 * KiB, 3);
	model_verify(b, &m, g, "L1 growth");
	CHECK(be64_at(g, 40) != l1, "the L1 table did not move");
	CHECK_U(be64_at(g, 36) >> 32, 128);
	model_free(&m);
}

/* Refcount widths of 1 to 64 bits, and writes over compressed clusters
 * (several share a host cluster, whose count drops one by one). */
static void test_refcount_widths(void)
{
	static const unsigned bits[] = { 1, 2, 8, 32, 64 };
	struct model m;
	struct block *b;
	char what[64];
	unsigned i, n;

	for (i = 0; i <= ARRAY_SIZE(bits); i++) {
		if (i < ARRAY_SIZE(bits))
			SH("qemu-img create -q -f qcow2 -o cluster_size=4096,refcount_bits=%u rw.qcow2 8M",
			   bits[i]);
		else
			SH("head -c 4M /dev/urandom > rw.raw && seq 1 900000 | head -c 4M >> rw.raw && "
			   "qemu-img convert -c -O qcow2 -o cluster_size=4096 rw.raw rw.qcow2");
		snprintf(what, sizeof(what), i < ARRAY_SIZE(bits) ? "refcount_bits %u" :
			 "writes over compressed clusters", i < ARRAY_SIZE(bits) ? bits[i] : 0);
		model_init(&m, P("rw.qcow2"), 8 * MiB, 4096, true, NULL);
		b = open_q(P("rw.qcow2"), false);
		for (n = 0; b && n < 300; n++)
			random_op(b, &m, 70);
		if (b)
			model_verify(b, &m, P("rw.qcow2"), what);
		model_free(&m);
	}
}

/* A disk whose size is not a multiple of the cluster size, over a shorter
 * backing file; and partial zeroing of clusters that read as zeros
 * already allocates nothing. */
static void test_odd_size(void)
{
	char g[PATH_MAX];
	uint64_t before;
	struct model m;
	struct block *b;
	unsigned n;

	path_of(g, "odd.qcow2");
	SH("qemu-img create -q -f qcow2 -o cluster_size=65536 oddb.qcow2 3000k && "
	   "qemu-io -f qcow2 -c 'write -P 0x3c 0 3000k' oddb.qcow2 >/dev/null && "
	   "qemu-img create -q -f qcow2 -o cluster_size=65536 -b oddb.qcow2 -F qcow2 odd.qcow2 4500k");
	model_init(&m, g, 4500 * KiB, 64 * KiB, true, P("oddb.qcow2"));
	b = open_q(g, false);
	if (!b)
		return;
	before = file_size(g);
	CHECK_I(run_op(b, OP_ZEROES, NULL, 0, 4100 * KiB, 8 * KiB), 0);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	CHECK_U(file_size(g), before);
	for (n = 0; n < 300; n++)
		random_op(b, &m, 70);
	CHECK_I(run_op(b, OP_ZEROES, NULL, 0, 4500 * KiB - 1024, 1024), 0);
	memset(m.data + 4500 * KiB - 1024, 0, 1024);
	model_verify(b, &m, g, "odd size");
	model_free(&m);
}

/* A release that would take a count below zero (the image says a cluster
 * in use is free) marks the image broken: writes and flushes fail, reads
 * go on. */
static void test_refcount_underflow(void)
{
	char g[PATH_MAX];
	uint64_t l2, e, rb;
	struct block *b;

	path_of(g, "under.qcow2");
	SH("seq 1 100000 | head -c 64k > under.raw && "
	   "qemu-img convert -c -O qcow2 -o cluster_size=4096 under.raw under.qcow2");
	l2 = be64_at(g, be64_at(g, 40)) & 0x00fffffffffffe00ULL;
	e = be64_at(g, l2);
	rb = be64_at(g, be64_at(g, 48));
	CHECK(e >> 62 == 1, "the first cluster is not compressed: %llx", (unsigned long long)e);
	/* 4 KiB clusters: the offset is the low 58 bits; 16-bit refcounts.
	 * The first host cluster of compressed data holds three guest
	 * clusters; say it holds one, and overwrite two. */
	file_write(g, "\0\1", 2, rb + ((e & ((1ULL << 58) - 1)) >> 12) * 2);
	b = open_q(g, false);
	if (!b)
		return;
	CHECK_I(wr(b, zeros, 4096, 0), 0);
	CHECK_I(wr(b, zeros, 4096, 4096), 0);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	run_op(b, OP_FLUSH, NULL, 0, 0, 0);
	CHECK_I(wr(b, zeros, 4096, 8192), -EIO);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), -EIO);
	CHECK_I(rd(b, buf, 4096, 2 * 4096), 0);
	file_read(P("under.raw"), ref, 4096, 2 * 4096);
	CHECK(!memcmp(buf, ref, 4096), "reads of a broken image go wrong");
	block_close(b);
}

/* The smallest caches against 512-byte clusters, on an image with data
 * scattered over 64 MiB: a search for free clusters walks far more
 * refcount blocks than the cache holds (it must go on where it was after
 * each load), and new refcount blocks must not push out the ones the same
 * allocation is counting in. */
static void test_cache_pressure(void)
{
	char g[PATH_MAX];
	struct model m;
	struct block *b;
	unsigned n;

	path_of(g, "press.qcow2");
	SH("qemu-img create -q -f qcow2 -o cluster_size=512 press.qcow2 64M && "
	   "qemu-io -f qcow2 -c 'write -P 0x5a 0 1M' -c 'write -P 0x6b 5M 64k' "
	   "-c 'write -P 0x77 40M 4M' -c 'write -z 41M 1M' -c 'write -z -u 42M 1M' "
	   "-c 'discard 43M 512k' -c 'write -c -P 0x42 16M 512' press.qcow2 >/dev/null");
	model_init(&m, g, 64 * MiB, 512, true, NULL);
	b = open_fmt(g, BLOCK_FORMAT_QCOW2, false, 64 * KiB);
	for (n = 0; b && n < 3000; n++)
		random_op(b, &m, 85);
	if (b)
		model_verify(b, &m, g, "cache pressure");
	model_free(&m);
	unlink(g);
}

static uint64_t file_alloc(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (uint64_t)st.st_blocks * 512;
}

/* A write of 4 KiB into new clusters past the end of the file writes the
 * 4 KiB, not the zeros around it (they read as zeros already), and the
 * last cluster, cut short by the end of the file, reads back whole. */
static void test_fresh_sparse(void)
{
	char g[PATH_MAX];
	uint64_t before;
	struct model m;
	struct block *b;

	path_of(g, "fresh.qcow2");
	SH("qemu-img create -q -f qcow2 fresh.qcow2 8M");
	model_init(&m, g, 8 * MiB, 64 * KiB, true, NULL);
	b = open_q(g, false);
	if (!b)
		return;
	fill(b, &m, 64 * KiB, 4 * KiB, 1);		/* a new L2 table and data cluster */
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	before = file_alloc(g);
	fill(b, &m, 3 * MiB + 8 * KiB, 4 * KiB, 2);	/* mid-cluster, the file's last */
	fill(b, &m, 5 * MiB + 60 * KiB, 4 * KiB, 3);	/* the end of a cluster */
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	CHECK(file_alloc(g) - before <= 16 * KiB,
	      "two 4 KiB writes into new clusters took %llu bytes of disk: zeros were written",
	      (unsigned long long)(file_alloc(g) - before));
	model_verify(b, &m, g, "fresh clusters");
	model_free(&m);
	unlink(g);
}

/* Discarded clusters are reused once two flushes made it safe. */
static void test_reuse(void)
{
	char g[PATH_MAX];
	uint64_t full;
	struct model m;
	struct block *b;

	path_of(g, "u.qcow2");

	SH("qemu-img create -q -f qcow2 u.qcow2 8M");
	model_init(&m, g, 8 * MiB, 64 * KiB, true, NULL);
	b = open_q(g, false);
	if (!b)
		return;
	fill(b, &m, 0, 8 * MiB, 4);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	full = file_size(g);
	CHECK_I(run_op(b, OP_DISCARD, NULL, 0, 0, 8 * MiB), 0);
	memset(m.data, 0, m.size);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	fill(b, &m, 0, 8 * MiB, 5);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	CHECK(file_size(g) <= full, "the file grew from %llu to %llu: freed clusters not reused",
	      (unsigned long long)full, (unsigned long long)file_size(g));
	model_verify(b, &m, g, "reuse");
	model_free(&m);
}

/* A read that looked its cluster up before the cluster was discarded
 * keeps it from being reused until the read is over: the read waits on a
 * second loop (not run yet) while the main loop discards the cluster,
 * flushes twice (which would release it) and allocates again. */
static void test_release_gate(void)
{
	struct treq t = { .res = 1 };
	struct iovec iov = { ref, 64 * KiB };
	struct loop *l2;
	struct block *b;
	char g[PATH_MAX];

	path_of(g, "gate.qcow2");
	SH("qemu-img create -q -f qcow2 gate.qcow2 1M");
	b = open_q(g, false);
	if (!b || loop_new(&(struct loop_params){ .name = "gate" }, &l2))
		return;
	memset(buf, 0x41, 64 * KiB);
	CHECK_I(wr(b, buf, 64 * KiB, 0), 0);
	CHECK_I(block_readv(b, l2, &t.r, &iov, 1, 0, treq_done), 0);
	CHECK_I(run_op(b, OP_DISCARD, NULL, 0, 0, 64 * KiB), 0);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	CHECK_I(run_op(b, OP_FLUSH, NULL, 0, 0, 0), 0);
	memset(buf, 0x42, 64 * KiB);
	CHECK_I(wr(b, buf, 64 * KiB, 512 * KiB), 0);
	while (!t.calls)
		loop_run_once(l2, true);
	CHECK_I(t.res, 0);
	CHECK(ref[0] == 0x41 && ref[64 * KiB - 1] == 0x41, "the read saw 0x%02x: its cluster was reused",
	      ref[0]);
	loop_free(l2);
	CHECK_I(rd(b, buf, 64 * KiB, 512 * KiB), 0);
	CHECK(buf[0] == 0x42, "the new write reads back wrong");
	block_close(b);
	check_clean(g, "release gate");
}

/* A guest that never flushes: the L2 tables it dirties (one per 2 MiB
 * here, with a 16-table cache) are written back once the cache holds
 * twice its limit and more, so the file on disk shows early writes
 * before any FLUSH. */
static void test_throttle(void)
{
	struct block *b;
	char g[PATH_MAX];
	uint64_t off;

	path_of(g, "t.qcow2");
	SH("qemu-img create -q -f qcow2 -o cluster_size=4096 t.qcow2 1G");
	b = open_fmt(g, BLOCK_FORMAT_QCOW2, false, 64 * KiB);
	if (!b)
		return;
	memset(buf, 0x5e, 4096);
	for (off = 0; off < 512 * MiB; off += 2 * MiB)
		CHECK_I(wr(b, buf, 4096, off), 0);
	SH("cp t.qcow2 tcopy.qcow2 && qemu-img convert -O raw tcopy.qcow2 tcopy.raw");
	file_read(P("tcopy.raw"), ref, 4096, 0);
	CHECK(ref[0] == 0x5e, "no writeback without a flush: the copy reads 0x%02x", ref[0]);
	block_close(b);
	check_clean(g, "throttle");
	unlink(P("tcopy.qcow2"));
	unlink(P("tcopy.raw"));
	unlink(g);
}

/* What a kill -9 would leave: the file as the page cache has it, copied
 * after every loop iteration of a random workload. `qemu-img check` on
 * each copy may find leaks, never corruption; right after a FLUSH the
 * copy holds everything written before it. */
static void crash_copy(const char *img, struct model *m, bool flushed)
{
	int st;

	SH("cp '%s' crash.qcow2", img);
	st = sh("qemu-img check -q crash.qcow2 >/dev/null 2>&1");
	CHECK(st == 0 || st == 3, "a crash copy is corrupt (qemu-img check exits %d)", st);
	if (st != 0 && st != 3)
		sh("qemu-img check crash.qcow2 >&2");
	if (!flushed)
		return;
	SH("qemu-img convert -O raw crash.qcow2 crash.raw");
	file_read(P("crash.raw"), ref, m->size, 0);
	CHECK(!memcmp(ref, m->data, m->size), "a flushed crash copy lacks acknowledged writes");
}

static void test_crash_copies(void)
{
	char g[PATH_MAX];
	unsigned n, it, copies = 0;
	struct model m;
	struct block *b;

	path_of(g, "k.qcow2");

	SH("qemu-img create -q -f qcow2 -o cluster_size=4096 k.qcow2 4M");
	model_init(&m, g, 4 * MiB, 4096, true, NULL);
	b = open_q(g, false);
	for (n = 0; b && n < 60; n++) {
		struct treq t = { .res = 1 };
		bool flush = n % 10 == 9;

		if (!flush) {
			random_op(b, &m, 85);
			crash_copy(g, &m, false);
			copies++;
			continue;
		}
		CHECK_I(block_flush(b, main_loop, &t.r, treq_done), 0);
		for (it = 0; !t.calls; it++) {
			loop_run_once(main_loop, true);
			if (!t.calls) {
				crash_copy(g, &m, false);
				copies++;
			}
		}
		CHECK_I(t.res, 0);
		crash_copy(g, &m, true);
	}
	printf("crash copies checked: %u\n", copies);
	if (b)
		model_verify(b, &m, g, "crash copies");
	model_free(&m);
	unlink(P("crash.qcow2"));
	unlink(P("crash.raw"));
}

/* ---- several IOThreads on one image ---- */

/*
 * Each worker runs on an IOThread of its own, with MT_DEPTH requests in
 * flight. The disk is cut into units of an eighth of a cluster. In the
 * first half, unit u belongs to worker u % MT_WORKERS, so every cluster is
 * shared by all workers, which only write there. In the second half whole
 * clusters belong to one worker, which writes units of them and discards
 * or zeroes all of them. A worker changes only its own units, each write
 * stamped with (unit, version), never two requests on one unit at a time;
 * it reads any range and checks each unit: its own hold exactly their
 * last state, the others a valid stamp of the right unit, zeros, or the
 * backing file's pattern. Afterwards the image must check clean and hold
 * every unit's last state.
 */
#define MT_WORKERS 3
#define MT_DEPTH 4
#define MT_OPS 3000
#define MT_SIZE (4 * MiB)
#define MT_BACKING 0x77

enum mt_state { MT_BACKING_DATA, MT_ZERO, MT_STAMP };

struct mt_worker;

struct mt_slot {
	struct block_req r;
	struct mt_worker *w;
	enum op op;
	uint64_t unit, nunits;		/* first unit and count */
	struct iovec iov;
	unsigned char *buf;
	uint32_t changes[24];		/* a read: each unit's count at submission */
	bool busy;
};

struct mt_unit {
	enum mt_state state;
	uint32_t ver;
	uint32_t changes;		/* requests that changed it so far */
	bool busy;
};

struct mt_worker {
	unsigned id;
	bool v2;			/* a discard shows the backing file */
	struct iothread *t;
	struct loop *l;
	struct block *b;
	struct loop_bh start;
	struct mt_slot slot[MT_DEPTH];
	struct mt_unit *u;		/* every unit; only our own change */
	uint64_t units, usize, rnd;
	unsigned left, running;
	int bad;
	atomic_bool done;
};

static uint64_t mt_rnd(struct mt_worker *w)
{
	w->rnd ^= w->rnd << 13;
	w->rnd ^= w->rnd >> 7;
	w->rnd ^= w->rnd << 17;
	return w->rnd;
}

static uint64_t mt_word(uint64_t unit, uint32_t ver)
{
	return 0x5a00000000000000ULL | unit << 24 | ver;
}

static void mt_stamp(unsigned char *p, uint64_t size, uint64_t unit, uint32_t ver)
{
	uint64_t i, w = mt_word(unit, ver);

	for (i = 0; i < size; i += 8)
		memcpy(p + i, &w, 8);
}

static unsigned mt_owner(const struct mt_worker *w, uint64_t unit)
{
	return (unsigned)(unit < w->units / 2 ? unit % MT_WORKERS : unit / 8 % MT_WORKERS);
}

/* Whether word v may be found in unit: zeros, the backing pattern, or a
 * stamp of this unit. */
static bool mt_word_ok(uint64_t v, uint64_t unit)
{
	return !v || v == 0x7777777777777777ULL ||
	       (v & ~0xffffffULL) == (0x5a00000000000000ULL | unit << 24);
}

/* Whether p (one unit's bytes) is what unit may hold: exactly its last
 * state when it is ours and nothing changed it while the read ran; else
 * any mix of valid words (a read that overlaps a write may see part of
 * each, but never bytes of another place). */
static bool mt_valid(const struct mt_worker *w, const unsigned char *p, uint64_t unit,
		     bool stable)
{
	const struct mt_unit *u = &w->u[unit];
	uint64_t want, v, i;

	if (mt_owner(w, unit) != w->id || !stable) {
		for (i = 0; i < w->usize; i += 8) {
			memcpy(&v, p + i, 8);
			if (!mt_word_ok(v, unit))
				return false;
		}
		return true;
	}
	want = u->state == MT_STAMP ? mt_word(unit, u->ver) :
	       u->state == MT_ZERO ? 0 : 0x7777777777777777ULL;
	for (i = 0; i < w->usize; i += 8) {
		memcpy(&v, p + i, 8);
		if (v != want)
			return false;
	}
	return true;
}

static void mt_next(struct mt_worker *w, struct mt_slot *s);

static void mt_done(struct block_req *r, int res)
{
	struct mt_slot *s = container_of(r, struct mt_slot, r);
	struct mt_worker *w = s->w;
	uint64_t i;

	w->bad += res != 0;
	for (i = 0; !res && s->op == OP_READ && i < s->nunits; i++) {
		const struct mt_unit *u = &w->u[s->unit + i];
		bool ok = mt_valid(w, s->buf + i * w->usize, s->unit + i,
				   !u->busy && u->changes == s->changes[i]);

		CHECK(ok, "worker %u: unit %llu (owner %u, state %d, version %u) reads as %016llx", w->id,
		      (unsigned long long)(s->unit + i), mt_owner(w, s->unit + i), u->state, u->ver,
		      *(unsigned long long *)(s->buf + i * w->usize));
		w->bad += !ok;
	}
	for (i = 0; i < s->nunits; i++)
		if (s->op != OP_READ)
			w->u[s->unit + i].busy = false;
	s->busy = false;
	w->running--;
	mt_next(w, s);
}

/* Own units [*unit, *unit + n) not in flight: one unit in the first
 * half, or a cluster's 8 in the second. */
static bool mt_pick_own(struct mt_worker *w, bool cluster, uint64_t *unit, uint64_t n)
{
	uint64_t half = w->units / 2, u, i;
	unsigned tries;
	bool busy;

	for (tries = 0; tries < 16; tries++) {
		u = cluster ? half + (mt_rnd(w) % (half / 8)) * 8 : mt_rnd(w) % half;
		for (; mt_owner(w, u) != w->id; u += cluster ? 8 : 1)
			;
		for (i = 0, busy = u + n > w->units; !busy && i < n; i++)
			busy = w->u[u + i].busy;
		if (!busy) {
			*unit = u;
			return true;
		}
	}
	return false;
}

static int mt_submit_write(struct mt_worker *w, struct mt_slot *s, uint64_t unit)
{
	struct mt_unit *u = &w->u[unit];

	s->op = OP_WRITE;
	u->state = MT_STAMP;
	u->ver++;
	mt_stamp(s->buf, w->usize, unit, u->ver);
	s->iov = (struct iovec){ s->buf, w->usize };
	return block_writev(w->b, w->l, &s->r, &s->iov, 1, unit * w->usize, mt_done);
}

/* A write of an own unit, or a discard or zeroing of an own cluster. */
static int mt_submit_change(struct mt_worker *w, struct mt_slot *s, uint64_t r)
{
	bool cluster = r % 3 != 0;
	uint64_t i, off, len;

	s->nunits = cluster ? 8 : 1;
	if (!mt_pick_own(w, cluster, &s->unit, s->nunits))
		return 1;
	for (i = 0; i < s->nunits; i++) {
		w->u[s->unit + i].busy = true;
		w->u[s->unit + i].changes++;
	}
	if (!cluster || r % 5 < 3)
		return mt_submit_write(w, s, s->unit + (cluster ? mt_rnd(w) % 8 : 0));
	s->op = r % 5 == 3 ? OP_DISCARD : OP_ZEROES;
	for (i = 0; i < 8; i++)
		w->u[s->unit + i].state = s->op == OP_DISCARD && w->v2 ? MT_BACKING_DATA : MT_ZERO;
	off = s->unit * w->usize;
	len = 8 * w->usize;
	return s->op == OP_DISCARD ? block_discard(w->b, w->l, &s->r, off, len, mt_done) :
				     block_write_zeroes(w->b, w->l, &s->r, off, len, true, mt_done);
}

/* Starts the slot's next request, or notes that the worker is done. */
static void mt_next(struct mt_worker *w, struct mt_slot *s)
{
	uint64_t r = mt_rnd(w) % 100, i;
	int ret = 1;

	while (w->left && ret) {
		w->left--;
		if (r < 45) {
			ret = mt_submit_change(w, s, r);
		} else if (r < 97) {
			s->op = OP_READ;
			s->nunits = 1 + mt_rnd(w) % 24;
			s->unit = mt_rnd(w) % (w->units - s->nunits);
			for (i = 0; i < s->nunits; i++)
				s->changes[i] = w->u[s->unit + i].busy ? ~0U : w->u[s->unit + i].changes;
			s->iov = (struct iovec){ s->buf, s->nunits * w->usize };
			ret = block_readv(w->b, w->l, &s->r, &s->iov, 1, s->unit * w->usize, mt_done);
		} else {
			s->op = OP_FLUSH;
			s->nunits = 0;
			ret = block_flush(w->b, w->l, &s->r, mt_done);
		}
		w->bad += ret < 0;
		r = mt_rnd(w) % 100;
	}
	if (ret == 0) {
		s->busy = true;
		w->running++;
	}
	if (!w->running)
		atomic_store(&w->done, true);
}

static void mt_start(struct loop_bh *bh)
{
	struct mt_worker *w = container_of(bh, struct mt_worker, start);
	unsigned i;

	for (i = 0; i < MT_DEPTH; i++)
		mt_next(w, &w->slot[i]);
}

/* Every unit of the closed image holds its owner's last state. */
static void mt_verify(struct mt_worker *w, const char *img)
{
	uint64_t unit, bad = 0;
	unsigned char *disk = malloc(MT_SIZE), *want = malloc(w[0].usize);

	SH("qemu-img convert -O raw '%s' mt.raw", img);
	file_read(P("mt.raw"), disk, MT_SIZE, 0);
	for (unit = 0; unit < w[0].units; unit++) {
		const struct mt_unit *u = &w[mt_owner(&w[0], unit)].u[unit];

		if (u->state == MT_STAMP)
			mt_stamp(want, w[0].usize, unit, u->ver);
		else
			memset(want, u->state == MT_ZERO ? 0 : MT_BACKING, w[0].usize);
		bad += memcmp(disk + unit * w[0].usize, want, w[0].usize) != 0;
	}
	CHECK(bad == 0, "%llu units do not hold their last state", (unsigned long long)bad);
	free(disk);
	free(want);
	unlink(P("mt.raw"));
}

static void test_threads_on(const char *opts)
{
	struct mt_worker w[MT_WORKERS];
	char img[PATH_MAX];
	uint64_t cs;
	struct block *b;
	unsigned i, k;

	path_of(img, "mt.qcow2");
	SH("qemu-img create -q -f qcow2 mtb.qcow2 4M && "
	   "qemu-io -f qcow2 -c 'write -P 0x77 0 4M' mtb.qcow2 >/dev/null && "
	   "qemu-img create -q -f qcow2 -o %s -b mtb.qcow2 -F qcow2 mt.qcow2 4M", opts);
	cs = 1ULL << (be64_at(img, 16) & 0xffffffff);
	b = open_fmt(img, BLOCK_FORMAT_QCOW2, false, 64 * KiB);	/* a small cache: misses */
	if (!b)
		return;
	for (i = 0; i < MT_WORKERS; i++) {
		struct iothread_config c = { .n_cpus = 0 };

		snprintf(c.name, sizeof(c.name), "mt%u", i);
		w[i] = (struct mt_worker){ .id = i, .b = b, .usize = cs / 8, .units = MT_SIZE / (cs / 8),
					   .rnd = 0x9e3779b97f4a7c15ULL * (i + 1), .left = MT_OPS,
					   .v2 = strstr(opts, "0.10") != NULL };
		w[i].u = calloc(w[i].units, sizeof(*w[i].u));
		for (k = 0; k < MT_DEPTH; k++)
			w[i].slot[k] = (struct mt_slot){ .w = &w[i], .buf = malloc(24 * w[i].usize) };
		CHECK_I(iothread_start(&c, &w[i].t), 0);
		w[i].l = iothread_loop(w[i].t);
		loop_bh_init(&w[i].start, mt_start);
	}
	for (i = 0; i < MT_WORKERS; i++)
		loop_bh_schedule(w[i].l, &w[i].start);
	for (i = 0; i < MT_WORKERS; i++) {
		while (!atomic_load(&w[i].done))
			usleep(1000);
		iothread_stop(w[i].t);
		CHECK(w[i].bad == 0, "%s: worker %u: %d failed requests or bad reads", opts, i, w[i].bad);
	}
	block_close(b);
	check_clean(img, opts);
	mt_verify(w, img);
	for (i = 0; i < MT_WORKERS; i++) {
		for (k = 0; k < MT_DEPTH; k++)
			free(w[i].slot[k].buf);
		free(w[i].u);
	}
}

static void test_threads(void)
{
	test_threads_on("cluster_size=4096");
	test_threads_on("cluster_size=65536,compat=0.10");
}

/* ---- hostile images ---- */

/* A fresh copy of h.qcow2 (64 KiB clusters, data at 0 and 1M) to break. */
static const char *hostile_copy(void)
{
	SH("cp h.qcow2 x.qcow2");
	return P("x.qcow2");
}

/* One header field set to a bad value, and what opening then says. */
struct hostile_field {
	unsigned off, width;	/* bytes 4 or 8 */
	uint64_t value;
	int ret;
	const char *msg;
};

static const struct hostile_field hostile_fields[] = {
	{ 20, 4, 8, -EINVAL, "cluster_bits 8 is out of range (9 to 21)" },
	{ 20, 4, 22, -EINVAL, "cluster_bits 22 is out of range" },
	{ 4, 4, 4, -ENOTSUP, "qcow2 version 4 is not supported" },
	{ 0, 4, 0x514649fa, -EINVAL, "not a qcow2 image" },
	{ 36, 4, 0x7fffffff, -EINVAL, "L1 table of 2147483647 entries is larger than" },
	{ 40, 8, 1ULL << 40, -EINVAL, "L1 table (" },
	{ 40, 8, 65536 + 512, -EINVAL, "is misaligned or not inside" },
	{ 56, 4, 0, -EINVAL, "refcount table of 0 clusters" },
	{ 56, 4, 100, -EINVAL, "refcount table (6553600 bytes at offset 65536) is misaligned or not inside" },
	{ 24, 8, 1ULL << 62, -EINVAL, "is too large for 65536-byte clusters" },
	{ 24, 8, 100, -EINVAL, "expected a qcow2 virtual size of at least 512 bytes, found 100" },
	{ 96, 4, 7, -EINVAL, "refcount order 7 is out of range" },
	{ 100, 4, 100, -EINVAL, "header length 100 is invalid" },
	{ 32, 4, 1, -ENOTSUP, "encrypted qcow2 images (method 1)" },
	{ 72, 8, 1ULL << 2, -ENOTSUP, "external data files are not supported" },
	{ 72, 8, 1ULL << 4, -ENOTSUP, "extended L2 entries (subclusters) are not supported" },
	{ 72, 8, 1ULL << 3, -EINVAL, "compression type 0 does not match" },
	{ 72, 8, 1ULL << 40, -ENOTSUP, "unknown qcow2 incompatible feature bit 40" },
};

static void test_hostile_header(void)
{
	unsigned i;
	const char *x;

	SH("qemu-img create -q -f qcow2 h.qcow2 64M && "
	   "qemu-io -f qcow2 -c 'write -P 0x42 0 64k' -c 'write -P 0x43 1M 64k' h.qcow2 >/dev/null");
	for (i = 0; i < ARRAY_SIZE(hostile_fields); i++) {
		const struct hostile_field *f = &hostile_fields[i];

		x = hostile_copy();
		if (f->width == 4)
			put_be32(x, f->off, (uint32_t)f->value);
		else
			put_be64(x, f->off, f->value);
		expect_refused(x, true, f->ret, f->msg);
	}
	put_be64(x = hostile_copy(), 40, be64_at(P("h.qcow2"), 48));
	expect_refused(x, true, -EINVAL, "L1 table and refcount table overlap");
	x = hostile_copy();
	put_be32(x, find_ext(x, 0x6803f857) + 4, 1 << 20);
	expect_refused(x, true, -EINVAL, "header extension 0x6803f857 at byte 112 runs past the first cluster");
	put_be64(x = hostile_copy(), 8, 65000);
	put_be32(x, 16, 1000);
	expect_refused(x, true, -EINVAL, "backing file name (1000 bytes at offset 65000)");
}

static void test_hostile_features(void)
{
	const char *x;
	uint64_t ft;

	/* An unknown bit, named by the feature name table: entry 0 is QEMU's
	 * "dirty bit" (incompatible, bit 0); renumber it to bit 10. */
	ft = find_ext(x = hostile_copy(), 0x6803f857);
	file_write(x, "\x00\x0a", 2, ft + 8);
	put_be64(x, 72, 1ULL << 10);
	expect_refused(x, true, -ENOTSUP, "unknown qcow2 incompatible feature bit 10 (\"dirty bit\")");
	put_be64(x = hostile_copy(), 72, 1ULL << 0);
	expect_refused(x, false, -EROFS, "dirty (lazy refcounts were not written back); run 'qemu-img check -r all'");
	expect_refused(x, true, 0, "");
	put_be64(x = hostile_copy(), 72, 1ULL << 1);
	expect_refused(x, false, -EROFS, "marked corrupt");
	expect_refused(x, true, 0, "");
	SH("cp h.qcow2 s.qcow2 && qemu-img snapshot -c snap s.qcow2");
	expect_refused(P("s.qcow2"), false, -ENOTSUP, "internal snapshots is not supported");
	expect_refused(P("s.qcow2"), true, 0, "");
	if (!sh("qemu-img create -q -f qcow2 -o compression_type=zstd z.qcow2 1M 2>/dev/null"))
		expect_refused(P("z.qcow2"), true, -ENOTSUP, "compression type 1 (zstd) is not supported");
}

/* Tables and entries that point outside the file. */
static void test_hostile_tables(void)
{
	uint64_t l1 = be64_at(P("h.qcow2"), 40), rt = be64_at(P("h.qcow2"), 48);
	uint64_t l2 = be64_at(P("h.qcow2"), l1) & 0x00fffffffffffe00ULL;
	struct block *b;
	const char *x;

	SH("cp h.qcow2 x.qcow2 && truncate -s %llu x.qcow2", (unsigned long long)l2 + 4096);
	expect_refused(P("x.qcow2"), true, -EINVAL, "corrupt qcow2 L1 entry 0");
	put_be64(x = hostile_copy(), l1, (1ULL << 63) | (l2 + 512));
	expect_refused(x, true, -EINVAL, "corrupt qcow2 L1 entry 0 (0x80000000000");
	put_be64(x = hostile_copy(), rt, 1ULL << 45);
	expect_refused(x, true, -EINVAL, "corrupt qcow2 refcount table entry 0");
	/* An L2 entry past the end of the file fails that read only. */
	put_be64(x = hostile_copy(), l2 + 16 * 8, (1ULL << 63) | (1ULL << 40));
	b = open_q(x, true);
	if (b) {
		CHECK_I(rd(b, buf, 4096, 1 * MiB), -EIO);
		CHECK_I(rd(b, buf, 4096, 0), 0);
		CHECK(buf[0] == 0x42, "the good cluster reads wrong");
		block_close(b);
	}
	put_be64(x = hostile_copy(), l2 + 16 * 8, (1ULL << 63) | (1ULL << 4) | (l2 + 65536));
	b = open_q(x, true);
	if (b) {
		CHECK_I(rd(b, buf, 512, 1 * MiB), -EIO);
		block_close(b);
	}
}

/* Backing chains that loop, are too long, or are missing. */
static void test_hostile_chains(void)
{
	unsigned i;

	SH("qemu-img create -q -f qcow2 loop-a.qcow2 1M && "
	   "qemu-img create -q -f qcow2 -b loop-a.qcow2 -F qcow2 loop-b.qcow2 1M && "
	   "qemu-img rebase -u -b loop-b.qcow2 -F qcow2 loop-a.qcow2");
	expect_refused(P("loop-b.qcow2"), true, -ELOOP, "backing chain loop");
	SH("qemu-img create -q -f qcow2 self.qcow2 1M && "
	   "qemu-img rebase -u -b self.qcow2 -F qcow2 self.qcow2");
	expect_refused(P("self.qcow2"), false, -ELOOP, "self.qcow2: backing file: ");
	expect_refused(P("self.qcow2"), false, -ELOOP, "backing chain loop: the image appears twice");
	SH("qemu-img create -q -f qcow2 c0.qcow2 1M");
	for (i = 1; i <= 16; i++)
		SH("qemu-img create -q -f qcow2 -b c%u.qcow2 -F qcow2 c%u.qcow2 1M", i - 1, i);
	expect_refused(P("c16.qcow2"), true, -ELOOP, "c16.qcow2: backing file: ");
	expect_refused(P("c16.qcow2"), true, -ELOOP, "c1.qcow2: backing chain longer than 16 images");
	expect_refused(P("c15.qcow2"), true, 0, "");
	SH("qemu-img create -q -f qcow2 -b gone.qcow2 -F qcow2 orphan.qcow2 1M 2>/dev/null || "
	   "(qemu-img create -q -f qcow2 orphan.qcow2 1M && "
	   "qemu-img rebase -u -b gone.qcow2 -F qcow2 orphan.qcow2)");
	expect_refused(P("orphan.qcow2"), true, -ENOENT, "orphan.qcow2: backing file: ");
}

/* ---- main ---- */

static void setup(void)
{
	const char *tmp = getenv("TMPDIR");
	const char *why;
	int ret;

	ret = loop_new(&(struct loop_params){ .name = "test" }, &main_loop);
	if (ret) {
		why = loop_unavailable_reason(ret);
		printf("%s: loop_new: %s\n", why ? "SKIP" : "FAIL", why ? why : strerror(-ret));
		exit(why ? 77 : 1);
	}
	snprintf(test_dir, sizeof(test_dir), "%s/test_qcow2.XXXXXX", tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(test_dir) || !(buf = malloc(BUF_MAX)) || !(ref = malloc(BUF_MAX))) {
		printf("FAIL: setup: %s\n", strerror(errno));
		exit(1);
	}
	if (sh("qemu-img --version >/dev/null 2>&1 && qemu-io --version >/dev/null 2>&1")) {
		printf("SKIP: qemu-img and qemu-io (Debian's qemu-utils) are not installed\n");
		sh("rm -rf '%s'", test_dir);
		exit(77);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	alarm(500);
	setup();
	test_probe();
	test_read_matrix();
	test_compressed();
	test_backing();
	test_write_matrix();
	test_refcount_growth();
	test_l1_growth();
	test_refcount_widths();
	test_reuse();
	test_fresh_sparse();
	test_cache_pressure();
	test_odd_size();
	test_refcount_underflow();
	test_release_gate();
	test_throttle();
	test_crash_copies();
	test_threads();
	test_hostile_header();
	test_hostile_features();
	test_hostile_tables();
	test_hostile_chains();
	sh("rm -rf '%s'", test_dir);
	loop_free(main_loop);
	free(buf);
	free(ref);
	if (test_failures) {
		printf("%d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_qcow2: all passed\n");
	return 0;
}
