/*
 * qcow2 writeback: FLUSH, and the last metadata write at close. Metadata
 * changes live in memory (dirty L2 tables and refcount blocks, dirty
 * ranges of the L1 and refcount tables, a moved table the header must
 * point at) until a writeback takes a snapshot of all of it, at one
 * instant under qcow2.lock, and writes it in dependency order, each stage
 * made durable (fdatasync) before the next begins:
 *
 *   1. refcount blocks and refcount table entries: every cluster that a
 *      later stage makes reachable is counted on disk first;
 *   2. the header, if the refcount table moved (so the counts in stage 1
 *      are the ones a reader finds);
 *   3. L2 tables: they only point at counted clusters whose data was
 *      written before the L2 entry changed in memory;
 *   4. the L1 table: it only points at L2 tables written in stage 3;
 *   5. the header, if the L1 table moved.
 *
 * A crash between any two writes leaves counts for clusters nothing points
 * at yet (leaks, which `qemu-img check -r leaks` repairs) and never an
 * entry pointing at an uncounted or reused cluster. Writes acknowledged
 * before the FLUSH are covered: their data was written and their L2 entry
 * changed before the snapshot. Released clusters are dropped from their
 * refcounts at the start of a later writeback (qcow2_refcount.c), once
 * this one has made their unlinking durable.
 *
 * Threads: one writeback runs at a time, on the loop of a FLUSH that
 * waits for it; its state (struct qcow2_wb) belongs to that loop's thread
 * and moves to another FLUSH's loop through a BH when that FLUSH still
 * waits after the first one ended. The counters and the waiting FLUSH
 * requests are under qcow2.lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

enum qcow2_wb_stage {
	QCOW2_WB_REFCOUNTS,
	QCOW2_WB_RT_HEADER,
	QCOW2_WB_L2,
	QCOW2_WB_L1,
	QCOW2_WB_L1_HEADER,
	QCOW2_WB_STAGES,
};

/* One write of a stage: a copy of a table, a piece of one, or the header. */
struct qcow2_wb_item {
	struct loop_io io;
	struct iovec iov;
	uint64_t off;
	size_t done;
	struct qcow2_table *t;		/* the cached table it copies, or NULL */
	struct qcow2_wb *wb;
};

struct qcow2_wb {
	struct qcow2_op op;		/* the loop it runs on, waits */
	uint64_t gen;
	struct qcow2_wb_item *items;
	unsigned n, cap;
	unsigned first[QCOW2_WB_STAGES + 1];	/* stage s: items [first[s], first[s+1]) */
	unsigned stage, pending;
	bool synced;
	int err;
	/* what the snapshot took, to give back if a write fails */
	bool rt_moved, l1_moved;
	uint64_t rt_lo, rt_hi;
	uint32_t l1_lo, l1_hi;
	uint8_t *hdr;			/* the header once every stage is done */
};

static void qcow2_wb_run(struct qcow2_op *op);

int qcow2_flush_init(struct qcow2 *q)
{
	struct qcow2_wb *wb = calloc(1, sizeof(*wb));

	if (!wb || !(wb->hdr = malloc(q->hdr_len))) {
		free(wb);
		return -ENOMEM;
	}
	wb->op.q = q;
	wb->op.kind = QCOW2_OP_FLUSH;
	loop_bh_init(&wb->op.bh, qcow2_op_bh);
	q->wb = wb;
	return 0;
}

static void qcow2_wb_free_items(struct qcow2_wb *wb)
{
	unsigned i;

	for (i = 0; i < wb->n; i++)
		free(wb->items[i].iov.iov_base);
	wb->n = 0;
}

void qcow2_flush_destroy(struct qcow2 *q)
{
	if (!q->wb)
		return;
	qcow2_wb_free_items(q->wb);
	free(q->wb->items);
	free(q->wb->hdr);
	free(q->wb);
	q->wb = NULL;
}

/* ---- the snapshot ---- */

/* A new item of len bytes at off (buffer zeroed); NULL without memory. */
static struct qcow2_wb_item *qcow2_wb_item(struct qcow2_wb *wb, uint64_t off, size_t len)
{
	struct qcow2_wb_item *it = wb->items;
	void *buf = calloc(1, len);

	if (buf && wb->n == wb->cap) {
		it = realloc(wb->items, (wb->cap ? wb->cap * 2 : 32) * sizeof(*it));
		if (it) {
			wb->items = it;
			wb->cap = wb->cap ? wb->cap * 2 : 32;
		}
	}
	if (!buf || wb->n == wb->cap) {
		free(buf);
		return NULL;
	}
	it = &wb->items[wb->n++];
	*it = (struct qcow2_wb_item){ .iov = { buf, len }, .off = off, .wb = wb };
	return it;
}

static int qcow2_wb_tables(struct qcow2 *q, struct qcow2_wb *wb, struct qcow2_cache *c)
	REQUIRES(&q->lock)
{
	struct qcow2_wb_item *it;
	unsigned i;

	for (i = 0; i < c->n; i++) {
		struct qcow2_table *t = c->t[i];

		if (t->state != QCOW2_T_READY || !t->dirty)
			continue;
		it = qcow2_wb_item(wb, t->off, q->cluster_size);
		if (!it)
			return -ENOMEM;
		memcpy(it->iov.iov_base, t->data, q->cluster_size);
		it->t = t;
	}
	return 0;
}

/* Entries [lo, hi) of an in-memory table at off on disk, big-endian; the
 * whole table, padded to its clusters, when it moved. */
static int qcow2_wb_entries(struct qcow2 *q, struct qcow2_wb *wb, const uint64_t *e,
			    uint64_t size, uint64_t off, uint64_t lo, uint64_t hi, bool moved)
	REQUIRES(&q->lock)
{
	struct qcow2_wb_item *it;
	uint64_t i;

	if (moved) {
		lo = 0;
		hi = size;
	}
	if (lo >= hi)
		return 0;
	it = qcow2_wb_item(wb, off + lo * 8, moved ? ALIGN_UP(size * 8, q->cluster_size) : (hi - lo) * 8);
	if (!it)
		return -ENOMEM;
	for (i = lo; i < hi; i++)
		qcow2_put_be64((uint8_t *)it->iov.iov_base + (i - lo) * 8, e[i]);
	return 0;
}

static int qcow2_wb_header(struct qcow2 *q, struct qcow2_wb *wb)
	REQUIRES(&q->lock)
{
	struct qcow2_wb_item *it = qcow2_wb_item(wb, 0, q->hdr_len);

	if (!it)
		return -ENOMEM;
	memcpy(it->iov.iov_base, wb->hdr, q->hdr_len);
	return 0;
}

/* Copies every stage's writes; nothing in q changes unless it succeeds. */
static int qcow2_wb_copy(struct qcow2 *q, struct qcow2_wb *wb)
	REQUIRES(&q->lock)
{
	int ret;

	memcpy(wb->hdr, q->hdr, q->hdr_len);
	wb->first[QCOW2_WB_REFCOUNTS] = wb->n;
	ret = qcow2_wb_tables(q, wb, &q->rbc);
	if (!ret)
		ret = qcow2_wb_entries(q, wb, q->rt, q->rt_size, q->rt_off, q->rt_lo, q->rt_hi,
				       q->rt_moved);
	qcow2_put_be64(wb->hdr + 48, q->rt_off);
	qcow2_put_be32(wb->hdr + 56, q->rt_clusters);
	wb->first[QCOW2_WB_RT_HEADER] = wb->n;
	if (!ret && q->rt_moved)
		ret = qcow2_wb_header(q, wb);
	wb->first[QCOW2_WB_L2] = wb->n;
	if (!ret)
		ret = qcow2_wb_tables(q, wb, &q->l2c);
	wb->first[QCOW2_WB_L1] = wb->n;
	if (!ret)
		ret = qcow2_wb_entries(q, wb, q->l1, q->l1_size, q->l1_off, q->l1_lo, q->l1_hi,
				       q->l1_moved);
	qcow2_put_be32(wb->hdr + 36, q->l1_size);
	qcow2_put_be64(wb->hdr + 40, q->l1_off);
	wb->first[QCOW2_WB_L1_HEADER] = wb->n;
	if (!ret && q->l1_moved)
		ret = qcow2_wb_header(q, wb);
	wb->first[QCOW2_WB_STAGES] = wb->n;
	return ret;
}

/* Takes the snapshot: copies, then marks what it took as clean. */
static int qcow2_wb_snapshot(struct qcow2 *q, struct qcow2_wb *wb)
	REQUIRES(&q->lock)
{
	int ret = qcow2_wb_copy(q, wb);
	unsigned i;

	if (ret) {
		qcow2_wb_free_items(wb);
		return ret;
	}
	for (i = 0; i < wb->n; i++) {
		if (wb->items[i].t) {
			wb->items[i].t->dirty = false;
			wb->items[i].t->writing = true;
		}
	}
	wb->rt_moved = q->rt_moved;
	wb->rt_lo = q->rt_lo;
	wb->rt_hi = q->rt_hi;
	wb->l1_moved = q->l1_moved;
	wb->l1_lo = q->l1_lo;
	wb->l1_hi = q->l1_hi;
	q->rt_moved = q->l1_moved = false;
	q->rt_lo = q->rt_size;
	q->rt_hi = 0;
	q->l1_lo = q->l1_size;
	q->l1_hi = 0;
	wb->gen = ++q->wb_snaps;
	return 0;
}

/* ---- the end of a writeback ---- */

/* Under the lock: the snapshot is on disk (err 0), or is given back to
 * the next writeback. */
static void qcow2_wb_settle(struct qcow2 *q, struct qcow2_wb *wb, int err)
	REQUIRES(&q->lock)
{
	unsigned i;

	for (i = 0; i < wb->n; i++) {
		struct qcow2_table *t = wb->items[i].t;

		if (t) {
			t->writing = false;
			t->dirty |= err != 0;
		}
	}
	if (!err) {
		q->wb_done = wb->gen;
		memcpy(q->hdr, wb->hdr, q->hdr_len);
		return;
	}
	q->rt_moved |= wb->rt_moved;
	q->l1_moved |= wb->l1_moved;
	q->rt_lo = q->rt_lo < wb->rt_lo ? q->rt_lo : wb->rt_lo;
	q->rt_hi = q->rt_hi > wb->rt_hi ? q->rt_hi : wb->rt_hi;
	q->l1_lo = q->l1_lo < wb->l1_lo ? q->l1_lo : wb->l1_lo;
	q->l1_hi = q->l1_hi > wb->l1_hi ? q->l1_hi : wb->l1_hi;
}

/* Under the lock: wakes the FLUSH requests this writeback served (all of
 * them, with err, if it failed). */
static void qcow2_wb_wake(struct qcow2 *q, int err)
	REQUIRES(&q->lock)
{
	struct qcow2_op **pp = &q->flush_waiters, *op;

	while ((op = *pp)) {
		if (err || op->flush_gen <= q->wb_done) {
			*pp = op->wnext;
			op->wres = err;
			loop_bh_schedule(op->loop, &op->bh);
		} else {
			pp = &op->wnext;
		}
	}
}

/* Ends this writeback; starts the next one on the loop of a FLUSH that
 * still waits (it came after this snapshot), or stops. */
static void qcow2_wb_end(struct qcow2_wb *wb, int err)
{
	struct qcow2 *q = wb->op.q;

	mutex_lock(&q->lock);
	qcow2_wb_settle(q, wb, err);
	qcow2_wb_wake(q, err);
	qcow2_cache_shrink(q, &q->l2c);
	qcow2_cache_shrink(q, &q->rbc);
	qcow2_wb_free_items(wb);
	q->wb_running = q->flush_waiters != NULL;
	if (q->wb_running) {
		wb->op.loop = q->flush_waiters->loop;
		wb->op.resume = qcow2_wb_run;
		loop_bh_schedule(wb->op.loop, &wb->op.bh);
	}
	mutex_unlock(&q->lock);
}

/* ---- stages ---- */

static void qcow2_wb_stage(struct qcow2_wb *wb);

static void qcow2_wb_synced(struct loop_io *io, int res)
{
	struct qcow2_wb *wb = container_of(io, struct qcow2_wb, op.io);

	if (res < 0) {
		qcow2_wb_end(wb, res);
		return;
	}
	wb->synced = true;
	wb->stage++;
	qcow2_wb_stage(wb);
}

static void qcow2_wb_sync(struct qcow2_wb *wb)
{
	int ret = loop_io_fsync(wb->op.loop, &wb->op.io, wb->op.q->fd, true, qcow2_wb_synced);

	if (ret)
		qcow2_wb_end(wb, ret);
}

static void qcow2_wb_written(struct loop_io *io, int res);

static int qcow2_wb_submit(struct qcow2_wb_item *it)
{
	struct qcow2_wb *wb = it->wb;

	return loop_io_writev(wb->op.loop, &it->io, wb->op.q->fd, &it->iov, 1, it->off + it->done,
			      qcow2_wb_written);
}

/* One write of the stage is over; the last one syncs or fails the stage. */
static void qcow2_wb_item_end(struct qcow2_wb *wb)
{
	if (--wb->pending)
		return;
	if (wb->err)
		qcow2_wb_end(wb, wb->err);
	else
		qcow2_wb_sync(wb);
}

static void qcow2_wb_written(struct loop_io *io, int res)
{
	struct qcow2_wb_item *it = container_of(io, struct qcow2_wb_item, io);
	struct qcow2_wb *wb = it->wb;

	if (res > 0 && (size_t)res < it->iov.iov_len) {
		it->done += (size_t)res;
		it->iov.iov_base = (char *)it->iov.iov_base + res;
		it->iov.iov_len -= (size_t)res;
		res = qcow2_wb_submit(it);
		if (!res)
			return;
	}
	if (res <= 0 && !wb->err)
		wb->err = res ? res : -EIO;
	/* Back to the buffer's start, which qcow2_wb_free_items frees. */
	it->iov.iov_base = (char *)it->iov.iov_base - it->done;
	qcow2_wb_item_end(wb);
}

/* Submits the next stage that has writes, each stage's writes at once; a
 * sync follows each. With nothing to write at all, one sync for the data. */
static void qcow2_wb_stage(struct qcow2_wb *wb)
{
	unsigned i;

	while (wb->stage < QCOW2_WB_STAGES && wb->first[wb->stage] == wb->first[wb->stage + 1])
		wb->stage++;
	if (wb->stage >= QCOW2_WB_STAGES) {
		if (wb->synced)
			qcow2_wb_end(wb, 0);
		else
			qcow2_wb_sync(wb);
		return;
	}
	/* One count for this loop, so no completion ends the stage early. */
	wb->pending = 1;
	for (i = wb->first[wb->stage]; i < wb->first[wb->stage + 1]; i++) {
		int ret = qcow2_wb_submit(&wb->items[i]);

		if (ret)
			wb->err = ret;
		else
			wb->pending++;
	}
	qcow2_wb_item_end(wb);
}

/* Applies the releases that are safe now, takes the snapshot and starts
 * writing it. The resume point of a writeback that waited. */
static void qcow2_wb_run(struct qcow2_op *op)
{
	struct qcow2_wb *wb = container_of(op, struct qcow2_wb, op);
	struct qcow2 *q = op->q;
	int ret = op->wres;

	op->wres = 0;
	mutex_lock(&q->lock);
	if (!ret)
		ret = qcow2_refcount_apply(q, op, qcow2_wb_run);
	if (ret == QCOW2_WAIT) {
		mutex_unlock(&q->lock);
		return;
	}
	qcow2_unpin_all(op);
	if (!ret)
		ret = qcow2_wb_snapshot(q, wb);
	mutex_unlock(&q->lock);
	if (ret) {
		qcow2_wb_end(wb, ret);
		return;
	}
	wb->stage = 0;
	wb->synced = false;
	wb->err = 0;
	qcow2_wb_stage(wb);
}

/* ---- FLUSH ---- */

static void qcow2_flush_resume(struct qcow2_op *op)
{
	qcow2_op_end(op, op->wres);
}

void qcow2_flush_start(struct qcow2_op *op)
{
	struct qcow2 *q = op->q;
	struct qcow2_wb *wb = q->wb;
	bool start;
	int err;

	mutex_lock(&q->lock);
	err = q->broken;
	if (!err) {
		op->flush_gen = q->wb_snaps + 1;
		qcow2_wait(op, &q->flush_waiters, qcow2_flush_resume);
	}
	start = !err && !q->wb_running;
	q->wb_running |= start;
	mutex_unlock(&q->lock);
	if (err) {
		qcow2_op_end(op, err);
	} else if (start) {
		wb->op.loop = op->loop;
		wb->op.wres = 0;
		qcow2_wb_run(&wb->op);
	}
}

/* Whether a writeback would still change something on disk. */
static bool qcow2_flush_pending(struct qcow2 *q)
{
	const struct qcow2_cache *c[] = { &q->l2c, &q->rbc };
	unsigned i, k;
	bool dirty;

	mutex_lock(&q->lock);
	dirty = q->nfrees || q->rt_lo < q->rt_hi || q->l1_lo < q->l1_hi || q->rt_moved ||
		q->l1_moved;
	for (k = 0; k < 2 && !dirty; k++) {
		for (i = 0; i < c[k]->n && !dirty; i++)
			dirty = c[k]->t[i]->state == QCOW2_T_READY && c[k]->t[i]->dirty;
	}
	mutex_unlock(&q->lock);
	return dirty;
}

struct qcow2_close_req {
	struct block_req r;
	int res;
	bool done;
};

static void qcow2_close_done(struct block_req *r, int res)
{
	struct qcow2_close_req *c = container_of(r, struct qcow2_close_req, r);

	c->res = res;
	c->done = true;
}

int qcow2_flush_close(struct qcow2 *q)
{
	struct loop *l;
	unsigned round;
	int ret = loop_new(&(struct loop_params){ .name = "qcow2-close" }, &l);

	if (ret)
		return ret;
	/* Releases need a second round: the first makes the unlinks durable. */
	for (round = 0; !ret && round < 4 && (!round || qcow2_flush_pending(q)); round++) {
		struct qcow2_close_req c = { .done = false };

		ret = block_flush(&q->blk, l, &c.r, qcow2_close_done);
		while (!ret && !c.done)
			ret = loop_run_once(l, true);
		ret = ret ? ret : c.res;
	}
	loop_free(l);
	return ret;
}
