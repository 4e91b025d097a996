/*
 * qcow2 lookups and reads. A guest offset maps through the in-memory L1
 * table and a cached L2 table to one of: unallocated (the backing file,
 * or zeros past its end or without one), a v3 zero cluster, host data
 * clusters, or one compressed cluster. A read walks its range in runs of
 * one mapping (contiguous host clusters are one transfer) and ends after
 * the last; a run that waits for an L2 table to load resumes from the
 * lookup.
 *
 * Threads: each read runs in the owner thread of its loop; lookups take
 * qcow2.lock for the L1/L2 access only, then transfer without it. L2
 * entries are checked on every use (reserved bits, alignment, inside the
 * image), since the image is not trusted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/inflate.h"
#include "block/qcow2.h"

#define QCOW2_CSECTOR 512ULL

static void qcow2_read_step(struct qcow2_op *op);

/* A compressed cluster descriptor. */
static int qcow2_read_centry(struct qcow2 *q, uint64_t e, struct qcow2_map *m)
	REQUIRES(&q->lock)
{
	unsigned x = 62 - (q->cluster_bits - 8);
	uint64_t off = e & ((1ULL << x) - 1);
	uint64_t sectors = ((e & ~QCOW2_COPIED & ~QCOW2_COMPRESSED) >> x) + 1;

	if ((off >> 56) || off < q->cluster_size || off >= q->host_clusters << q->cluster_bits)
		return qcow2_corrupt(q, "compressed cluster descriptor points outside the image", off);
	m->kind = QCOW2_CDATA;
	m->host = off;
	m->clen = sectors * QCOW2_CSECTOR - (off % QCOW2_CSECTOR);
	return 0;
}

int qcow2_read_entry(struct qcow2 *q, uint64_t e, struct qcow2_map *m)
{
	uint64_t off = e & QCOW2_OFFSET_MASK;

	*m = (struct qcow2_map){ .kind = QCOW2_UNALLOC };
	if (e & QCOW2_COMPRESSED)
		return qcow2_read_centry(q, e, m);
	if ((e & QCOW2_L2_RESERVED) || ((e & QCOW2_ZERO) && q->version < 3))
		return qcow2_corrupt(q, "L2 entry with reserved bits set", off);
	if (e & QCOW2_ZERO) {
		m->kind = QCOW2_ZEROES;
		m->host = off;
		return 0;
	}
	if (!off)
		return (e & QCOW2_COPIED) ? qcow2_corrupt(q, "L2 entry with the copied flag and no cluster", 0) : 0;
	if (off % q->cluster_size || off >= q->host_clusters << q->cluster_bits)
		return qcow2_corrupt(q, "L2 entry points outside the image", off);
	m->kind = QCOW2_DATA;
	m->host = off;
	m->copied = e & QCOW2_COPIED;
	return 0;
}

/* Whether guest cluster i clusters after the first continues run m. */
static bool qcow2_read_same(const struct qcow2_map *m, const struct qcow2_map *n, uint64_t i,
			    uint64_t cs)
{
	if (n->kind != m->kind || m->kind == QCOW2_CDATA)
		return false;
	return m->kind != QCOW2_DATA || (n->copied == m->copied && n->host == m->host + i * cs);
}

int qcow2_read_map(struct qcow2 *q, struct qcow2_op *op, uint64_t pos, uint64_t max,
		   void (*resume)(struct qcow2_op *op), struct qcow2_map *m)
{
	uint64_t cs = q->cluster_size, gc = pos >> q->cluster_bits, i, n;
	uint64_t l1i = gc >> q->l2_bits, l2i = gc & ((1ULL << q->l2_bits) - 1);
	uint64_t room = ((l1i + 1) << (q->l2_bits + q->cluster_bits)) - pos;
	uint64_t l2 = l1i < q->l1_size ? q->l1[l1i] & QCOW2_OFFSET_MASK : 0;
	struct qcow2_table *t;
	struct qcow2_map next;
	int ret;

	max = max < room ? max : room;
	*m = (struct qcow2_map){ .kind = QCOW2_UNALLOC, .len = max };
	if (!l2)
		return 0;
	ret = qcow2_cache_get(q, &q->l2c, l2, op, resume, &t);
	if (!ret)
		ret = qcow2_read_entry(q, qcow2_be64(t->data + l2i * 8), m);
	if (ret)
		return ret;
	n = cs - (pos & (cs - 1));
	for (i = 1; n < max && l2i + i < (1ULL << q->l2_bits); i++, n += cs) {
		if (qcow2_read_entry(q, qcow2_be64(t->data + (l2i + i) * 8), &next) ||
		    !qcow2_read_same(m, &next, i, cs))
			break;
	}
	if (m->kind == QCOW2_DATA)
		m->host += pos & (cs - 1);
	m->len = n < max ? n : max;
	return 0;
}

/* ---- runs ---- */

static void qcow2_read_resume(struct qcow2_op *op)
{
	if (op->wres)
		qcow2_op_end(op, op->wres);
	else
		qcow2_read_step(op);
}

static void qcow2_read_backing_done(struct block_req *r, int res)
{
	qcow2_op_advance(container_of(r, struct qcow2_op, sub), res);
}

static int qcow2_read_zero(struct qcow2_op *op)
{
	unsigned i;
	int ret = qcow2_op_slice(op, 0, op->pos, op->map.len);

	for (i = 0; !ret && i < op->nvec; i++)
		memset(op->vec[i].iov_base, 0, op->vec[i].iov_len);
	if (!ret)
		op->pos += op->map.len;
	return ret;
}

static int qcow2_read_unalloc(struct qcow2_op *op)
{
	struct qcow2 *q = op->q;
	int ret;

	if (!q->backing || op->pos >= q->backing_size)
		return qcow2_read_zero(op);
	if (op->map.len > q->backing_size - op->pos)
		op->map.len = q->backing_size - op->pos;
	ret = qcow2_op_slice(op, 0, op->pos, op->map.len);
	if (!ret)
		ret = block_readv(q->backing, op->loop, &op->sub, op->vec, op->nvec, op->pos,
				  qcow2_read_backing_done);
	return ret ? ret : QCOW2_WAIT;
}

static void qcow2_read_cdone(struct loop_io *io, int res)
{
	struct qcow2_op *op = container_of(io, struct qcow2_op, io);
	struct qcow2 *q = op->q;
	uint64_t skip = op->pos & (q->cluster_size - 1);
	size_t i, at = 0;

	if (res >= 0 && inflate_raw(op->cbuf, (size_t)res, op->ubuf, q->cluster_size) !=
			(ssize_t)q->cluster_size)
		res = qcow2_corrupt(q, "compressed cluster does not inflate to a cluster", op->map.host);
	if (res >= 0)
		res = qcow2_op_slice(op, 0, op->pos, op->map.len);
	for (i = 0; res >= 0 && i < op->nvec; at += op->vec[i++].iov_len)
		memcpy(op->vec[i].iov_base, op->ubuf + skip + at, op->vec[i].iov_len);
	qcow2_op_advance(op, res < 0 ? res : 0);
}

/* Reads the compressed stream (a short read at the end of the file is
 * fine: the stream ends before it) and inflates it on completion. */
static int qcow2_read_compressed(struct qcow2_op *op)
{
	struct qcow2 *q = op->q;
	uint64_t clen = op->map.clen;
	int ret;

	if (op->cbuf_len < clen) {
		free(op->cbuf);
		op->cbuf = malloc(clen);
		op->cbuf_len = op->cbuf ? clen : 0;
	}
	if (!op->ubuf)
		op->ubuf = malloc(q->cluster_size);
	if (!op->cbuf || !op->ubuf)
		return -ENOMEM;
	op->civ = (struct iovec){ op->cbuf, clen };
	ret = loop_io_readv(op->loop, &op->io, q->fd, &op->civ, 1, op->map.host, qcow2_read_cdone);
	return ret ? ret : QCOW2_WAIT;
}

/* Starts the current run: 0 when it is already done, QCOW2_WAIT when a
 * completion will go on with the request, or -errno. */
static int qcow2_read_run(struct qcow2_op *op)
{
	switch (op->map.kind) {
	case QCOW2_ZEROES:
		return qcow2_read_zero(op);
	case QCOW2_UNALLOC:
		return qcow2_read_unalloc(op);
	case QCOW2_CDATA:
		return qcow2_read_compressed(op);
	case QCOW2_DATA:
		break;
	}
	return qcow2_op_run(op, false);
}

static void qcow2_read_step(struct qcow2_op *op)
{
	struct qcow2 *q = op->q;
	int ret;

	while (op->pos < op->end) {
		mutex_lock(&q->lock);
		qcow2_activate(q, op);
		ret = qcow2_read_map(q, op, op->pos, op->end - op->pos, qcow2_read_resume, &op->map);
		if (ret != QCOW2_WAIT)
			qcow2_unpin_all(op);
		mutex_unlock(&q->lock);
		if (!ret)
			ret = qcow2_read_run(op);
		if (ret == QCOW2_WAIT)
			return;
		if (ret < 0) {
			qcow2_op_end(op, ret);
			return;
		}
	}
	qcow2_op_end(op, 0);
}

void qcow2_read_start(struct qcow2_op *op)
{
	op->step = qcow2_read_step;
	qcow2_read_step(op);
}
