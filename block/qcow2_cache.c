/*
 * qcow2 table cache: cluster-sized metadata tables (L2 tables, refcount
 * blocks) kept in memory as they are on disk, keyed by host offset in a
 * chained hash, evicted by a CLOCK sweep. Model: QEMU's qcow2-cache
 * (refcounted entries, dirty tables written back in dependency order by
 * the flush), but a miss never blocks: the request that misses starts the
 * read on its own loop and waits on the table like everyone who comes
 * after it.
 *
 * Threads: every function runs under qcow2.lock, from any request's
 * thread. A table's data is written by the kernel only while the table is
 * LOADING, and read or changed by anyone only once it is READY (the
 * loader's completion publishes it under the lock). The load's loop_io
 * belongs to the loader's loop until its completion has run.
 *
 * Eviction skips tables that are loading, dirty, being written back or
 * pinned by a request that waits to use them; when none is left the cache
 * grows past its limit, and qcow2_cache_shrink gives the memory back
 * later.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/qcow2.h"

#define QCOW2_TABLE_ALIGN 4096U

static unsigned qcow2_cache_bucket(const struct qcow2_cache *c, uint64_t off)
{
	return (unsigned)(((off >> c->bits) * 0x9e3779b97f4a7c15ULL) >> 40) & c->hmask;
}

int qcow2_cache_init(struct qcow2_cache *c, unsigned cap, unsigned cluster_bits, const char *what)
{
	*c = (struct qcow2_cache){ .cap = cap, .bits = cluster_bits, .what = what, .hmask = 63 };
	c->hash = calloc(c->hmask + 1, sizeof(*c->hash));
	return c->hash ? 0 : -ENOMEM;
}

static void qcow2_table_free(struct qcow2_table *t)
{
	free(t->data);
	free(t);
}

void qcow2_cache_destroy(struct qcow2_cache *c)
{
	unsigned i;

	for (i = 0; i < c->n; i++)
		qcow2_table_free(c->t[i]);
	free(c->t);
	free(c->hash);
	*c = (struct qcow2_cache){ .n = 0 };
}

static struct qcow2_table *qcow2_cache_find(const struct qcow2_cache *c, uint64_t off)
{
	struct qcow2_table *t = c->hash[qcow2_cache_bucket(c, off)];

	while (t && t->off != off)
		t = t->hnext;
	return t;
}

static void qcow2_cache_unhash(struct qcow2_cache *c, struct qcow2_table *t)
{
	struct qcow2_table **pp = &c->hash[qcow2_cache_bucket(c, t->off)];

	while (*pp != t)
		pp = &(*pp)->hnext;
	*pp = t->hnext;
	t->state = QCOW2_T_FREE;
}

static void qcow2_cache_hash(struct qcow2_cache *c, struct qcow2_table *t, uint64_t off)
{
	unsigned b = qcow2_cache_bucket(c, off);

	t->off = off;
	t->hnext = c->hash[b];
	c->hash[b] = t;
}

/* Doubles the buckets once they are fewer than the tables. */
static int qcow2_cache_rehash(struct qcow2_cache *c)
{
	unsigned size = (c->hmask + 1) * 2, i;
	struct qcow2_table **h;

	if (c->n < c->hmask + 1)
		return 0;
	h = calloc(size, sizeof(*h));
	if (!h)
		return -ENOMEM;
	free(c->hash);
	c->hash = h;
	c->hmask = size - 1;
	for (i = 0; i < c->n; i++) {
		if (c->t[i]->state != QCOW2_T_FREE)
			qcow2_cache_hash(c, c->t[i], c->t[i]->off);
	}
	return 0;
}

static struct qcow2_table *qcow2_cache_grow(struct qcow2 *q, struct qcow2_cache *c)
	REQUIRES(&q->lock)
{
	struct qcow2_table *t, **a = c->t;

	if (c->n == c->alloc) {
		a = realloc(c->t, (c->alloc ? c->alloc * 2 : 16) * sizeof(*a));
		if (!a)
			return NULL;
		c->t = a;
		c->alloc = c->alloc ? c->alloc * 2 : 16;
	}
	t = calloc(1, sizeof(*t));
	if (!t || posix_memalign((void **)&t->data, QCOW2_TABLE_ALIGN, q->cluster_size)) {
		free(t);
		return NULL;
	}
	t->q = q;
	t->state = QCOW2_T_FREE;
	c->t[c->n++] = t;
	if (qcow2_cache_rehash(c)) {
		c->n--;
		qcow2_table_free(t);
		return NULL;
	}
	return t;
}

static bool qcow2_table_idle(const struct qcow2_table *t)
{
	return t->state == QCOW2_T_FREE ||
	       (t->state == QCOW2_T_READY && !t->dirty && !t->writing && !t->pins);
}

/* A table to (re)use: a new one while under the limit, else the first
 * idle one the CLOCK hand finds without its reference bit, else a new one
 * past the limit. Unhashed, FREE. */
static struct qcow2_table *qcow2_cache_slot(struct qcow2 *q, struct qcow2_cache *c)
	REQUIRES(&q->lock)
{
	unsigned i;

	if (c->n < c->cap)
		return qcow2_cache_grow(q, c);
	for (i = 0; i < 2 * c->n; i++) {
		struct qcow2_table *t = c->t[c->hand];

		c->hand = (c->hand + 1) % c->n;
		if (!qcow2_table_idle(t))
			continue;
		if (t->ref) {
			t->ref = false;
			continue;
		}
		if (t->state != QCOW2_T_FREE)
			qcow2_cache_unhash(c, t);
		return t;
	}
	return qcow2_cache_grow(q, c);
}

static void qcow2_cache_load_done(struct loop_io *io, int res)
{
	struct qcow2_table *t = container_of(io, struct qcow2_table, io);
	struct qcow2 *q = t->q;

	mutex_lock(&q->lock);
	if (res >= 0 && (uint64_t)res == q->cluster_size) {
		t->state = QCOW2_T_READY;
		qcow2_wake_all(&t->waiters, 0);
	} else {
		if (res >= 0)
			res = qcow2_corrupt(q, t->cache->what, t->off);
		qcow2_cache_unhash(t->cache, t);
		qcow2_wake_all(&t->waiters, res);
	}
	mutex_unlock(&q->lock);
}

int qcow2_cache_get(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, struct qcow2_op *op,
		    void (*resume)(struct qcow2_op *op), struct qcow2_table **out)
{
	struct qcow2_table *t = qcow2_cache_find(c, off);
	int ret;

	if (t && t->state == QCOW2_T_READY) {
		t->ref = true;
		*out = t;
		return 0;
	}
	if (!t) {
		t = qcow2_cache_slot(q, c);
		if (!t)
			return -ENOMEM;
		t->cache = c;
		t->iov = (struct iovec){ t->data, q->cluster_size };
		ret = loop_io_readv(op->loop, &t->io, q->fd, &t->iov, 1, off, qcow2_cache_load_done);
		if (ret)
			return ret;
		qcow2_cache_hash(c, t, off);
		t->state = QCOW2_T_LOADING;
	}
	qcow2_wait(op, &t->waiters, resume);
	qcow2_pin(op, t);
	return QCOW2_WAIT;
}

struct qcow2_table *qcow2_cache_ready(struct qcow2_cache *c, uint64_t off)
{
	struct qcow2_table *t = qcow2_cache_find(c, off);

	if (!t || t->state != QCOW2_T_READY)
		return NULL;
	t->ref = true;
	return t;
}

int qcow2_cache_new(struct qcow2 *q, struct qcow2_cache *c, uint64_t off, struct qcow2_table **out)
{
	struct qcow2_table *t;

	if (qcow2_cache_find(c, off))
		return qcow2_corrupt(q, "a new table's cluster is cached already", off);
	t = qcow2_cache_slot(q, c);
	if (!t)
		return -ENOMEM;
	t->cache = c;
	memset(t->data, 0, q->cluster_size);
	qcow2_cache_hash(c, t, off);
	t->state = QCOW2_T_READY;
	t->dirty = true;
	t->ref = true;
	*out = t;
	return 0;
}

void qcow2_cache_shrink(struct qcow2 *q, struct qcow2_cache *c)
{
	unsigned i = 0;

	while (c->n > c->cap && i < c->n) {
		struct qcow2_table *t = c->t[i];

		if (!qcow2_table_idle(t)) {
			i++;
			continue;
		}
		if (t->state != QCOW2_T_FREE)
			qcow2_cache_unhash(c, t);
		qcow2_table_free(t);
		c->t[i] = c->t[--c->n];
		c->hand = 0;
	}
}
