/*
 * Address bus with RCU-published range tables (see bus.h for the rules).
 * Model: Firecracker's BusRange checks, QEMU's RCU-published FlatView.
 *
 * Threads: any vCPU thread reads; writers hold bus->writer_lock. A table is
 * never modified after publication; replaced tables are freed by call_rcu.
 */
#include "core/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "rcu/rcu.h"

struct bus_range {
	uint64_t base;
	uint64_t len;
	struct bus_dev *dev;
};

struct bus_table {
	struct rcu_head rcu;
	unsigned n;
	struct bus_range ranges[];	/* sorted by base, non-overlapping */
};

void bus_init(struct bus *bus, const char *name)
{
	bus->name = name;
	atomic_init(&bus->table, NULL);
	mutex_init(&bus->writer_lock);
}

void bus_destroy(struct bus *bus)
{
	free(atomic_load_explicit(&bus->table, memory_order_relaxed));
	atomic_store_explicit(&bus->table, NULL, memory_order_relaxed);
	mutex_destroy(&bus->writer_lock);
}

static struct bus_table *bus_table_alloc(unsigned n)
{
	struct bus_table *t = malloc(sizeof(*t) + n * sizeof(t->ranges[0]));

	if (t)
		t->n = n;
	return t;
}

static void bus_table_free_rcu(struct rcu_head *head)
{
	free(container_of(head, struct bus_table, rcu));
}

/* Publishes next and retires old; caller holds writer_lock. */
static void bus_publish(struct bus *bus, struct bus_table *old, struct bus_table *next)
	REQUIRES(bus->writer_lock)
{
	rcu_assign_pointer(bus->table, next);
	if (old)
		call_rcu(&old->rcu, bus_table_free_rcu);
}

static bool range_overlaps(const struct bus_range *r, uint64_t base, uint64_t len)
{
	return base < r->base + r->len && r->base < base + len;
}

int bus_register(struct bus *bus, uint64_t base, uint64_t len, struct bus_dev *dev)
{
	struct bus_table *old, *next;
	unsigned i, pos = 0, n;
	int ret = 0;

	if (len == 0 || base + len < base)
		return -EINVAL;
	mutex_lock(&bus->writer_lock);
	old = atomic_load_explicit(&bus->table, memory_order_relaxed);
	n = old ? old->n : 0;
	for (i = 0; i < n; i++) {
		if (range_overlaps(&old->ranges[i], base, len)) {
			ret = -EEXIST;
			goto out;
		}
		if (old->ranges[i].base < base)
			pos = i + 1;
	}
	next = bus_table_alloc(n + 1);
	if (!next) {
		ret = -ENOMEM;
		goto out;
	}
	if (n)
		memcpy(next->ranges, old->ranges, pos * sizeof(next->ranges[0]));
	next->ranges[pos] = (struct bus_range){ .base = base, .len = len, .dev = dev };
	if (n > pos)
		memcpy(&next->ranges[pos + 1], &old->ranges[pos], (n - pos) * sizeof(next->ranges[0]));
	bus_publish(bus, old, next);
out:
	mutex_unlock(&bus->writer_lock);
	return ret;
}

int bus_unregister(struct bus *bus, struct bus_dev *dev)
{
	struct bus_table *old, *next;
	unsigned i, kept = 0;
	int ret = 0;

	mutex_lock(&bus->writer_lock);
	old = atomic_load_explicit(&bus->table, memory_order_relaxed);
	next = old ? bus_table_alloc(old->n) : NULL;
	if (!next) {
		ret = old ? -ENOMEM : -ENOENT;
		goto out;
	}
	for (i = 0; i < old->n; i++)
		if (old->ranges[i].dev != dev)
			next->ranges[kept++] = old->ranges[i];
	if (kept == old->n) {
		free(next);
		ret = -ENOENT;
		goto out;
	}
	next->n = kept;
	bus_publish(bus, old, next);
out:
	mutex_unlock(&bus->writer_lock);
	return ret;
}

/* The range holding [addr, addr+len) entirely, or NULL: an access that
 * straddles a range's end reaches no device, so handlers never see
 * offset + len beyond what they registered. */
static const struct bus_range *bus_find(const struct bus_table *t, uint64_t addr, unsigned len)
{
	unsigned lo = 0, hi = t ? t->n : 0;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &t->ranges[mid];

		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return len <= r->len - (addr - r->base) ? r : NULL;
	}
	return NULL;
}

bool bus_read(struct bus *bus, uint64_t addr, void *data, unsigned len)
{
	const struct bus_range *r;

	rcu_read_lock();
	r = bus_find(rcu_dereference(bus->table), addr, len);
	if (r)
		r->dev->ops->read(r->dev, addr - r->base, data, len);
	rcu_read_unlock();
	if (!r)
		memset(data, 0xff, len);
	return r != NULL;
}

bool bus_write(struct bus *bus, uint64_t addr, const void *data, unsigned len)
{
	const struct bus_range *r;

	rcu_read_lock();
	r = bus_find(rcu_dereference(bus->table), addr, len);
	if (r)
		r->dev->ops->write(r->dev, addr - r->base, data, len);
	rcu_read_unlock();
	return r != NULL;
}
