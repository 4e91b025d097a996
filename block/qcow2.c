/*
 * qcow2 images: open (header, L1 and refcount tables, backing chain),
 * close, and the request plumbing the other qcow2_*.c files share: one
 * struct qcow2_op per request, waits and wakeups, iovec slices, transfers
 * that go on after short reads and writes. docs/qcow2.md has the design.
 *
 * Threads: open and close on the main thread (they read and write the
 * file synchronously: nothing else runs then). Each request runs in the
 * owner thread of its loop; requests of one image run on several loops at
 * once and meet only under qcow2.lock (qcow2.h lists what it guards). A
 * waiting request is woken with a BH on its own loop, so no thread ever
 * runs another thread's callbacks.
 *
 * Ownership: an op belongs to its loop's thread from submission to its
 * end, when it is freed; its waiter link and wres are written by wakers
 * under the lock. The caller's iovec array is read, never modified.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "core/util.h"

#define QCOW2_SECTOR 512U
#define QCOW2_HEAD_READ 4096U
#define QCOW2_MIN_TABLES 4U
#define QCOW2_DEFAULT_L2_CACHE (8 * MiB)

/* The images of a backing chain opened so far, to refuse loops. */
struct qcow2_chain {
	unsigned depth;
	dev_t dev[QCOW2_MAX_CHAIN];
	ino_t ino[QCOW2_MAX_CHAIN];
};

static int qcow2_open_image(const struct block_open_params *p, struct qcow2_chain *chain,
			    struct block **out, char *err, size_t errlen);
static int qcow2_open_raw_backing(const struct block_open_params *bp, struct qcow2_chain *chain,
				  struct block **out, char *err, size_t errlen);

int qcow2_corrupt(struct qcow2 *q, const char *what, uint64_t off)
{
	if (!__atomic_exchange_n(&q->logged, true, __ATOMIC_RELAXED))
		log_msg("%s: corrupt qcow2 metadata: %s at offset %llu; run 'qemu-img check' on it",
			q->path, what, (unsigned long long)off);
	return -EIO;
}

/* ---- waits ---- */

void qcow2_op_bh(struct loop_bh *bh)
{
	struct qcow2_op *op = container_of(bh, struct qcow2_op, bh);

	op->resume(op);
}

void qcow2_wait(struct qcow2_op *op, struct qcow2_op **list, void (*resume)(struct qcow2_op *op))
{
	op->resume = resume;
	op->wres = 0;
	op->wnext = *list;
	*list = op;
}

void qcow2_wake_all(struct qcow2_op **list, int res)
{
	struct qcow2_op *op = *list, *next;

	*list = NULL;
	for (; op; op = next) {
		next = op->wnext;
		op->wres = res;
		loop_bh_schedule(op->loop, &op->bh);
	}
}

/* A step needs at most a few tables at once, the last ones it waited
 * for: when the slots are full the oldest pin goes, so a request whose
 * search walked past many tables still keeps the ones it needs now. */
void qcow2_pin(struct qcow2_op *op, struct qcow2_table *t)
{
	if (op->npins == ARRAY_SIZE(op->pins)) {
		op->pins[0]->pins--;
		memmove(op->pins, op->pins + 1, sizeof(op->pins) - sizeof(op->pins[0]));
		op->npins--;
	}
	t->pins++;
	op->pins[op->npins++] = t;
}

void qcow2_unpin_all(struct qcow2_op *op)
{
	while (op->npins)
		op->pins[--op->npins]->pins--;
}

/* ---- ops ---- */

/*
 * Freed ops wait in a short list of their thread for the next request:
 * musl's allocator hands a group of freed ops back to the kernel and maps
 * it again on the next burst, an munmap (with a TLB shootdown) every few
 * requests that costs more than the whole lookup. An op is made and freed
 * on its loop's thread. ASan builds free every op, so its lifetime stays
 * checked.
 */
#if defined(__SANITIZE_ADDRESS__)
#define QCOW2_OP_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QCOW2_OP_POOL 0
#endif
#endif
#ifndef QCOW2_OP_POOL
#define QCOW2_OP_POOL 64
#endif

struct qcow2_op_pool {
	struct qcow2_op *head;		/* linked through wnext */
	unsigned n;
	bool registered;		/* its thread frees it on exit */
};

static _Thread_local struct qcow2_op_pool qcow2_pool;
static pthread_key_t qcow2_pool_key;
static pthread_once_t qcow2_pool_once = PTHREAD_ONCE_INIT;

static void qcow2_pool_drain(void *arg)
{
	struct qcow2_op_pool *p = arg;
	struct qcow2_op *op;

	while ((op = p->head)) {
		p->head = op->wnext;
		free(op);
	}
	p->n = 0;
}

static void qcow2_pool_key_init(void)
{
	if (pthread_key_create(&qcow2_pool_key, qcow2_pool_drain))
		qcow2_pool_key = (pthread_key_t)-1;
}

static void qcow2_pool_put(struct qcow2_op *op)
{
	struct qcow2_op_pool *p = &qcow2_pool;

	if (p->n + 1 > QCOW2_OP_POOL) {
		free(op);
		return;
	}
	if (!p->registered) {
		pthread_once(&qcow2_pool_once, qcow2_pool_key_init);
		if (qcow2_pool_key == (pthread_key_t)-1 || pthread_setspecific(qcow2_pool_key, p)) {
			free(op);
			return;
		}
		p->registered = true;
	}
	op->wnext = p->head;
	p->head = op;
	p->n++;
}

static struct qcow2_op *qcow2_pool_get(void)
{
	struct qcow2_op_pool *p = &qcow2_pool;
	struct qcow2_op *op = p->head;

	if (!op)
		return malloc(sizeof(*op));
	p->head = op->wnext;
	p->n--;
	return op;
}

static struct qcow2_op *qcow2_op_new(struct qcow2 *q, struct loop *l, enum qcow2_op_kind kind,
				     uint64_t off, uint64_t len)
{
	struct qcow2_op *op = qcow2_pool_get();

	if (!op)
		return NULL;
	*op = (struct qcow2_op){ .q = q, .loop = l, .kind = kind, .start = off, .pos = off,
				 .end = off + len };
	loop_bh_init(&op->bh, qcow2_op_bh);
	return op;
}

/* Takes op out of the started requests and frees it. */
static void qcow2_op_free(struct qcow2_op *op)
{
	struct qcow2 *q = op->q;

	if (op->active) {
		mutex_lock(&q->lock);
		qcow2_deactivate(q, op);
		mutex_unlock(&q->lock);
	}
	if (op->vec != op->vec_inline)
		free(op->vec);
	free(op->cbuf);
	free(op->ubuf);
	free(op->cow);
	qcow2_pool_put(op);
}

void qcow2_activate(struct qcow2 *q, struct qcow2_op *op)
{
	if (op->active)
		return;
	op->active = true;
	op->seq = ++q->seq;
	op->aprev = q->active_tail;
	op->anext = NULL;
	if (q->active_tail)
		q->active_tail->anext = op;
	else
		q->active = op;
	q->active_tail = op;
}

void qcow2_deactivate(struct qcow2 *q, struct qcow2_op *op)
{
	if (op->aprev)
		op->aprev->anext = op->anext;
	else
		q->active = op->anext;
	if (op->anext)
		op->anext->aprev = op->aprev;
	else
		q->active_tail = op->aprev;
	op->active = false;
}

static void qcow2_op_nop_done(struct loop_io *io, int res)
{
	struct qcow2_op *op = container_of(io, struct qcow2_op, io);

	qcow2_op_end(op, op->wres);
}

void qcow2_op_end(struct qcow2_op *op, int res)
{
	struct block_req *r = op->req;
	struct qcow2_op *parent = op->parent;
	int ret;

	if (op->in_submit) {
		/* done must not run inside the submitting call: go round the ring. */
		op->in_submit = false;
		op->wres = res;
		ret = loop_io_nop(op->loop, &op->io, qcow2_op_nop_done);
		if (ret)
			op->submit_err = ret;
		return;
	}
	if (parent)
		parent->wres = res;
	qcow2_op_free(op);
	if (parent)
		loop_bh_schedule(parent->loop, &parent->bh);
	else
		r->done(r, res);
}

int qcow2_op_child(struct qcow2_op *parent, enum qcow2_op_kind kind, uint64_t off, uint64_t len,
		   void *buf, void (*resume)(struct qcow2_op *op))
{
	struct qcow2_op *op = qcow2_op_new(parent->q, parent->loop, kind, off, len);

	if (!op)
		return -ENOMEM;
	op->parent = parent;
	op->one = (struct iovec){ buf, len };
	op->iov = &op->one;
	op->niov = 1;
	parent->resume = resume;
	if (kind == QCOW2_OP_READ)
		qcow2_read_start(op);
	else if (kind == QCOW2_OP_WRITE)
		qcow2_write_start(op);
	else
		qcow2_flush_start(op);
	return 0;
}

/* Submits a request of the caller's: runs its first step here, in the
 * submitting call; it ends later from a completion, a BH or a NOP. */
static int qcow2_submit(struct block_req *r, enum qcow2_op_kind kind, enum block_zero_mode zmode,
			void (*start)(struct qcow2_op *op))
{
	struct qcow2_op *op = qcow2_op_new(qcow2_of(r->blk), r->loop, kind, r->offset, r->len);
	int ret;

	if (!op)
		return -ENOMEM;
	op->req = r;
	op->iov = r->iov;
	op->niov = r->niov;
	op->zmode = zmode;
	op->in_submit = true;
	start(op);
	ret = op->submit_err;
	if (ret) {
		qcow2_op_free(op);
		return ret;
	}
	op->in_submit = false;
	return 0;
}

static int qcow2_readv(struct block_req *r)
{
	return qcow2_submit(r, QCOW2_OP_READ, BLOCK_DISCARD, qcow2_read_start);
}

static int qcow2_writev(struct block_req *r)
{
	return qcow2_submit(r, QCOW2_OP_WRITE, BLOCK_DISCARD, qcow2_write_start);
}

static int qcow2_flush(struct block_req *r)
{
	if (r->blk->readonly)
		return loop_io_nop(r->loop, &r->io, block_req_complete);
	return qcow2_submit(r, QCOW2_OP_FLUSH, BLOCK_DISCARD, qcow2_flush_start);
}

static int qcow2_zero_range(struct block_req *r, enum block_zero_mode mode)
{
	return qcow2_submit(r, QCOW2_OP_ZERO, mode, qcow2_write_zero_start);
}

/* ---- iovec slices and transfers ---- */

int qcow2_op_slice(struct qcow2_op *op, unsigned nhead, uint64_t off, uint64_t len)
{
	uint64_t skip = off - op->start;
	unsigned i = 0, n = nhead;

	if (!op->vec) {
		op->vec_cap = op->niov + 3;
		op->vec = op->vec_cap <= ARRAY_SIZE(op->vec_inline) ? op->vec_inline :
			  malloc(op->vec_cap * sizeof(*op->vec));
		if (!op->vec)
			return -ENOMEM;
	}
	for (; skip >= op->iov[i].iov_len; i++)
		skip -= op->iov[i].iov_len;
	for (; len; i++, skip = 0) {
		size_t take = op->iov[i].iov_len - skip;

		take = take < len ? take : len;
		op->vec[n++] = (struct iovec){ (char *)op->iov[i].iov_base + skip, take };
		len -= take;
	}
	op->nvec = n;
	return 0;
}

static void qcow2_op_io_done(struct loop_io *io, int res);

void qcow2_op_advance(struct qcow2_op *op, int res)
{
	if (res) {
		qcow2_op_end(op, res);
		return;
	}
	op->pos += op->map.len;
	op->step(op);
}

int qcow2_op_run(struct qcow2_op *op, bool write)
{
	int ret = qcow2_op_slice(op, 0, op->pos, op->map.len);

	if (!ret)
		ret = qcow2_op_io(op, write, op->map.host, op->map.len, qcow2_op_advance);
	return ret ? ret : QCOW2_WAIT;
}

static int qcow2_op_io_submit(struct qcow2_op *op, bool write)
{
	struct qcow2 *q = op->q;

	if (write)
		return loop_io_writev(op->loop, &op->io, q->fd, op->vec, op->nvec, op->io_off,
				      qcow2_op_io_done);
	return loop_io_readv(op->loop, &op->io, q->fd, op->vec, op->nvec, op->io_off,
			     qcow2_op_io_done);
}

int qcow2_op_io(struct qcow2_op *op, bool write, uint64_t off, uint64_t len,
		void (*done)(struct qcow2_op *op, int res))
{
	op->io_off = off;
	op->io_left = len;
	op->io_write = write;
	op->io_done = done;
	return qcow2_op_io_submit(op, write);
}

/* Drops the first n bytes, already transferred, from op->vec. */
static void qcow2_vec_advance(struct qcow2_op *op, size_t n)
{
	struct iovec *v = op->vec;

	for (; n >= v->iov_len; v++, op->nvec--)
		n -= v->iov_len;
	v->iov_base = (char *)v->iov_base + n;
	v->iov_len -= n;
	memmove(op->vec, v, op->nvec * sizeof(*v));
}

/* A read that reached the end of the file: the rest of the clusters it
 * reads was allocated but never written (a new cluster's zero head or
 * tail is not), so it is zeros. */
static void qcow2_vec_zero(struct qcow2_op *op)
{
	unsigned i;

	for (i = 0; i < op->nvec; i++)
		memset(op->vec[i].iov_base, 0, op->vec[i].iov_len);
}

static void qcow2_op_io_done(struct loop_io *io, int res)
{
	struct qcow2_op *op = container_of(io, struct qcow2_op, io);

	if (res > 0 && (uint64_t)res < op->io_left) {
		op->io_left -= (uint64_t)res;
		op->io_off += (uint64_t)res;
		qcow2_vec_advance(op, (size_t)res);
		res = qcow2_op_io_submit(op, op->io_write);
		if (!res)
			return;
	} else if (res == 0 && !op->io_write) {
		qcow2_vec_zero(op);
	} else if (res >= 0) {
		res = res ? 0 : -EIO;
	}
	op->io_done(op, res);
}

/* ---- open ---- */

/* Reads len bytes at off; a short file gives fewer. Bytes read or -errno. */
static ssize_t qcow2_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int qcow2_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Opens path, checks its type and size, and refuses an image already in
 * the chain (a loop). The fd, or -errno with the message in err. */
static int qcow2_open_fd(const struct block_open_params *p, struct qcow2_chain *chain,
			 uint64_t *size, char *err, size_t errlen)
{
	int fd = open(p->path, (p->readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	unsigned i;

	if (fd < 0)
		return block_fail(err, errlen, -errno, "%s: cannot open %s: %s", p->path,
				  p->readonly ? "read-only" : "read-write", strerror(errno));
	if (fstat(fd, &st) || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)) {
		close(fd);
		return block_fail(err, errlen, -EINVAL, "%s: expected a regular file or a block device",
				  p->path);
	}
	for (i = 0; i < chain->depth; i++) {
		if (chain->dev[i] == st.st_dev && chain->ino[i] == st.st_ino) {
			close(fd);
			return block_fail(err, errlen, -ELOOP, "%s: backing chain loop: the image appears twice in the chain",
					  p->path);
		}
	}
	*size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode) && ioctl(fd, BLKGETSIZE64, size)) {
		close(fd);
		return block_fail(err, errlen, -errno, "%s: BLKGETSIZE64: %s", p->path, strerror(errno));
	}
	chain->dev[chain->depth] = st.st_dev;
	chain->ino[chain->depth] = st.st_ino;
	return fd;
}

/* Reads and parses the header: first 4 KiB, then the whole first cluster
 * if the extensions may need it. The buffer (hdr bytes) in *buf. */
static int qcow2_read_header(const char *path, int fd, uint64_t file_size,
			     struct qcow2_header *h, uint8_t **buf, char *err, size_t errlen)
{
	size_t len = QCOW2_HEAD_READ;
	char why[256];
	ssize_t n;
	int ret;

	for (;;) {
		*buf = malloc(len);
		if (!*buf)
			return block_fail(err, errlen, -ENOMEM, "%s: %s", path, strerror(ENOMEM));
		n = qcow2_pread(fd, *buf, len, 0);
		if (n < 0)
			return block_fail(err, errlen, (int)n, "%s: cannot read: %s", path,
					  strerror((int)-n));
		ret = qcow2_header_parse(*buf, (size_t)n, file_size, h, why, sizeof(why));
		if (ret != -EAGAIN || len > QCOW2_HEAD_READ)
			break;
		free(*buf);
		len = (size_t)1 << h->cluster_bits;
	}
	return ret ? block_fail(err, errlen, ret, "%s: %s", path, why) : 0;
}

/* Whether the header's state allows this open: writable images must be
 * clean, uncorrupted and without internal snapshots. */
static int qcow2_check_state(const char *path, const struct qcow2_header *h, bool readonly,
			     char *err, size_t errlen)
{
	if (readonly)
		return 0;
	if (h->incompat & QCOW2_INCOMPAT_CORRUPT)
		return block_fail(err, errlen, -EROFS,
				  "%s: the qcow2 image is marked corrupt; repair it with 'qemu-img check -r all' or open it read-only",
				  path);
	if (h->incompat & QCOW2_INCOMPAT_DIRTY)
		return block_fail(err, errlen, -EROFS,
				  "%s: the qcow2 image is dirty (lazy refcounts were not written back); run 'qemu-img check -r all' on it or open it read-only",
				  path);
	if (h->nb_snapshots)
		return block_fail(err, errlen, -ENOTSUP,
				  "%s: writing qcow2 images with internal snapshots is not supported; open it read-only or delete them ('qemu-img snapshot -d')",
				  path);
	return 0;
}

/* Loads a table of n big-endian entries at off into host order. */
static int qcow2_load_table(struct qcow2 *q, uint64_t off, uint64_t n, uint64_t **out,
			    char *err, size_t errlen)
{
	uint64_t *t = calloc(n ? n : 1, 8), i;
	ssize_t got;

	if (!t)
		return block_fail(err, errlen, -ENOMEM, "%s: %s", q->path, strerror(ENOMEM));
	got = qcow2_pread(q->fd, t, n * 8, off);
	if (got < 0 || (uint64_t)got != n * 8) {
		free(t);
		return block_fail(err, errlen, got < 0 ? (int)got : -EIO, "%s: cannot read the table at offset %llu: %s",
				  q->path, (unsigned long long)off,
				  got < 0 ? strerror((int)-got) : "the file ends first");
	}
	for (i = 0; i < n; i++)
		t[i] = __builtin_bswap64(t[i]);
	*out = t;
	return 0;
}

/* A table pointer (an L1 or refcount table entry's offset): cluster
 * aligned, after the header cluster, inside the file. */
static bool qcow2_table_ptr_ok(const struct qcow2 *q, uint64_t off, uint64_t file_size)
{
	return off % q->cluster_size == 0 && off >= q->cluster_size &&
	       off <= file_size && file_size - off >= q->cluster_size;
}

static int qcow2_check_l1(struct qcow2 *q, uint64_t file_size, char *err, size_t errlen)
{
	uint32_t i;

	for (i = 0; i < q->l1_size; i++) {
		uint64_t e = q->l1[i], off = e & QCOW2_OFFSET_MASK;

		if ((e & QCOW2_L1_RESERVED) || (off && !qcow2_table_ptr_ok(q, off, file_size)))
			return block_fail(err, errlen, -EINVAL,
					  "%s: corrupt qcow2 L1 entry %u (0x%016llx): misaligned, reserved bits set, or past the end of the file",
					  q->path, i, (unsigned long long)e);
		if (off && !(e & QCOW2_COPIED) && !q->blk.readonly)
			return block_fail(err, errlen, -EINVAL,
					  "%s: qcow2 L2 table %u is shared but the image has no snapshots; repair it with 'qemu-img check -r all'",
					  q->path, i);
	}
	return 0;
}

static int qcow2_check_rt(struct qcow2 *q, uint64_t file_size, char *err, size_t errlen)
{
	uint64_t i;

	for (i = 0; i < q->rt_size; i++) {
		uint64_t off = q->rt[i];

		if ((off & QCOW2_RT_RESERVED) || (off && !qcow2_table_ptr_ok(q, off, file_size)))
			return block_fail(err, errlen, -EINVAL,
					  "%s: corrupt qcow2 refcount table entry %llu (0x%016llx): misaligned or past the end of the file",
					  q->path, (unsigned long long)i, (unsigned long long)off);
	}
	return 0;
}

/* The path of the backing file: as written if absolute, else relative to
 * the folder of the image's path. */
static int qcow2_backing_path(const char *image, const char *name, char *out, size_t size)
{
	const char *slash = strrchr(image, '/');
	int dirlen = name[0] != '/' && slash ? (int)(slash - image) + 1 : 0;
	int n = snprintf(out, size, "%.*s%s", dirlen, image, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int qcow2_backing_format(struct qcow2 *q, const struct qcow2_header *h, const char *path,
				enum block_format *fmt, char *err, size_t errlen)
{
	if (!h->backing_fmt[0])
		*fmt = block_probe(path);
	else if (!strcmp(h->backing_fmt, "raw"))
		*fmt = BLOCK_FORMAT_RAW;
	else if (!strcmp(h->backing_fmt, "qcow2"))
		*fmt = BLOCK_FORMAT_QCOW2;
	else
		return block_fail(err, errlen, -ENOTSUP,
				  "%s: backing file format \"%s\" is not supported (only raw and qcow2)",
				  q->path, h->backing_fmt);
	return 0;
}

/* Opens the backing file read-only: raw, or qcow2 with the chain checks. */
static int qcow2_open_backing(struct qcow2 *q, const struct qcow2_header *h,
			      const struct block_open_params *p, struct qcow2_chain *chain,
			      char *err, size_t errlen)
{
	struct block_open_params bp = { .format = BLOCK_FORMAT_RAW, .readonly = true,
					.l2_cache = p->l2_cache };
	char path[PATH_MAX], inner[512];
	struct qcow2_chain next = *chain;
	int ret;

	if (!h->backing[0])
		return 0;
	if (chain->depth + 1 >= QCOW2_MAX_CHAIN)
		return block_fail(err, errlen, -ELOOP, "%s: backing chain longer than %u images",
				  q->path, QCOW2_MAX_CHAIN);
	if (!strncmp(h->backing, "json:", 5) || qcow2_backing_path(p->path, h->backing, path, sizeof(path)))
		return block_fail(err, errlen, -ENOTSUP, "%s: unsupported backing file name \"%.64s\"",
				  q->path, h->backing);
	ret = qcow2_backing_format(q, h, path, &bp.format, err, errlen);
	if (ret)
		return ret;
	bp.path = path;
	next.depth++;
	ret = bp.format == BLOCK_FORMAT_QCOW2 ? qcow2_open_image(&bp, &next, &q->backing, inner, sizeof(inner))
					      : qcow2_open_raw_backing(&bp, &next, &q->backing, inner, sizeof(inner));
	/* Only the top image says whose backing file failed; the innermost
	 * message names the file at fault. */
	if (ret && chain->depth)
		return block_fail(err, errlen, ret, "%s", inner);
	if (ret)
		return block_fail(err, errlen, ret, "%s: backing file: %s", q->path, inner);
	q->backing_size = block_size(q->backing);
	return 0;
}

/* A raw backing file: refused if it is an image of the chain already. */
static int qcow2_open_raw_backing(const struct block_open_params *bp, struct qcow2_chain *chain,
				  struct block **out, char *err, size_t errlen)
{
	struct stat st;
	unsigned i;

	for (i = 0; !stat(bp->path, &st) && i < chain->depth; i++) {
		if (chain->dev[i] == st.st_dev && chain->ino[i] == st.st_ino)
			return block_fail(err, errlen, -ELOOP, "%s: backing chain loop: the image appears twice in the chain",
					  bp->path);
	}
	return block_open(bp, out, err, errlen);
}

static void qcow2_free(struct qcow2 *q)
{
	qcow2_flush_destroy(q);
	qcow2_cache_destroy(&q->l2c);
	qcow2_cache_destroy(&q->rbc);
	block_close(q->backing);
	mutex_destroy(&q->lock);
	free(q->l1);
	free(q->rt);
	free(q->frees);
	free(q->hdr);
	free(q->path);
	close(q->fd);
	free(q);
}

/* The image's geometry from a checked header; takes fd and hdr. */
static int qcow2_new(const struct block_open_params *p, const struct qcow2_header *h, int fd,
		     uint64_t file_size, uint8_t *hdr, struct qcow2 **out, char *err, size_t errlen)
{
	struct qcow2 *q = calloc(1, sizeof(*q));
	uint64_t cs = 1ULL << h->cluster_bits, per_l1 = cs / 8 * cs;

	if (!q || !(q->path = strdup(p->path))) {
		free(q);
		free(hdr);
		close(fd);
		return block_fail(err, errlen, -ENOMEM, "%s: %s", p->path, strerror(ENOMEM));
	}
	block_init(&q->blk, &block_qcow2_driver, h->size & ~(uint64_t)(QCOW2_SECTOR - 1), 1,
		   p->readonly, !p->readonly);
	mutex_init(&q->lock);
	q->fd = fd;
	q->hdr = hdr;
	q->hdr_len = cs < QCOW2_HEAD_READ ? (unsigned)cs : QCOW2_HEAD_READ;
	q->version = h->version;
	q->cluster_bits = h->cluster_bits;
	q->cluster_size = cs;
	q->l2_bits = h->cluster_bits - 3;
	q->refcount_order = h->refcount_order;
	q->rb_bits = h->cluster_bits + 3 - h->refcount_order;
	q->vsize = h->size;
	q->l1_needed = (uint32_t)((h->size + per_l1 - 1) / per_l1);
	q->l1_size = h->l1_size;
	q->l1_off = h->l1_off;
	q->rt_off = h->rt_off;
	q->rt_clusters = h->rt_clusters;
	q->rt_size = (uint64_t)h->rt_clusters * cs / 8;
	q->rt_lo = q->rt_size;		/* nothing dirty: lo >= hi */
	q->l1_lo = q->l1_size;
	q->host_clusters = (file_size + cs - 1) / cs;
	*out = q;
	if (q->blk.size < QCOW2_SECTOR)
		return block_fail(err, errlen, -EINVAL, "%s: expected a qcow2 virtual size of at least %u bytes, found %llu",
				  p->path, QCOW2_SECTOR, (unsigned long long)h->size);
	return 0;
}

/* L1 and refcount tables, the caches and the writeback engine. */
static int qcow2_load(struct qcow2 *q, const struct block_open_params *p, uint64_t file_size,
		      char *err, size_t errlen)
{
	uint64_t cs = q->cluster_size, l2 = p->l2_cache ? p->l2_cache : (uint64_t)q->l1_needed * cs;
	unsigned tables;
	int ret;

	ret = qcow2_load_table(q, q->l1_off, q->l1_size, &q->l1, err, errlen);
	if (!ret)
		ret = qcow2_check_l1(q, file_size, err, errlen);
	if (!ret)
		ret = qcow2_load_table(q, q->rt_off, q->rt_size, &q->rt, err, errlen);
	if (!ret)
		ret = qcow2_check_rt(q, file_size, err, errlen);
	if (ret)
		return ret;
	if (!p->l2_cache && l2 > QCOW2_DEFAULT_L2_CACHE)
		l2 = QCOW2_DEFAULT_L2_CACHE;
	tables = l2 / cs > QCOW2_MIN_TABLES ? (unsigned)(l2 / cs) : QCOW2_MIN_TABLES;
	if (qcow2_cache_init(&q->l2c, tables, q->cluster_bits, "L2 table") ||
	    qcow2_cache_init(&q->rbc, tables / 4 > QCOW2_MIN_TABLES ? tables / 4 : QCOW2_MIN_TABLES,
			     q->cluster_bits, "refcount block") ||
	    qcow2_flush_init(q))
		return block_fail(err, errlen, -ENOMEM, "%s: %s", q->path, strerror(ENOMEM));
	return 0;
}

/* Clears the autoclear bits (bitmaps) a writer that ignores them must
 * clear before it writes anything. */
static int qcow2_clear_autoclear(struct qcow2 *q, char *err, size_t errlen)
{
	int ret;

	qcow2_put_be64(q->hdr + 88, 0);
	ret = qcow2_pwrite(q->fd, q->hdr, q->hdr_len, 0);
	if (!ret && fdatasync(q->fd))
		ret = -errno;
	return ret ? block_fail(err, errlen, ret, "%s: cannot write the qcow2 header: %s", q->path,
				strerror(-ret))
		   : 0;
}

static int qcow2_open_image(const struct block_open_params *p, struct qcow2_chain *chain,
			    struct block **out, char *err, size_t errlen)
{
	struct qcow2_header h;
	struct qcow2 *q = NULL;
	uint64_t file_size = 0;
	uint8_t *hdr = NULL;
	int fd, ret;

	if (p->direct)
		return block_fail(err, errlen, -ENOTSUP, "%s: cache = \"none\" is not supported with qcow2 images yet",
				  p->path);
	fd = qcow2_open_fd(p, chain, &file_size, err, errlen);
	if (fd < 0)
		return fd;
	ret = qcow2_read_header(p->path, fd, file_size, &h, &hdr, err, errlen);
	if (!ret)
		ret = qcow2_check_state(p->path, &h, p->readonly, err, errlen);
	if (ret) {
		free(hdr);
		close(fd);
		return ret;
	}
	ret = qcow2_new(p, &h, fd, file_size, hdr, &q, err, errlen);
	if (!ret)
		ret = qcow2_load(q, p, file_size, err, errlen);
	if (!ret)
		ret = qcow2_open_backing(q, &h, p, chain, err, errlen);
	if (!ret && !p->readonly && h.autoclear)
		ret = qcow2_clear_autoclear(q, err, errlen);
	if (ret) {
		if (q)
			qcow2_free(q);
		return ret;
	}
	*out = &q->blk;
	return 0;
}

static int qcow2_open(const struct block_open_params *p, struct block **out, char *err,
		      size_t errlen)
{
	struct qcow2_chain chain = { .depth = 0 };

	return qcow2_open_image(p, &chain, out, err, errlen);
}

static void qcow2_close(struct block *b)
{
	struct qcow2 *q = qcow2_of(b);
	int ret = b->readonly ? 0 : qcow2_flush_close(q);

	if (ret)
		log_msg("%s: could not write the qcow2 metadata back: %s", q->path, strerror(-ret));
	qcow2_free(q);
}

const struct block_driver block_qcow2_driver = {
	.probe = qcow2_header_probe,
	.open = qcow2_open,
	.readv = qcow2_readv,
	.writev = qcow2_writev,
	.flush = qcow2_flush,
	.zero_range = qcow2_zero_range,
	.close = qcow2_close,
};
