/*
 * qcow2 writes and zeroing. A write walks its range in runs:
 *
 * - Clusters already allocated with a refcount of one (COPIED) are
 *   written in place: one transfer per run of contiguous host clusters,
 *   no metadata, no lock held while it runs.
 * - Any other run of guest clusters (unallocated, zero, compressed,
 *   shared) gets freshly allocated host clusters: the guest clusters are
 *   marked as being allocated (struct qcow2_alloc) so no other request
 *   allocates or zeroes them meanwhile, the parts of the first and last
 *   clusters the write does not cover are read as the guest sees them now
 *   (backing file, zeros, inflated data: copy-on-write, by an internal
 *   read), data and COW are written in one transfer, and only then is the
 *   L2 entry switched to the new clusters, so no reader ever sees a
 *   mapping to clusters whose data is not there yet. The old clusters are
 *   released (qcow2_refcount.c says when that takes effect).
 *
 * Zeroing turns whole clusters into zero clusters (v3) or unallocated
 * ones (no backing file, or a discard), releasing what they pointed at;
 * the partial clusters at either end are written with zeros when the
 * request must read back as zeros. A v2 image with a backing file cannot
 * say "zero" in an L2 entry, so it gets zeros written.
 *
 * Threads: each request runs in the owner thread of its loop; metadata
 * changes happen under qcow2.lock, transfers without it. A new L2 table
 * or a grown L1 table is in memory only (dirty) until the next writeback.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

/* qcow2_write_prepare's outcomes besides QCOW2_WAIT and -errno. */
enum { QCOW2_INPLACE = 0, QCOW2_ALLOC = 2 };

static void qcow2_write_step(struct qcow2_op *op);
static void qcow2_zero_step(struct qcow2_op *op);
static void qcow2_zero_written(struct qcow2_op *op);

static void qcow2_write_resume(struct qcow2_op *op)
{
	if (op->wres)
		qcow2_op_end(op, op->wres);
	else
		qcow2_write_step(op);
}

static void qcow2_zero_resume(struct qcow2_op *op)
{
	if (op->wres)
		qcow2_op_end(op, op->wres);
	else
		qcow2_zero_step(op);
}

/* ---- L1 and L2 tables ---- */

/* Grows the L1 table to cover the whole disk, in new clusters; the old
 * ones are released once the header points at the new table. */
static int qcow2_write_grow_l1(struct qcow2 *q, struct qcow2_op *op,
			       void (*resume)(struct qcow2_op *op))
	REQUIRES(&q->lock)
{
	uint64_t bytes = (uint64_t)q->l1_needed * 8, k = (bytes + q->cluster_size - 1) >> q->cluster_bits;
	uint64_t host, *l1 = calloc(q->l1_needed, 8);
	int ret = l1 ? qcow2_refcount_alloc(q, op, k, resume, &host) : -ENOMEM;

	if (!ret && q->l1_size)
		ret = qcow2_refcount_release_range(q, q->l1_off,
						   ((uint64_t)q->l1_size * 8 + q->cluster_size - 1) >>
						   q->cluster_bits);
	if (ret) {
		free(l1);
		return ret;
	}
	memcpy(l1, q->l1, (size_t)q->l1_size * 8);
	free(q->l1);
	q->l1 = l1;
	q->l1_size = q->l1_needed;
	q->l1_off = host;
	q->l1_moved = true;
	q->l1_lo = 0;
	q->l1_hi = q->l1_size;
	return 0;
}

/* Makes sure guest cluster gc has an L2 table: a new zeroed one, in
 * memory and in the L1 table, written back by the next writeback. */
static int qcow2_write_ensure_l2(struct qcow2 *q, struct qcow2_op *op, uint64_t gc,
				 void (*resume)(struct qcow2_op *op))
	REQUIRES(&q->lock)
{
	uint64_t l1i = gc >> q->l2_bits, host;
	struct qcow2_table *t;
	int ret = 0;

	if (l1i >= q->l1_size)
		ret = qcow2_write_grow_l1(q, op, resume);
	if (ret || (q->l1[l1i] & QCOW2_OFFSET_MASK))
		return ret;
	ret = qcow2_refcount_alloc(q, op, 1, resume, &host);
	if (ret)
		return ret;
	ret = qcow2_cache_new(q, &q->l2c, host, &t);
	if (ret) {
		qcow2_refcount_release_range(q, host, 1);
		return ret;
	}
	q->l1[l1i] = host | QCOW2_COPIED;
	q->l1_lo = q->l1_lo < l1i ? q->l1_lo : (uint32_t)l1i;
	q->l1_hi = q->l1_hi > l1i + 1 ? q->l1_hi : (uint32_t)(l1i + 1);
	return 0;
}

/* The allocation in flight that covers guest cluster gc, if any. */
static struct qcow2_alloc *qcow2_write_alloc_at(const struct qcow2 *q, uint64_t gc)
	REQUIRES(&q->lock)
{
	struct qcow2_alloc *a;

	for (a = q->allocs; a; a = a->next) {
		if (gc >= a->first && gc - a->first < a->n)
			return a;
	}
	return NULL;
}

/* Whether the host range [off, off + len) touches the header, the L1
 * table or the refcount table, which data must never overwrite. */
static bool qcow2_write_hits_meta(const struct qcow2 *q, uint64_t off, uint64_t len)
	REQUIRES(&q->lock)
{
	uint64_t l1 = ALIGN_UP((uint64_t)q->l1_size * 8, q->cluster_size);
	uint64_t rt = (uint64_t)q->rt_clusters << q->cluster_bits;

	return off < q->cluster_size || (off < q->l1_off + l1 && q->l1_off < off + len) ||
	       (off < q->rt_off + rt && q->rt_off < off + len);
}

/* ---- allocating runs ---- */

/* How many guest clusters from gc (in gc's L2 table t, up to the end of
 * the request and a refcount block's reach) need new host clusters and
 * are not being allocated by someone else. */
static uint64_t qcow2_write_alloc_len(struct qcow2 *q, const struct qcow2_op *op,
				      const struct qcow2_table *t, uint64_t gc)
	REQUIRES(&q->lock)
{
	uint64_t per = 1ULL << q->l2_bits, l2i = gc & (per - 1), last = (op->end - 1) >> q->cluster_bits;
	uint64_t max = (1ULL << q->rb_bits) / 2, n;
	struct qcow2_map m;

	for (n = 1; n < max && l2i + n < per && gc + n <= last; n++) {
		if (qcow2_read_entry(q, qcow2_be64(t->data + (l2i + n) * 8), &m) ||
		    (m.kind == QCOW2_DATA && m.copied) || qcow2_write_alloc_at(q, gc + n))
			break;
	}
	return n;
}

/* Where the COW of a partial cluster comes from when the guest sees zeros
 * there: nothing is read, the write takes its bytes from here. Never
 * written, so it stays in .bss. */
static uint8_t qcow2_zeros[1U << QCOW2_MAX_CLUSTER_BITS];

/* Whether the guest sees zeros from off on in a cluster mapped as m: a
 * zero cluster, or unallocated with no backing file behind off. */
static bool qcow2_map_reads_zero(const struct qcow2 *q, const struct qcow2_map *m, uint64_t off)
{
	return m->kind == QCOW2_ZEROES ||
	       (m->kind == QCOW2_UNALLOC && (!q->backing || off >= q->backing_size));
}

/* Whether the guest sees zeros in [off, off + len) of the cluster whose
 * L2 entry is e, so its COW needs no read. */
static bool qcow2_write_cow_zero(struct qcow2 *q, uint64_t e, uint64_t off, uint64_t len)
	REQUIRES(&q->lock)
{
	struct qcow2_map m;

	return len && !qcow2_read_entry(q, e, &m) && qcow2_map_reads_zero(q, &m, off);
}

/* Reserves new host clusters for the run from op->pos and marks its guest
 * clusters as being allocated; the COW sizes in op->head and op->tail. */
static int qcow2_write_alloc(struct qcow2 *q, struct qcow2_op *op, struct qcow2_table *t)
	REQUIRES(&q->lock)
{
	uint64_t gc = op->pos >> q->cluster_bits, n = qcow2_write_alloc_len(q, op, t, gc), host;
	uint64_t per = 1ULL << q->l2_bits, run_end = (gc + n) << q->cluster_bits;
	uint64_t data_end = op->end < run_end ? op->end : run_end;
	uint64_t cow_end = run_end < q->blk.size ? run_end : q->blk.size, end = q->host_clusters;
	int ret = qcow2_refcount_alloc(q, op, n, qcow2_write_resume, &host);

	if (ret)
		return ret;
	/* No cluster from the end of the file on has ever been handed out. */
	op->fresh = host >> q->cluster_bits >= end;
	op->alloc = (struct qcow2_alloc){ .first = gc, .n = n, .next = q->allocs };
	q->allocs = &op->alloc;
	op->alloc_l2 = t;
	t->pins++;
	op->alloc_host = host;
	op->map.len = data_end - op->pos;
	op->head = op->pos & (q->cluster_size - 1);
	op->tail = data_end < cow_end ? cow_end - data_end : 0;
	op->head_zero = qcow2_write_cow_zero(q, qcow2_be64(t->data + (gc & (per - 1)) * 8),
					     op->pos - op->head, op->head);
	op->tail_zero = qcow2_write_cow_zero(q, qcow2_be64(t->data + ((gc + n - 1) & (per - 1)) * 8),
					     data_end, op->tail);
	return QCOW2_ALLOC;
}

/* Under the lock: what the run from op->pos needs. In place: op->map.
 * Allocating: op->alloc and friends. Or a wait. */
static int qcow2_write_prepare(struct qcow2 *q, struct qcow2_op *op)
	REQUIRES(&q->lock)
{
	uint64_t gc = op->pos >> q->cluster_bits, l1i = gc >> q->l2_bits;
	struct qcow2_alloc *a;
	struct qcow2_table *t;
	int ret = q->broken ? q->broken : qcow2_write_ensure_l2(q, op, gc, qcow2_write_resume);

	if (!ret)
		ret = qcow2_read_map(q, op, op->pos, op->end - op->pos, qcow2_write_resume, &op->map);
	if (ret)
		return ret;
	if (op->map.kind == QCOW2_DATA && op->map.copied) {
		if (qcow2_write_hits_meta(q, op->map.host, op->map.len))
			return qcow2_corrupt(q, "data cluster overlaps the image's tables",
					     op->map.host);
		return QCOW2_INPLACE;
	}
	a = qcow2_write_alloc_at(q, gc);
	if (a) {
		qcow2_wait(op, &a->waiters, qcow2_write_resume);
		return QCOW2_WAIT;
	}
	ret = qcow2_cache_get(q, &q->l2c, q->l1[l1i] & QCOW2_OFFSET_MASK, op, qcow2_write_resume, &t);
	return ret ? ret : qcow2_write_alloc(q, op, t);
}

/* Under the lock: points the run's L2 entries at the new clusters and
 * releases what they pointed at; or, on failure, gives the new clusters
 * back. Either way, the run is no longer being allocated. */
static void qcow2_write_publish(struct qcow2 *q, struct qcow2_op *op, int res)
	REQUIRES(&q->lock)
{
	struct qcow2_table *t = op->alloc_l2;
	uint64_t l2i = op->alloc.first & ((1ULL << q->l2_bits) - 1), i;
	struct qcow2_alloc **pp = &q->allocs;
	struct qcow2_map old;

	for (i = 0; !res && i < op->alloc.n; i++) {
		uint8_t *e = t->data + (l2i + i) * 8;

		if (!qcow2_read_entry(q, qcow2_be64(e), &old) && qcow2_refcount_release(q, &old))
			q->broken = -ENOMEM;
		qcow2_put_be64(e, (op->alloc_host + (i << q->cluster_bits)) | QCOW2_COPIED);
		t->dirty = true;
	}
	if (res)
		qcow2_refcount_release_range(q, op->alloc_host, op->alloc.n);
	while (*pp != &op->alloc)
		pp = &(*pp)->next;
	*pp = op->alloc.next;
	qcow2_wake_all(&op->alloc.waiters, 0);
	t->pins--;
	op->alloc_l2 = NULL;
}

static void qcow2_write_alloc_done(struct qcow2_op *op, int res)
{
	struct qcow2 *q = op->q;

	mutex_lock(&q->lock);
	qcow2_write_publish(q, op, res);
	mutex_unlock(&q->lock);
	qcow2_op_advance(op, res);
}

/* The COW bytes read into op->cow, or zeros. */
static uint8_t *qcow2_write_head_buf(struct qcow2_op *op)
{
	return op->head_zero ? qcow2_zeros : op->cow;
}

static uint8_t *qcow2_write_tail_buf(struct qcow2_op *op)
{
	return op->tail_zero ? qcow2_zeros : op->cow + (op->head_zero ? 0 : op->head);
}

/* The COW parts are in: writes head, data and tail as one. Zeros for
 * fresh clusters are left out: past the end of the file, or in a hole,
 * they read as zeros already. */
static void qcow2_write_alloc_data(struct qcow2_op *op)
{
	uint64_t head = op->fresh && op->head_zero ? 0 : op->head;
	uint64_t tail = op->fresh && op->tail_zero ? 0 : op->tail;
	int ret = op->wres;

	if (!ret)
		ret = qcow2_op_slice(op, head ? 1 : 0, op->pos, op->map.len);
	if (!ret) {
		if (head)
			op->vec[0] = (struct iovec){ qcow2_write_head_buf(op), head };
		if (tail)
			op->vec[op->nvec++] = (struct iovec){ qcow2_write_tail_buf(op), tail };
		ret = qcow2_op_io(op, true, op->alloc_host + op->head - head, head + op->map.len + tail,
				  qcow2_write_alloc_done);
	}
	if (ret)
		qcow2_write_alloc_done(op, ret);
}

/* The head is in: reads the tail as the guest sees it now. */
static void qcow2_write_cow_tail(struct qcow2_op *op)
{
	int ret = op->wres;

	if (!ret && op->tail && !op->tail_zero) {
		ret = qcow2_op_child(op, QCOW2_OP_READ, op->pos + op->map.len, op->tail,
				     qcow2_write_tail_buf(op), qcow2_write_alloc_data);
		if (!ret)
			return;
	}
	op->wres = ret;
	qcow2_write_alloc_data(op);
}

/* Starts an allocating run: the head's old contents first. */
static int qcow2_write_alloc_run(struct qcow2_op *op)
{
	uint64_t need = (op->head_zero ? 0 : op->head) + (op->tail_zero ? 0 : op->tail);
	int ret = 0;

	if (op->cow_len < need) {
		free(op->cow);
		op->cow = malloc(need);
		op->cow_len = op->cow ? need : 0;
		if (!op->cow)
			ret = -ENOMEM;
	}
	if (!ret && op->head && !op->head_zero)
		ret = qcow2_op_child(op, QCOW2_OP_READ, op->pos - op->head, op->head, op->cow,
				     qcow2_write_cow_tail);
	else if (!ret)
		qcow2_write_cow_tail(op);
	if (ret)
		qcow2_write_alloc_done(op, ret);
	return QCOW2_WAIT;
}

/* ---- writes ---- */

/* Whether the caches hold twice their limit of tables that cannot be
 * evicted (dirty ones, mostly): then a writer writes them back first, so
 * a guest that never flushes cannot grow them without bound. */
static bool qcow2_write_throttle(const struct qcow2 *q) REQUIRES(&q->lock)
{
	/* The margin is for tables pinned or loading for requests in flight. */
	return q->l2c.n >= 2 * q->l2c.cap + 64 || q->rbc.n >= 2 * q->rbc.cap + 64;
}

typedef int qcow2_locked_fn(struct qcow2 *q, struct qcow2_op *op, uint64_t len);

/* The metadata part of a write or zeroing step: fn under the lock, whose
 * pins are released unless it waits. With too many tables dirty a flush
 * goes first instead, and resume runs the step again after it. Returns
 * fn's result, QCOW2_WAIT or -errno. */
static int qcow2_locked_step(struct qcow2_op *op, qcow2_locked_fn *fn, uint64_t len,
			     void (*resume)(struct qcow2_op *op))
{
	struct qcow2 *q = op->q;
	bool throttle;
	int ret;

	mutex_lock(&q->lock);
	qcow2_activate(q, op);
	throttle = qcow2_write_throttle(q) && !q->broken;
	ret = throttle ? QCOW2_WAIT : fn(q, op, len);
	if (ret != QCOW2_WAIT)
		qcow2_unpin_all(op);
	mutex_unlock(&q->lock);
	if (throttle)
		ret = qcow2_op_child(op, QCOW2_OP_FLUSH, 0, 0, NULL, resume);
	return throttle && !ret ? QCOW2_WAIT : ret;
}

/* A step's children report into wres: clear what the last step's left. */
static int qcow2_write_locked(struct qcow2 *q, struct qcow2_op *op, uint64_t len)
	REQUIRES(&q->lock)
{
	op->wres = 0;
	return qcow2_write_prepare(q, op);
}

static void qcow2_write_step(struct qcow2_op *op)
{
	int ret;

	if (op->pos >= op->end) {
		qcow2_op_end(op, 0);
		return;
	}
	ret = qcow2_locked_step(op, qcow2_write_locked, 0, qcow2_write_resume);
	if (ret == QCOW2_INPLACE)
		ret = qcow2_op_run(op, true);
	else if (ret == QCOW2_ALLOC)
		ret = qcow2_write_alloc_run(op);
	if (ret != QCOW2_WAIT)
		qcow2_op_end(op, ret);
}

void qcow2_write_start(struct qcow2_op *op)
{
	op->step = qcow2_write_step;
	qcow2_write_step(op);
}

/* ---- zeroing ---- */

/* qcow2_zero_entry: no L2 entry reads as zeros, write them. */
#define QCOW2_WRITE_ZEROES UINT64_MAX

/* The L2 entry that makes a cluster read as the request wants, or
 * QCOW2_WRITE_ZEROES (v2 with a backing file). */
static uint64_t qcow2_zero_entry(const struct qcow2 *q, enum block_zero_mode mode)
{
	if (!q->backing)
		return q->version >= 3 && mode != BLOCK_DISCARD ? QCOW2_ZERO : 0;
	if (q->version >= 3)
		return QCOW2_ZERO;
	return mode == BLOCK_DISCARD ? 0 : QCOW2_WRITE_ZEROES;
}

/* Under the lock: sets the whole clusters from op->pos (up to *len bytes,
 * in one L2 table) to `entry`, releasing what they pointed at. */
static int qcow2_zero_clusters(struct qcow2 *q, struct qcow2_op *op, uint64_t entry, uint64_t len)
	REQUIRES(&q->lock)
{
	uint64_t gc = op->pos >> q->cluster_bits, n = (len + q->cluster_size - 1) >> q->cluster_bits;
	uint64_t l2i = gc & ((1ULL << q->l2_bits) - 1), l1i = gc >> q->l2_bits, i;
	struct qcow2_table *t;
	struct qcow2_map old;
	int ret = 0;

	for (i = 0; i < n; i++) {
		struct qcow2_alloc *a = qcow2_write_alloc_at(q, gc + i);

		if (a) {
			qcow2_wait(op, &a->waiters, qcow2_zero_resume);
			return QCOW2_WAIT;
		}
	}
	if (!entry && (l1i >= q->l1_size || !(q->l1[l1i] & QCOW2_OFFSET_MASK)))
		return 0;	/* unallocated already */
	ret = qcow2_write_ensure_l2(q, op, gc, qcow2_zero_resume);
	if (!ret)
		ret = qcow2_cache_get(q, &q->l2c, q->l1[l1i] & QCOW2_OFFSET_MASK, op,
				      qcow2_zero_resume, &t);
	for (i = 0; !ret && i < n; i++) {
		uint8_t *e = t->data + (l2i + i) * 8;

		if (qcow2_be64(e) == entry)
			continue;
		if (!qcow2_read_entry(q, qcow2_be64(e), &old) && qcow2_refcount_release(q, &old))
			q->broken = -ENOMEM;
		qcow2_put_be64(e, entry);
		t->dirty = true;
	}
	return ret;
}

/* Whether the part [op->pos, op->pos + len) of one cluster reads as zeros
 * already (a zero cluster, or unallocated with nothing behind it), in
 * *zero. 0, QCOW2_WAIT or -errno. */
static int qcow2_zero_already(struct qcow2 *q, struct qcow2_op *op, uint64_t len, bool *zero)
{
	struct qcow2_map m;
	int ret;

	mutex_lock(&q->lock);
	qcow2_activate(q, op);
	ret = qcow2_read_map(q, op, op->pos, len, qcow2_zero_resume, &m);
	if (ret != QCOW2_WAIT)
		qcow2_unpin_all(op);
	mutex_unlock(&q->lock);
	*zero = qcow2_map_reads_zero(q, &m, op->pos);
	return ret;
}

/* The partial-cluster part [op->pos, op->pos + len), or whole clusters
 * of a v2 image with a backing file: written with zeros by an internal
 * write, unless the request is a discard. */
static int qcow2_zero_write(struct qcow2_op *op, uint64_t len)
{
	bool zero = op->zmode == BLOCK_DISCARD;
	int ret = zero ? 0 : qcow2_zero_already(op->q, op, len, &zero);

	if (ret || zero) {
		op->pos += ret ? 0 : len;
		return ret;
	}
	if (op->cow_len < len) {
		free(op->cow);
		op->cow = calloc(1, len);
		op->cow_len = op->cow ? len : 0;
		if (!op->cow)
			return -ENOMEM;
	}
	memset(op->cow, 0, len);
	op->map.len = len;
	ret = qcow2_op_child(op, QCOW2_OP_WRITE, op->pos, len, op->cow, qcow2_zero_written);
	return ret ? ret : QCOW2_WAIT;
}

static void qcow2_zero_written(struct qcow2_op *op)
{
	qcow2_op_advance(op, op->wres);
}

/* The next piece from op->pos: a partial cluster, or whole clusters up
 * to the end of the request or of their L2 table. */
static uint64_t qcow2_zero_piece(const struct qcow2 *q, const struct qcow2_op *op, bool *whole)
{
	uint64_t cs = q->cluster_size, in = op->pos & (cs - 1), left = op->end - op->pos;
	uint64_t table = (1ULL << (q->l2_bits + q->cluster_bits)) -
			 (op->pos & ((1ULL << (q->l2_bits + q->cluster_bits)) - 1));

	/* The last cluster of the disk counts as whole when the request
	 * reaches the disk's end. */
	*whole = !in && (left >= cs || op->end == q->blk.size);
	if (!*whole)
		return in + left < cs ? left : cs - in;
	if (left < table)
		return op->end == q->blk.size ? left : left & ~(cs - 1);
	return table;
}

static int qcow2_zero_locked(struct qcow2 *q, struct qcow2_op *op, uint64_t len)
	REQUIRES(&q->lock)
{
	return q->broken ? q->broken : qcow2_zero_clusters(q, op, qcow2_zero_entry(q, op->zmode), len);
}

static void qcow2_zero_step(struct qcow2_op *op)
{
	struct qcow2 *q = op->q;
	uint64_t entry = qcow2_zero_entry(q, op->zmode), len;
	bool whole;
	int ret = 0;

	while (op->pos < op->end && !ret) {
		len = qcow2_zero_piece(q, op, &whole);
		if (!whole || entry == QCOW2_WRITE_ZEROES) {
			ret = qcow2_zero_write(op, whole ? q->cluster_size < len ? q->cluster_size : len : len);
			continue;
		}
		ret = qcow2_locked_step(op, qcow2_zero_locked, len, qcow2_zero_resume);
		if (!ret)
			op->pos += len;
	}
	if (ret != QCOW2_WAIT)
		qcow2_op_end(op, ret);
}

void qcow2_write_zero_start(struct qcow2_op *op)
{
	op->step = qcow2_zero_step;
	qcow2_zero_step(op);
}
