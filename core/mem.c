/*
 * Guest RAM map (see mem.h). Threads: any thread translates inside an RCU
 * read section; a snapshot is never modified after publication.
 */
#include "core/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/util.h"
#include "rcu/rcu.h"

#define MEM_MAX_REGIONS 2

struct mem_snapshot {
	struct rcu_head rcu;
	unsigned n;
	struct mem_region regions[MEM_MAX_REGIONS];
};

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

	if (!hva)
		return -ENOMEM;
	s->regions[s->n] = (struct mem_region){ .gpa = gpa, .size = size, .hva = hva, .slot = s->n };
	s->n++;
	return 0;
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
		for (unsigned i = 0; i < s->n; i++)
			munmap(s->regions[i].hva, s->regions[i].size);
		free(s);
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
	for (unsigned i = 0; i < s->n; i++)
		munmap(s->regions[i].hva, s->regions[i].size);
	free(s);
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

void *mem_translate(struct mem_map *m, uint64_t gpa, uint64_t len)
{
	void *p = NULL;

	rcu_read_lock();
	const struct mem_snapshot *s = rcu_dereference(m->snap);

	for (unsigned i = 0; s && i < s->n; i++) {
		const struct mem_region *r = &s->regions[i];

		if (gpa >= r->gpa && gpa - r->gpa <= r->size && len <= r->size - (gpa - r->gpa)) {
			p = r->hva + (gpa - r->gpa);
			break;
		}
	}
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

uint64_t mem_low_size(uint64_t size)
{
	return size < MEM_PCI_HOLE_START ? size : MEM_PCI_HOLE_START;
}
