/*
 * qcow2 refcounts: reading and changing a cluster's count in its refcount
 * block, allocating runs of free host clusters (next fit from a cursor
 * that releases move back, creating refcount blocks and growing the
 * refcount table as the file grows), and dropping references once it is
 * safe.
 *
 * Allocation only ever raises a count from 0 to 1, in memory, before
 * anything points at the cluster, so a writeback that saves the refcount
 * blocks before the L2 tables never leaves an entry without its count.
 * Releases are the reverse and are held back: a cluster unlinked from an
 * L2 table keeps its count until (1) the writeback that makes the unlink
 * durable has completed, so a crash cannot leave an entry pointing at a
 * cluster already reused, and (2) every request that started before the
 * unlink has ended, so none still reads or writes the cluster through a
 * mapping it looked up earlier. The next writeback applies them.
 *
 * A new refcount block goes into the first free cluster of the range it
 * describes, and counts itself. A refcount table that is full moves to the
 * end of the file with the new blocks that describe it and itself; the
 * header points at it from the next writeback, and the old table is
 * released like any cluster.
 *
 * Threads: everything here runs under qcow2.lock, in the thread of the
 * request (or writeback) that needs it; a missing refcount block is loaded
 * on that request's loop (QCOW2_WAIT).
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "block/qcow2.h"

static uint64_t qcow2_rc_get(const struct qcow2 *q, const struct qcow2_table *t, uint64_t c)
{
	uint64_t i = c & ((1ULL << q->rb_bits) - 1), v = 0;
	unsigned bits = 1U << q->refcount_order, k;
	const uint8_t *p;

	if (bits < 8)
		return (t->data[i * bits / 8] >> (i * bits % 8)) & ((1U << bits) - 1);
	p = t->data + i * (bits / 8);
	for (k = 0; k < bits / 8; k++)
		v = v << 8 | p[k];
	return v;
}

static void qcow2_rc_set(const struct qcow2 *q, struct qcow2_table *t, uint64_t c, uint64_t v)
{
	uint64_t i = c & ((1ULL << q->rb_bits) - 1);
	unsigned bits = 1U << q->refcount_order, k, shift;
	uint8_t *p;

	t->dirty = true;
	if (bits < 8) {
		p = &t->data[i * bits / 8];
		shift = (unsigned)(i * bits % 8);
		*p = (uint8_t)((*p & ~(((1U << bits) - 1) << shift)) | (v << shift));
		return;
	}
	p = t->data + i * (bits / 8);
	for (k = bits / 8; k--; v >>= 8)
		p[k] = (uint8_t)v;
}

/* The refcount block of cluster c in *t (NULL when it has none yet:
 * every count in its range is 0). QCOW2_WAIT while it loads. */
static int qcow2_rc_block(struct qcow2 *q, struct qcow2_op *op, uint64_t c,
			  void (*resume)(struct qcow2_op *op), struct qcow2_table **t)
	REQUIRES(&q->lock)
{
	uint64_t ri = c >> q->rb_bits;

	*t = NULL;
	if (ri >= q->rt_size || !q->rt[ri])
		return 0;
	return qcow2_cache_get(q, &q->rbc, q->rt[ri], op, resume, t);
}

static void qcow2_rt_dirty(struct qcow2 *q, uint64_t ri)
	REQUIRES(&q->lock)
{
	q->rt_lo = q->rt_lo < ri ? q->rt_lo : ri;
	q->rt_hi = q->rt_hi > ri + 1 ? q->rt_hi : ri + 1;
}

static void qcow2_grow_host(struct qcow2 *q, uint64_t end)
	REQUIRES(&q->lock)
{
	if (q->host_clusters < end)
		q->host_clusters = end;
}

/* A new refcount block at cluster c for range ri (its count is set by
 * the caller). */
static int qcow2_rb_create(struct qcow2 *q, uint64_t c, uint64_t ri)
	REQUIRES(&q->lock)
{
	struct qcow2_table *t;
	int ret = qcow2_cache_new(q, &q->rbc, c << q->cluster_bits, &t);

	if (ret)
		return ret;
	q->rt[ri] = c << q->cluster_bits;
	qcow2_rt_dirty(q, ri);
	return 0;
}

/* Counts clusters [first, first + n) as used; their blocks are in memory
 * (a block that is not means a bug here: the image is marked broken
 * rather than left with uncounted clusters). */
static int qcow2_rc_mark(struct qcow2 *q, uint64_t first, uint64_t n)
	REQUIRES(&q->lock)
{
	struct qcow2_table *t = NULL;
	uint64_t c, cur = UINT64_MAX;

	for (c = first; c < first + n; c++) {
		if (c >> q->rb_bits != cur) {
			cur = c >> q->rb_bits;
			t = qcow2_cache_ready(&q->rbc, q->rt[cur]);
			if (!t)
				return q->broken = qcow2_corrupt(q, "a refcount block left the cache while in use",
								 q->rt[cur]);
		}
		qcow2_rc_set(q, t, c, 1);
	}
	qcow2_grow_host(q, first + n);
	return 0;
}

/* Blocks missing for the ranges that clusters [p, p + m + n) span, where m
 * is that same count (the new blocks go first): the fixed point. Ranges
 * past the refcount table count as missing. */
static uint64_t qcow2_rc_missing(const struct qcow2 *q, uint64_t p, uint64_t n)
	REQUIRES(&q->lock)
{
	uint64_t m = 0, next, ri;

	for (;;) {
		next = 0;
		for (ri = p >> q->rb_bits; ri <= (p + m + n - 1) >> q->rb_bits; ri++)
			next += ri >= q->rt_size || !q->rt[ri];
		if (next == m)
			return m;
		m = next;
	}
}

/* Loads the existing refcount blocks of clusters [p, p + len). */
static int qcow2_rc_resident(struct qcow2 *q, struct qcow2_op *op, uint64_t p, uint64_t len,
			     void (*resume)(struct qcow2_op *op))
	REQUIRES(&q->lock)
{
	struct qcow2_table *t;
	uint64_t ri;
	int ret;

	for (ri = p >> q->rb_bits; ri <= (p + len - 1) >> q->rb_bits; ri++) {
		ret = ri < q->rt_size && q->rt[ri] ?
			qcow2_cache_get(q, &q->rbc, q->rt[ri], op, resume, &t) : 0;
		if (ret)
			return ret;
	}
	return 0;
}

/* Pins (d = 1) or unpins (d = -1) the blocks that existed before a
 * placement at cluster p, for the ranges [p, p + len) spans: new blocks
 * must not push them out of the cache before their counts are set. They
 * are in memory (qcow2_rc_resident) and lie below p; new ones from p on. */
static void qcow2_rc_hold(struct qcow2 *q, uint64_t p, uint64_t len, int d)
	REQUIRES(&q->lock)
{
	struct qcow2_table *t;
	uint64_t ri;

	for (ri = p >> q->rb_bits; ri <= (p + len - 1) >> q->rb_bits; ri++) {
		if (ri < q->rt_size && q->rt[ri] && q->rt[ri] < p << q->cluster_bits &&
		    (t = qcow2_cache_ready(&q->rbc, q->rt[ri])))
			t->pins += (unsigned)d;
	}
}

/* Puts the m missing blocks of the ranges that [p, p + m + n) spans at
 * p, p + 1, ... and counts all m + n clusters. The table reaches them and
 * the existing blocks are in memory. A failure here (no memory for a
 * table) leaves blocks without counts: the image is broken. */
static int qcow2_rc_place(struct qcow2 *q, uint64_t p, uint64_t m, uint64_t n)
	REQUIRES(&q->lock)
{
	uint64_t ri, i = 0;
	int ret = 0;

	qcow2_rc_hold(q, p, m + n, 1);
	for (ri = p >> q->rb_bits; !ret && ri <= (p + m + n - 1) >> q->rb_bits; ri++)
		ret = q->rt[ri] ? 0 : qcow2_rb_create(q, p + i++, ri);
	if (!ret)
		ret = qcow2_rc_mark(q, p, m + n);
	qcow2_rc_hold(q, p, m + n, -1);
	if (ret)
		q->broken = ret;
	return ret;
}

/* Moves the refcount table to the end of the file, at p = host_clusters
 * after the blocks missing for the ranges it spans, with room for `need`
 * ranges and for the ranges of its own clusters. The old table is
 * released once the header points at the new one. */
static int qcow2_rt_grow(struct qcow2 *q, struct qcow2_op *op, uint64_t need,
			 void (*resume)(struct qcow2_op *op))
	REQUIRES(&q->lock)
{
	uint64_t p = q->host_clusters, per = q->cluster_size / 8, k, m, last, i, *rt;
	int ret;

	for (;;) {
		k = (need + per - 1) / per;
		m = qcow2_rc_missing(q, p, k);
		last = (p + m + k - 1) >> q->rb_bits;
		if (last < need)
			break;
		need = last + 1;
	}
	if (k * q->cluster_size > QCOW2_MAX_RT_BYTES)
		return -ENOSPC;
	ret = qcow2_rc_resident(q, op, p, m + k, resume);
	if (ret)
		return ret;
	rt = calloc(k * per, 8);
	if (!rt || qcow2_refcount_release_range(q, q->rt_off, q->rt_clusters)) {
		free(rt);
		return -ENOMEM;
	}
	for (i = 0; i < q->rt_size; i++)
		rt[i] = q->rt[i];
	free(q->rt);
	q->rt = rt;
	q->rt_size = k * per;
	q->rt_off = (p + m) << q->cluster_bits;
	q->rt_clusters = (uint32_t)k;
	q->rt_moved = true;
	qcow2_rt_dirty(q, 0);
	qcow2_rt_dirty(q, q->rt_size - 1);
	return qcow2_rc_place(q, p, m, k);
}

/* Appends n clusters at the end of the file, after the refcount blocks
 * their ranges lack (growing the refcount table first if it cannot point
 * at them). The run's first cluster in *start. */
static int qcow2_rc_append(struct qcow2 *q, struct qcow2_op *op, uint64_t n,
			   void (*resume)(struct qcow2_op *op), uint64_t *start)
	REQUIRES(&q->lock)
{
	uint64_t p, m;
	int ret;

	for (;;) {
		p = q->host_clusters;
		m = qcow2_rc_missing(q, p, n);
		if ((p + m + n - 1) >> q->rb_bits < q->rt_size)
			break;
		ret = qcow2_rt_grow(q, op, q->rt_size * 2, resume);
		if (ret)
			return ret;
	}
	ret = qcow2_rc_resident(q, op, p, m + n, resume);
	if (!ret)
		ret = qcow2_rc_place(q, p, m, n);
	if (!ret)
		*start = p + m;
	return ret;
}

/* qcow2_rc_scan found no run before the end of the file. */
#define QCOW2_RC_NONE 2

/* The first run of n free clusters from the cursor, among clusters whose
 * refcount blocks exist: 0 with the run in *start, QCOW2_RC_NONE when
 * there is none before the end of the file (then the caller appends),
 * QCOW2_WAIT or -errno. A search that waits for a block goes on where it
 * was when it resumes, so one that walks more blocks than the cache holds
 * still ends. */
static int qcow2_rc_scan(struct qcow2 *q, struct qcow2_op *op, uint64_t n,
			 void (*resume)(struct qcow2_op *op), uint64_t *start)
	REQUIRES(&q->lock)
{
	uint64_t c = q->alloc_next > op->scan_from ? q->alloc_next : op->scan_from;
	uint64_t ri, cur = UINT64_MAX;
	struct qcow2_table *t = NULL;
	int ret;

	for (*start = c; c - *start < n; c++) {
		ri = c >> q->rb_bits;
		if (ri >= q->rt_size || !q->rt[ri]) {
			if (c >= q->host_clusters)
				return QCOW2_RC_NONE;
			c = ((ri + 1) << q->rb_bits) - 1;	/* no block: skip its range */
			*start = c + 1;
			continue;
		}
		if (ri != cur) {
			ret = qcow2_cache_get(q, &q->rbc, q->rt[ri], op, resume, &t);
			if (ret) {
				op->scan_from = *start;
				return ret;
			}
			cur = ri;
		}
		if (qcow2_rc_get(q, t, c))
			*start = c + 1;
	}
	return 0;
}

int qcow2_refcount_alloc(struct qcow2 *q, struct qcow2_op *op, uint64_t n,
			 void (*resume)(struct qcow2_op *op), uint64_t *host)
{
	uint64_t start, ri;
	struct qcow2_table *t;
	int ret = qcow2_rc_scan(q, op, n, resume, &start);

	if (ret == QCOW2_RC_NONE)
		ret = qcow2_rc_append(q, op, n, resume, &start);
	else if (!ret) {
		/* Loading the run's second block may have pushed out its first. */
		for (ri = start >> q->rb_bits; !ret && ri <= (start + n - 1) >> q->rb_bits; ri++)
			ret = qcow2_cache_get(q, &q->rbc, q->rt[ri], op, resume, &t);
		if (ret == QCOW2_WAIT)
			op->scan_from = start;
		if (!ret)
			ret = qcow2_rc_mark(q, start, n);
	}
	if (ret)
		return ret;
	op->scan_from = 0;
	q->alloc_next = start + n;
	*host = start << q->cluster_bits;
	return 0;
}

/* ---- releases ---- */

static int qcow2_free_push(struct qcow2 *q, uint64_t cluster)
	REQUIRES(&q->lock)
{
	struct qcow2_free *f = q->frees;

	if (q->nfrees == q->frees_cap) {
		f = realloc(q->frees, (q->frees_cap ? q->frees_cap * 2 : 64) * sizeof(*f));
		if (!f)
			return -ENOMEM;
		q->frees = f;
		q->frees_cap = q->frees_cap ? q->frees_cap * 2 : 64;
	}
	f[q->nfrees++] = (struct qcow2_free){ .cluster = cluster, .seq = q->seq,
					      .gen = q->wb_snaps + 1 };
	return 0;
}

int qcow2_refcount_release_range(struct qcow2 *q, uint64_t host, uint64_t n)
{
	uint64_t c;
	int ret = 0;

	for (c = host >> q->cluster_bits; !ret && n--; c++)
		ret = qcow2_free_push(q, c);
	return ret;
}

int qcow2_refcount_release(struct qcow2 *q, const struct qcow2_map *m)
{
	uint64_t first, last;

	if (m->kind == QCOW2_CDATA) {
		first = m->host >> q->cluster_bits;
		last = (m->host + m->clen - 1) >> q->cluster_bits;
		return qcow2_refcount_release_range(q, first << q->cluster_bits, last - first + 1);
	}
	if ((m->kind == QCOW2_DATA || m->kind == QCOW2_ZEROES) && m->host)
		return qcow2_free_push(q, m->host >> q->cluster_bits);
	return 0;
}

int qcow2_refcount_apply(struct qcow2 *q, struct qcow2_op *op, void (*resume)(struct qcow2_op *op))
{
	uint64_t oldest = q->active ? q->active->seq : q->seq + 1, rc;
	struct qcow2_table *t;
	size_t i = 0;
	int ret;

	while (i < q->nfrees) {
		struct qcow2_free *f = &q->frees[i];

		if (f->gen > q->wb_done || f->seq >= oldest) {
			i++;
			continue;
		}
		ret = qcow2_rc_block(q, op, f->cluster, resume, &t);
		if (ret)
			return ret;
		rc = t ? qcow2_rc_get(q, t, f->cluster) : 0;
		if (!rc)
			q->broken = qcow2_corrupt(q, "releasing a cluster whose refcount is 0",
						  f->cluster << q->cluster_bits);
		else
			qcow2_rc_set(q, t, f->cluster, rc - 1);
		if (rc == 1 && f->cluster < q->alloc_next)
			q->alloc_next = f->cluster;
		*f = q->frees[--q->nfrees];
	}
	return 0;
}
