/*
 * Guest RAM map (see mem.h). Threads: any thread translates inside an RCU
 * read section; a snapshot is never modified after publication, except for
 * its dirty bitmaps, which are atomic words: marks set bits with fetch_or
 * from any thread, mem_dirty_fetch takes them with exchange, so a mark lands
 * in exactly one fetch.
 */
#include "core/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/util.h"
#include "rcu/rcu.h"

#define MEM_MAX_REGIONS 2
#define MEM_WORD_BITS (8 * sizeof(unsigned long))

struct mem_snapshot {
	struct rcu_head rcu;
	unsigned n;
	struct mem_region regions[MEM_MAX_REGIONS];
	_Atomic unsigned long *dirty[MEM_MAX_REGIONS];	/* one bit per page of regions[i] */
};

static size_t mem_dirty_words(const struct mem_region *r)
{
	return (r->size / MEM_DIRTY_PAGE + MEM_WORD_BITS - 1) / MEM_WORD_BITS;
}

static void *mem_map_anon(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Transparent huge pages cut TLB misses for guest RAM; a hint only. */
	madvise(p, size, MADV_HUGEPAGE);
	return p;
}

static int mem_add_region(struct mem_snapshot *s, uint64_t gpa, uint64_t size)
{
	uint8_t *hva = mem_map_anon(size);
	struct mem_region *r = &s->regions[s->n];

	if (!hva)
		return -ENOMEM;
	*r = (struct mem_region){ .gpa = gpa, .size = size, .hva = hva, .slot = s->n };
	s->dirty[s->n] = calloc(mem_dirty_words(r), sizeof(unsigned long));
	if (!s->dirty[s->n]) {
		munmap(hva, size);
		return -ENOMEM;
	}
	s->n++;
	return 0;
}

static void mem_snapshot_free(struct mem_snapshot *s)
{
	for (unsigned i = 0; i < s->n; i++) {
		munmap(s->regions[i].hva, s->regions[i].size);
		free(s->dirty[i]);
	}
	free(s);
}

int mem_init(struct mem_map *m, uint64_t size)
{
	struct mem_snapshot *s;
	uint64_t low = mem_low_size(size);
	int ret;

	if (size == 0 || size % 4096)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	ret = mem_add_region(s, 0, low);
	if (!ret && size > low)
		ret = mem_add_region(s, MEM_4G, size - low);
	if (ret) {
		mem_snapshot_free(s);
		return ret;
	}
	rcu_assign_pointer(m->snap, s);
	return 0;
}

void mem_destroy(struct mem_map *m)
{
	struct mem_snapshot *s = atomic_load_explicit(&m->snap, memory_order_relaxed);

	if (!s)
		return;
	mem_snapshot_free(s);
	atomic_store_explicit(&m->snap, NULL, memory_order_relaxed);
}

int mem_for_each(struct mem_map *m, int (*fn)(const struct mem_region *r, void *arg), void *arg)
{
	int ret = 0;

	rcu_read_lock();
	const struct mem_snapshot *s = rcu_dereference(m->snap);

	for (unsigned i = 0; s && i < s->n && !ret; i++)
		ret = fn(&s->regions[i], arg);
	rcu_read_unlock();
	return ret;
}

/* The index of the region holding [gpa, gpa+len), or -1. */
static int mem_find(const struct mem_snapshot *s, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; s && i < s->n; i++) {
		const struct mem_region *r = &s->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa))
			return (int)i;
	}
	return -1;
}

void *mem_translate(struct mem_map *m, uint64_t gpa, uint64_t len)
{
	void *p = NULL;

	rcu_read_lock();
	const struct mem_snapshot *s = rcu_dereference(m->snap);
	int i = mem_find(s, gpa, len);

	if (i >= 0)
		p = s->regions[i].hva + (gpa - s->regions[i].gpa);
	rcu_read_unlock();
	return p;
}

int mem_write(struct mem_map *m, uint64_t gpa, const void *src, size_t len)
{
	void *dst = mem_translate(m, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int mem_read(struct mem_map *m, uint64_t gpa, void *dst, size_t len)
{
	const void *src = mem_translate(m, gpa, len);

	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

void mem_dirty_log(struct mem_map *m, bool on)
{
	if (on) {
		rcu_read_lock();
		const struct mem_snapshot *s = rcu_dereference(m->snap);

		for (unsigned i = 0; s && i < s->n; i++)
			for (size_t w = 0; w < mem_dirty_words(&s->regions[i]); w++)
				atomic_store_explicit(&s->dirty[i][w], 0, memory_order_relaxed);
		rcu_read_unlock();
	}
	/* seq_cst (a full fence on x86): the flag is visible before the
	 * caller's copy of RAM starts reading. */
	atomic_store(&m->dirty_on, on);
}

/* Sets the bits of pages first..last (inclusive). Release: a fetch that
 * sees a bit (acquire exchange) also sees the device's write before it. */
static void mem_dirty_set(_Atomic unsigned long *bits, uint64_t first, uint64_t last)
{
	for (uint64_t w = first / MEM_WORD_BITS; w <= last / MEM_WORD_BITS; w++) {
		unsigned long mask = ~0UL;

		if (w == first / MEM_WORD_BITS)
			mask &= ~0UL << (first % MEM_WORD_BITS);
		if (w == last / MEM_WORD_BITS)
			mask &= ~0UL >> (MEM_WORD_BITS - 1 - last % MEM_WORD_BITS);
		atomic_fetch_or_explicit(&bits[w], mask, memory_order_release);
	}
}

/* end is exclusive and already clamped, so nothing here overflows. */
void mem_dirty_mark(struct mem_map *m, uint64_t gpa, uint64_t len)
{
	uint64_t end = len > UINT64_MAX - gpa ? UINT64_MAX : gpa + len;

	if (!len || !atomic_load_explicit(&m->dirty_on, memory_order_relaxed))
		return;
	rcu_read_lock();
	const struct mem_snapshot *s = rcu_dereference(m->snap);

	for (unsigned i = 0; s && i < s->n; i++) {
		const struct mem_region *r = &s->regions[i];
		uint64_t lo = gpa > r->gpa ? gpa : r->gpa;
		uint64_t hi = end < r->gpa + r->size ? end : r->gpa + r->size;

		if (lo < hi)
			mem_dirty_set(s->dirty[i], (lo - r->gpa) / MEM_DIRTY_PAGE,
				      (hi - 1 - r->gpa) / MEM_DIRTY_PAGE);
	}
	rcu_read_unlock();
}

long mem_dirty_fetch(struct mem_map *m, uint64_t region_gpa, unsigned long *bits)
{
	long pages = -EINVAL;

	rcu_read_lock();
	const struct mem_snapshot *s = rcu_dereference(m->snap);
	int i = mem_find(s, region_gpa, 1);

	if (i >= 0) {
		for (size_t w = 0; w < mem_dirty_words(&s->regions[i]); w++)
			bits[w] = atomic_exchange_explicit(&s->dirty[i][w], 0, memory_order_acquire);
		pages = (long)(s->regions[i].size / MEM_DIRTY_PAGE);
	}
	rcu_read_unlock();
	return pages;
}

uint64_t mem_low_size(uint64_t size)
{
	return size < MEM_PCI_HOLE_START ? size : MEM_PCI_HOLE_START;
}
