/*
 * Unit test of core/bus.c: registration rules (empty, wrapping, overlapping,
 * adjacent ranges, unknown devices), dispatch among many devices, and an RCU
 * stress where two reader threads dispatch reads while a writer thread
 * registers and unregisters devices, retiring each one with call_rcu, which
 * poisons it before freeing it. A reader that reaches a retired device sees
 * the poison (musl), a use-after-free (build/asan) or a race (build/tsan).
 *
 * Threads: the main thread runs every check and joins the helpers; helpers
 * report through atomics only. The stress runs for at most STRESS_NS.
 * Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "core/bus.h"
#include "core/util.h"
#include "rcu/rcu.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEV_MAGIC 0x6275736465764d47ULL
#define DEV_POISON 0xdeadbeefdeadbeefULL

struct tdev {
	struct bus_dev bus;
	uint64_t magic;		/* DEV_MAGIC while registered or in a grace period */
	uint64_t base, len;	/* of its (first) range */
	unsigned id;
	_Atomic unsigned reads, writes;
	uint64_t last_offset;	/* single-threaded tests only */
	unsigned last_len;
	uint8_t last_data[8];
	struct rcu_head rcu;
};

static _Atomic unsigned long test_bad_handler;	/* stress: handler saw a bad device */

static void tdev_read(struct bus_dev *dev, uint64_t offset, void *data, unsigned len)
{
	struct tdev *d = container_of(dev, struct tdev, bus);

	atomic_fetch_add_explicit(&d->reads, 1, memory_order_relaxed);
	d->last_offset = offset;
	d->last_len = len;
	memset(data, (int)(d->id & 0xff), len);
}

static void tdev_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
	struct tdev *d = container_of(dev, struct tdev, bus);

	atomic_fetch_add_explicit(&d->writes, 1, memory_order_relaxed);
	d->last_offset = offset;
	d->last_len = len;
	memcpy(d->last_data, data, len);
}

static const struct bus_dev_ops tdev_ops = { .read = tdev_read, .write = tdev_write };

static void tdev_init(struct tdev *d, unsigned id, uint64_t base, uint64_t len)
{
	*d = (struct tdev){ .bus = { .ops = &tdev_ops, .name = "tdev" }, .magic = DEV_MAGIC,
			    .base = base, .len = len, .id = id };
}

static void test_register_rules(void)
{
	struct bus bus;
	struct tdev a, b, c, d, x;

	bus_init(&bus, "mmio");
	tdev_init(&a, 1, 0x1000, 0x100);
	tdev_init(&b, 2, 0xf00, 0x100);
	tdev_init(&c, 3, 0x1100, 0x100);
	tdev_init(&d, 4, 0, 0);
	tdev_init(&x, 5, 0, 0);
	CHECK_I(bus_unregister(&bus, &a.bus), -ENOENT);
	CHECK_I(bus_register(&bus, 0x1000, 0, &a.bus), -EINVAL);
	CHECK_I(bus_register(&bus, ~0ULL - 0xf, 0x20, &a.bus), -EINVAL);
	CHECK_I(bus_register(&bus, 0x10, ~0ULL, &a.bus), -EINVAL);
	CHECK_I(bus_register(&bus, ~0ULL, ~0ULL, &a.bus), -EINVAL);
	CHECK_I(bus_unregister(&bus, &a.bus), -ENOENT);

	CHECK_I(bus_register(&bus, 0x1000, 0x100, &a.bus), 0);
	CHECK_I(bus_register(&bus, 0x1000, 0x100, &d.bus), -EEXIST);	/* same */
	CHECK_I(bus_register(&bus, 0xff0, 0x11, &d.bus), -EEXIST);	/* last byte below */
	CHECK_I(bus_register(&bus, 0x10ff, 0x10, &d.bus), -EEXIST);	/* first byte above */
	CHECK_I(bus_register(&bus, 0x1010, 0x10, &d.bus), -EEXIST);	/* inside */
	CHECK_I(bus_register(&bus, 0, 0x2000, &d.bus), -EEXIST);	/* around */
	CHECK_I(bus_register(&bus, 0x10ff, 1, &d.bus), -EEXIST);
	CHECK_I(bus_register(&bus, 0, ~0ULL, &d.bus), -EEXIST);
	CHECK_I(bus_register(&bus, 0xf00, 0x100, &b.bus), 0);		/* adjacent below */
	CHECK_I(bus_register(&bus, 0x1100, 0x100, &c.bus), 0);		/* adjacent above */
	CHECK_I(bus_register(&bus, 0xeff, 1, &d.bus), 0);
	CHECK_I(bus_register(&bus, 0x1200, 1, &d.bus), 0);		/* d: two ranges */
	CHECK_I(bus_unregister(&bus, &d.bus), 0);			/* removes both */
	CHECK_I(bus_unregister(&bus, &d.bus), -ENOENT);
	/* Nothing is left but a, b and c: the rest of the space is free. */
	CHECK_I(bus_register(&bus, 0, 0xf00, &x.bus), 0);
	CHECK_I(bus_register(&bus, 0x1200, ~0ULL - 0x1200, &x.bus), 0);
	CHECK_I(bus_unregister(&bus, &x.bus), 0);
	CHECK_I(bus_register(&bus, 0xeff, 1, &d.bus), 0);
	CHECK_I(bus_register(&bus, 0x1200, 1, &d.bus), 0);
	CHECK_I(bus_unregister(&bus, &a.bus), 0);
	CHECK_I(bus_unregister(&bus, &a.bus), -ENOENT);
	CHECK_I(bus_register(&bus, 0x1000, 0x100, &a.bus), 0);		/* the gap is free again */
	CHECK_I(bus_unregister(&bus, &b.bus), 0);
	CHECK_I(bus_unregister(&bus, &c.bus), 0);
	CHECK_I(bus_unregister(&bus, &d.bus), 0);
	CHECK_I(bus_unregister(&bus, &a.bus), 0);
	CHECK_I(bus_unregister(&bus, &a.bus), -ENOENT);		/* empty table */
	rcu_barrier();
	bus_destroy(&bus);
}

#define N_DEVS 64
#define DEV_BASE(i) (0x10000ULL + (i) * 0x100ULL)
#define DEV_LEN(i) (0x10ULL + (i))

static struct tdev test_devs[N_DEVS];

/* Reads and writes at addr must reach dev at offset, with len intact. */
static void check_hit(struct bus *bus, uint64_t addr, struct tdev *dev, unsigned len)
{
	uint8_t data[9], want[9];
	unsigned reads = atomic_load(&dev->reads);

	memset(data, 0x5a, sizeof(data));
	CHECK(bus_read(bus, addr, data, len), "read %#llx unhandled", (unsigned long long)addr);
	CHECK(atomic_load(&dev->reads) == reads + 1, "read %#llx: device %u not called",
	      (unsigned long long)addr, dev->id);
	CHECK(dev->last_offset == addr - dev->base && dev->last_len == len,
	      "read %#llx: device %u got offset %#llx len %u", (unsigned long long)addr, dev->id,
	      (unsigned long long)dev->last_offset, dev->last_len);
	memset(want, (int)dev->id, len);
	want[len] = 0x5a;
	CHECK(!memcmp(data, want, len + 1), "read %#llx: data", (unsigned long long)addr);

	for (unsigned i = 0; i < len; i++)
		data[i] = (uint8_t)(addr + i);
	CHECK(bus_write(bus, addr, data, len), "write %#llx unhandled", (unsigned long long)addr);
	CHECK(dev->last_offset == addr - dev->base && dev->last_len == len &&
	      !memcmp(dev->last_data, data, len), "write %#llx: device %u got offset %#llx len %u",
	      (unsigned long long)addr, dev->id, (unsigned long long)dev->last_offset, dev->last_len);
}

static void check_miss(struct bus *bus, uint64_t addr, unsigned len)
{
	uint8_t data[9], want[9];

	memset(data, 0x5a, sizeof(data));
	memset(want, 0xff, len);
	want[len] = 0x5a;
	CHECK(!bus_read(bus, addr, data, len), "read %#llx handled", (unsigned long long)addr);
	CHECK(!memcmp(data, want, len + 1), "unhandled read %#llx of %u: not all ones",
	      (unsigned long long)addr, len);
	CHECK(!bus_write(bus, addr, data, len), "write %#llx handled", (unsigned long long)addr);
}

static unsigned total_calls(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < N_DEVS; i++)
		n += atomic_load(&test_devs[i].reads) + atomic_load(&test_devs[i].writes);
	return n;
}

static void test_dispatch(void)
{
	static const unsigned lens[] = { 1, 2, 4, 8 };
	struct bus bus;
	unsigned order[N_DEVS], calls;

	bus_init(&bus, "pio");
	check_miss(&bus, 0, 4);		/* no table yet */
	for (unsigned i = 0; i < N_DEVS; i++)
		order[i] = i;
	for (unsigned i = N_DEVS - 1; i > 0; i--) {	/* registration order must not matter */
		unsigned j = (i * 2654435761U) % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (unsigned k = 0; k < N_DEVS; k++) {
		unsigned i = order[k];

		tdev_init(&test_devs[i], i + 1, DEV_BASE(i), DEV_LEN(i));
		CHECK_I(bus_register(&bus, DEV_BASE(i), DEV_LEN(i), &test_devs[i].bus), 0);
	}
	for (unsigned i = 0; i < N_DEVS; i++) {
		struct tdev *d = &test_devs[i];
		unsigned len = lens[i % 4];

		check_hit(&bus, d->base, d, len);
		check_hit(&bus, d->base + 1, d, 1);
		check_hit(&bus, d->base + d->len - len, d, len);
		calls = total_calls();
		/* Straddling the end reaches no device: it would see offset + len
		 * past its range. */
		if (len > 1)
			check_miss(&bus, d->base + d->len - 1, len);
		check_miss(&bus, d->base - 1, len);
		check_miss(&bus, d->base + d->len, len);
		CHECK(total_calls() == calls, "a miss near device %u called a handler", d->id);
	}
	check_miss(&bus, 0, 8);
	check_miss(&bus, DEV_BASE(N_DEVS), 1);
	check_miss(&bus, ~0ULL, 2);

	/* Unregister every other device; the rest still dispatch. */
	for (unsigned i = 0; i < N_DEVS; i += 2)
		CHECK_I(bus_unregister(&bus, &test_devs[i].bus), 0);
	for (unsigned i = 0; i < N_DEVS; i++) {
		struct tdev *d = &test_devs[i];

		if (i % 2)
			check_hit(&bus, d->base + d->len / 2, d, 4);
		else
			check_miss(&bus, d->base + d->len / 2, 4);
	}
	rcu_barrier();
	bus_destroy(&bus);
}

/* ---- RCU stress ---- */

#define STRESS_SLOTS 16		/* churned ranges; even slots start registered */
#define STRESS_STABLE 4		/* ranges that stay registered throughout */
#define STRESS_OPS 100000
#define STRESS_NS (1000 * 1000 * 1000ULL)
#define STRESS_READERS 2
#define SLOT_BASE(s) (0x100000ULL + (s) * 0x1000ULL)
#define SLOT_LEN(s) (0x40ULL + (s) * 8)
#define STABLE_BASE(s) (0x200000ULL + (s) * 0x10ULL)

struct sdev {
	struct bus_dev bus;
	uint64_t magic;
	uint64_t base, len;
	unsigned slot;
	struct rcu_head rcu;
};

static struct bus stress_bus;
static _Atomic int stress_stop;
static _Atomic unsigned long stress_reads, stress_hits, stress_freed, stress_bad_read;

/* data holds the address read; the handler checks it matches this device. */
static void sdev_read(struct bus_dev *dev, uint64_t offset, void *data, unsigned len)
{
	struct sdev *d = container_of(dev, struct sdev, bus);
	uint64_t addr;

	memcpy(&addr, data, sizeof(addr));
	if (d->magic != DEV_MAGIC || len != 8 || offset >= d->len || d->base + offset != addr)
		atomic_fetch_add_explicit(&test_bad_handler, 1, memory_order_relaxed);
	addr = d->slot;
	memcpy(data, &addr, sizeof(addr));
}

static void sdev_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
	atomic_fetch_add_explicit(&test_bad_handler, 1, memory_order_relaxed);
}

static const struct bus_dev_ops sdev_ops = { .read = sdev_read, .write = sdev_write };

static struct sdev *sdev_new(unsigned slot, uint64_t base, uint64_t len)
{
	struct sdev *d = malloc(sizeof(*d));

	if (!d) {
		perror("malloc");
		exit(1);
	}
	*d = (struct sdev){ .bus = { .ops = &sdev_ops, .name = "sdev" }, .magic = DEV_MAGIC,
			    .base = base, .len = len, .slot = slot };
	return d;
}

static void sdev_free_rcu(struct rcu_head *head)
{
	struct sdev *d = container_of(head, struct sdev, rcu);

	d->magic = DEV_POISON;
	d->base = d->len = ~0ULL;
	atomic_fetch_add_explicit(&stress_freed, 1, memory_order_relaxed);
	free(d);
}

static void *stress_reader(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg, i = 0;
	unsigned long reads = 0, hits = 0, bad = 0;

	rcu_register_thread();
	while (!atomic_load_explicit(&stress_stop, memory_order_relaxed)) {
		unsigned s = (seed + i++ * 7) % (STRESS_SLOTS + STRESS_STABLE);
		bool stable = s >= STRESS_SLOTS;
		/* 8-byte reads that fit inside the range. */
		uint64_t addr = stable ? STABLE_BASE(s - STRESS_SLOTS) + i % 9
				       : SLOT_BASE(s) + i % (SLOT_LEN(s) - 7), v = addr;

		if (bus_read(&stress_bus, addr, &v, 8)) {
			hits++;
			bad += v != s;
		} else {
			bad += stable || v != ~0ULL;
		}
		reads++;
	}
	rcu_unregister_thread();
	atomic_fetch_add(&stress_reads, reads);
	atomic_fetch_add(&stress_hits, hits);
	atomic_fetch_add(&stress_bad_read, bad);
	return NULL;
}

struct stress_writer {
	struct sdev *slots[STRESS_SLOTS];
	unsigned long ops, allocated, errors;
};

static void *stress_writer(void *arg)
{
	struct stress_writer *w = arg;
	uint64_t end = clock_ns() + STRESS_NS;
	unsigned x = 12345;

	for (unsigned k = 0; k < STRESS_OPS && clock_ns() < end; k++) {
		unsigned s;

		x = x * 1103515245 + 12345;
		s = (x >> 16) % STRESS_SLOTS;
		if (w->slots[s]) {
			w->errors += bus_unregister(&stress_bus, &w->slots[s]->bus) != 0;
			call_rcu(&w->slots[s]->rcu, sdev_free_rcu);
			w->slots[s] = NULL;
		} else {
			struct sdev *d = sdev_new(s, SLOT_BASE(s), SLOT_LEN(s));

			w->allocated++;
			w->errors += bus_register(&stress_bus, d->base, d->len, &d->bus) != 0;
			/* An overlapping range is still refused mid-churn. */
			w->errors += bus_register(&stress_bus, d->base + 1, 1, &d->bus) != -EEXIST;
			w->slots[s] = d;
		}
		w->ops++;
	}
	return NULL;
}

static void test_rcu_stress(void)
{
	static struct stress_writer w;
	struct sdev *stable[STRESS_STABLE];
	pthread_t readers[STRESS_READERS], writer;
	uint64_t start = clock_ns();

	bus_init(&stress_bus, "stress");
	for (unsigned s = 0; s < STRESS_STABLE; s++) {
		stable[s] = sdev_new(STRESS_SLOTS + s, STABLE_BASE(s), 16);
		CHECK_I(bus_register(&stress_bus, STABLE_BASE(s), 16, &stable[s]->bus), 0);
	}
	for (unsigned s = 0; s < STRESS_SLOTS; s += 2) {
		w.slots[s] = sdev_new(s, SLOT_BASE(s), SLOT_LEN(s));
		w.allocated++;
		CHECK_I(bus_register(&stress_bus, SLOT_BASE(s), SLOT_LEN(s), &w.slots[s]->bus), 0);
	}
	for (unsigned i = 0; i < STRESS_READERS; i++)
		CHECK_I(pthread_create(&readers[i], NULL, stress_reader, (void *)(uintptr_t)(i * 5 + 1)), 0);
	CHECK_I(pthread_create(&writer, NULL, stress_writer, &w), 0);
	pthread_join(writer, NULL);
	atomic_store(&stress_stop, 1);
	for (unsigned i = 0; i < STRESS_READERS; i++)
		pthread_join(readers[i], NULL);

	for (unsigned s = 0; s < STRESS_SLOTS; s++) {
		if (!w.slots[s])
			continue;
		CHECK_I(bus_unregister(&stress_bus, &w.slots[s]->bus), 0);
		call_rcu(&w.slots[s]->rcu, sdev_free_rcu);
	}
	for (unsigned s = 0; s < STRESS_STABLE; s++) {
		CHECK_I(bus_unregister(&stress_bus, &stable[s]->bus), 0);
		call_rcu(&stable[s]->rcu, sdev_free_rcu);
	}
	rcu_barrier();
	printf("stress: %lu register/unregister, %lu reads (%lu hits) in %llu ms\n", w.ops,
	       atomic_load(&stress_reads), atomic_load(&stress_hits),
	       (unsigned long long)((clock_ns() - start) / 1000000));
	CHECK(w.ops >= 1000, "only %lu writer operations", w.ops);
	CHECK(atomic_load(&stress_reads) >= 1000, "only %lu reads", atomic_load(&stress_reads));
	CHECK_I(w.errors, 0);
	CHECK_I(atomic_load(&test_bad_handler), 0);
	CHECK_I(atomic_load(&stress_bad_read), 0);
	CHECK_I(atomic_load(&stress_freed), w.allocated + STRESS_STABLE);
	bus_destroy(&stress_bus);
}

int main(void)
{
	rcu_register_thread();
	test_register_rules();
	test_dispatch();
	test_rcu_stress();
	rcu_unregister_thread();
	if (test_failures) {
		fprintf(stderr, "test_bus: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_bus: all checks passed\n");
	return 0;
}
