/*
 * Unit test of dev/virtq.c. The test plays the driver on real guest memory
 * (a 2 MiB mem_map): it writes descriptors and the avail ring, and reads
 * the used ring back. Covered: plain, out+in and indirect chains (also an
 * unaligned table), zero-length descriptors, the 16-bit indices wrapping,
 * EVENT_IDX and NO_INTERRUPT interrupt suppression, kick suppression and
 * its race, every hostile ring from virtq.h with its exact error, and a
 * driver thread rewriting a descriptor while it is popped (TOCTOU).
 * Hostile rings sit at the very end of RAM, and PROT_NONE guard pages
 * around the RAM mapping make any access outside it crash the test.
 * Main thread RCU-registered; the TOCTOU writer touches only guest RAM.
 * Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "tests/ram_guard.h"
#include "core/mem.h"
#include "core/util.h"
#include "dev/virtq.h"
#include "rcu/rcu.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RAM (2 * MiB)
#define BUF 0x10000ULL		/* driver buffers */
#define TBL 0x40000ULL		/* indirect tables */
#define MAX_SEGS 8

static struct mem_map mem;

/* One queue as the driver sees it, and the device's virtq. */
struct drv {
	struct virtq_config cfg;
	uint16_t avail_idx;
	struct virtq q;
	struct iovec iov[MAX_SEGS];
	uint64_t gpa[MAX_SEGS];
	struct virtq_elem e;
};

static uint8_t *host(uint64_t gpa, uint64_t len)
{
	uint8_t *p = mem_translate(&mem, gpa, len);

	if (!p) {
		fprintf(stderr, "test bug: %#llx+%llu not in RAM\n", (unsigned long long)gpa,
			(unsigned long long)len);
		abort();
	}
	return p;
}

static void put16(uint64_t gpa, uint16_t v)
{
	__atomic_store_n((uint16_t *)host(gpa, 2), v, __ATOMIC_RELAXED);
}

static uint16_t get16(uint64_t gpa)
{
	return __atomic_load_n((uint16_t *)host(gpa, 2), __ATOMIC_RELAXED);
}

static uint32_t get32(uint64_t gpa)
{
	return __atomic_load_n((uint32_t *)host(gpa, 4), __ATOMIC_RELAXED);
}

/* Writes descriptor i of the table at gpa `table` (any alignment). */
static void put_desc(uint64_t table, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	uint8_t *p = host(table + 16 * i, 16);

	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

/* Lays the rings out at the start of RAM, or ending at its very last byte. */
static void drv_setup(struct drv *d, uint16_t size, bool at_end, bool event_idx, bool indirect)
{
	uint64_t desc_sz = 16ULL * size, avail_sz = 6 + 2ULL * size, used_sz = 6 + 8ULL * size;
	uint64_t desc = 0x1000, avail = desc + desc_sz, used = ALIGN_UP(avail + avail_sz, 4);

	if (at_end) {
		avail = RAM - avail_sz;
		used = (avail - used_sz) & ~3ULL;
		desc = (used - desc_sz) & ~15ULL;
	}
	memset(host(desc, avail + avail_sz - desc), 0, avail + avail_sz - desc);
	memset(host(used, used_sz), 0, used_sz);
	*d = (struct drv){
		.cfg = { .size = size, .desc = desc, .avail = avail, .used = used,
			 .event_idx = event_idx, .indirect = indirect },
	};
	d->e = (struct virtq_elem){ .max = MAX_SEGS, .iov = d->iov, .gpa = d->gpa };
	CHECK_I(virtq_init(&d->q, &mem, &d->cfg), 0);
}

/* Makes the chain at `head` available. */
static void drv_add(struct drv *d, uint16_t head)
{
	put16(d->cfg.avail + 4 + 2 * (d->avail_idx % d->cfg.size), head);
	d->avail_idx++;
	__atomic_store_n((uint16_t *)host(d->cfg.avail + 2, 2), d->avail_idx, __ATOMIC_RELEASE);
}

static int drv_pop(struct drv *d)
{
	return virtq_pop(&d->q, &d->e);
}

static uint16_t used_idx(const struct drv *d)
{
	return get16(d->cfg.used + 2);
}

static uint16_t avail_event(const struct drv *d)
{
	return get16(d->cfg.used + 4 + 8 * d->cfg.size);
}

static void set_used_event(const struct drv *d, uint16_t v)
{
	put16(d->cfg.avail + 4 + 2 * d->cfg.size, v);
}

/* The used element that the push which made used->idx == after wrote. */
static void check_used(const struct drv *d, uint16_t after, uint32_t id, uint32_t len)
{
	uint64_t elem = d->cfg.used + 4 + 8 * ((uint16_t)(after - 1) % d->cfg.size);

	CHECK_U(used_idx(d), after);
	CHECK_U(get32(elem), id);
	CHECK_U(get32(elem + 4), len);
}

static void check_seg(const struct drv *d, unsigned i, uint64_t gpa, uint32_t len)
{
	CHECK(d->iov[i].iov_base == host(gpa, len), "segment %u at %p, want gpa %#llx", i,
	      d->iov[i].iov_base, (unsigned long long)gpa);
	CHECK_U(d->iov[i].iov_len, len);
	CHECK_U(d->gpa[i], gpa);
}

/* Pops one chain and checks its head and segment counts. */
static void check_pop(struct drv *d, uint16_t head, unsigned n_out, unsigned n_in)
{
	CHECK_I(drv_pop(d), 1);
	CHECK_U(d->e.head, head);
	CHECK_U(d->e.n_out, n_out);
	CHECK_U(d->e.n_in, n_in);
}

static void test_init(void)
{
	static const uint16_t bad_sizes[] = { 0, 3, 96, 1025, 2048, 32768 };
	struct drv d;
	struct virtq q;
	struct virtq_config c;

	for (unsigned i = 0; i < ARRAY_SIZE(bad_sizes); i++) {
		c = (struct virtq_config){ .size = bad_sizes[i], .desc = 0x1000, .avail = 0x10000,
					   .used = 0x20000 };
		CHECK_I(virtq_init(&q, &mem, &c), -EINVAL);
	}
	drv_setup(&d, 1, false, false, false);
	/* A full-size queue whose avail ring (used_event included) ends at
	 * RAM's last byte, then each ring misaligned or moved past RAM. */
	drv_setup(&d, VIRTQ_MAX_SIZE, true, true, true);
	const uint64_t n = VIRTQ_MAX_SIZE, de = d.cfg.desc, av = d.cfg.avail, us = d.cfg.used;
	const struct { uint64_t desc, avail, used; int want; } moved[] = {
		{ de + 8, av, us, -EINVAL },
		{ de, av + 1, us, -EINVAL },
		{ de, av, us + 2, -EINVAL },
		{ de, av + 2, us, -EFAULT },
		{ de, av, RAM - (6 + 8 * n) + 2, -EFAULT },
		{ RAM - 16 * n + 16, av, us, -EFAULT },
		{ MEM_4G, av, us, -EFAULT },
	};

	for (unsigned i = 0; i < ARRAY_SIZE(moved); i++) {
		c = d.cfg;
		c.desc = moved[i].desc;
		c.avail = moved[i].avail;
		c.used = moved[i].used;
		CHECK(virtq_init(&q, &mem, &c) == moved[i].want, "moved ring %u", i);
	}
}

static void test_simple_chains(void)
{
	struct drv d;

	drv_setup(&d, 8, false, false, false);
	CHECK_I(drv_pop(&d), 0);
	CHECK(!virtq_has_avail(&d.q), "empty queue has avail");
	put_desc(d.cfg.desc, 3, BUF, 100, 0, 0);
	drv_add(&d, 3);
	CHECK(virtq_has_avail(&d.q), "no avail after add");
	check_pop(&d, 3, 1, 0);
	check_seg(&d, 0, BUF, 100);
	CHECK_I(drv_pop(&d), 0);
	virtq_push(&d.q, 3, 0);
	check_used(&d, 1, 3, 0);

	/* 5 -> 2 -> 7 -> 0: two readable, then two writable segments. */
	put_desc(d.cfg.desc, 5, BUF, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc(d.cfg.desc, 2, BUF + 0x100, 512, VIRTQ_DESC_F_NEXT, 7);
	put_desc(d.cfg.desc, 7, BUF + 0x1000, 4096, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	put_desc(d.cfg.desc, 0, BUF + 0x3000, 1, VIRTQ_DESC_F_WRITE, 6);
	drv_add(&d, 5);
	check_pop(&d, 5, 2, 2);
	check_seg(&d, 0, BUF, 16);
	check_seg(&d, 1, BUF + 0x100, 512);
	check_seg(&d, 2, BUF + 0x1000, 4096);
	check_seg(&d, 3, BUF + 0x3000, 1);
	virtq_push(&d.q, 5, 4097);
	check_used(&d, 2, 5, 4097);
	CHECK(!virtq_has_avail(&d.q), "avail after everything was popped");
}

/* Zero-length descriptors yield no segment, wherever they point. */
static void test_zero_length(void)
{
	struct drv d;

	drv_setup(&d, 8, true, false, false);
	put_desc(d.cfg.desc, 0, ~0ULL - 4, 0, VIRTQ_DESC_F_NEXT, 1);
	put_desc(d.cfg.desc, 1, RAM - 8, 8, VIRTQ_DESC_F_NEXT, 2);
	put_desc(d.cfg.desc, 2, RAM + 4096, 0, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
	put_desc(d.cfg.desc, 3, BUF, 8, VIRTQ_DESC_F_WRITE, 0);
	drv_add(&d, 0);
	check_pop(&d, 0, 1, 1);
	check_seg(&d, 0, RAM - 8, 8);
	check_seg(&d, 1, BUF, 8);
}

/* A readable descriptor, then an indirect one (WRITE set, to be ignored)
 * whose unaligned table chains 0 -> 2 -> 1. */
static void test_indirect(void)
{
	const uint64_t tbl = TBL + 1;
	struct drv d;

	drv_setup(&d, 8, false, false, true);
	put_desc(d.cfg.desc, 4, BUF, 16, VIRTQ_DESC_F_NEXT, 6);
	put_desc(d.cfg.desc, 6, tbl, 4 * 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_WRITE, 0);
	put_desc(tbl, 0, BUF + 0x100, 32, VIRTQ_DESC_F_NEXT, 2);
	put_desc(tbl, 2, BUF + 0x200, 64, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(tbl, 1, BUF + 0x300, 8, VIRTQ_DESC_F_WRITE, 0);
	put_desc(tbl, 3, RAM, 8, VIRTQ_DESC_F_WRITE, 0);
	drv_add(&d, 4);
	check_pop(&d, 4, 2, 2);
	check_seg(&d, 0, BUF, 16);
	check_seg(&d, 1, BUF + 0x100, 32);
	check_seg(&d, 2, BUF + 0x200, 64);
	check_seg(&d, 3, BUF + 0x300, 8);

	/* A table of exactly `size` entries, all used. */
	drv_setup(&d, 8, false, false, true);
	put_desc(d.cfg.desc, 0, TBL, 8 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	for (unsigned i = 0; i < 8; i++)
		put_desc(TBL, i, BUF + i, 1, i < 7 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	drv_add(&d, 0);
	check_pop(&d, 0, 8, 0);
	check_seg(&d, 7, BUF + 7, 1);
}

/* Pops one chain: top-level descriptor 0 (flags, table at addr/len) whose
 * table holds `n` entries chained in order with `last` flags on the last. */
static int indirect_case(bool negotiated, uint16_t flags, uint64_t addr, uint32_t len,
			 unsigned n, uint16_t last)
{
	struct drv d;

	drv_setup(&d, 8, true, false, negotiated);
	put_desc(d.cfg.desc, 0, addr, len, flags, 1);
	put_desc(d.cfg.desc, 1, BUF, 8, 0, 0);
	for (unsigned i = 0; i < n; i++)
		put_desc(TBL, i, BUF + 0x100 * i, 8, i + 1 < n ? VIRTQ_DESC_F_NEXT : last, i + 1);
	drv_add(&d, 0);
	return drv_pop(&d);
}

static void test_indirect_hostile(void)
{
	const uint16_t ind = VIRTQ_DESC_F_INDIRECT, nxt = VIRTQ_DESC_F_NEXT;

	CHECK_I(indirect_case(true, ind, TBL, 2 * 16, 2, 0), 1);
	CHECK_I(indirect_case(false, ind, TBL, 2 * 16, 2, 0), -EINVAL);
	CHECK_I(indirect_case(true, ind | nxt, TBL, 2 * 16, 2, 0), -EINVAL);
	CHECK_I(indirect_case(true, ind, TBL, 0, 1, 0), -EINVAL);
	CHECK_I(indirect_case(true, ind, TBL, 24, 1, 0), -EINVAL);
	CHECK_I(indirect_case(true, ind, TBL, 9 * 16, 2, 0), -EINVAL);
	CHECK_I(indirect_case(true, ind, RAM - 16, 2 * 16, 0, 0), -EFAULT);
	CHECK_I(indirect_case(true, ind, ~0ULL - 15, 2 * 16, 0, 0), -EFAULT);
	/* Next past the table's end; a nested table; a loop inside the
	 * table; readable after writable inside it. */
	CHECK_I(indirect_case(true, ind, TBL, 2 * 16, 2, nxt), -EINVAL);
	put_desc(TBL + 0x100, 0, BUF, 8, 0, 0);
	put_desc(TBL, 1, TBL + 0x100, 16, ind, 0);
	CHECK_I(indirect_case(true, ind, TBL, 2 * 16, 0, 0), -EINVAL);
	put_desc(TBL, 1, BUF, 8, nxt, 0);
	CHECK_I(indirect_case(true, ind, TBL, 2 * 16, 0, 0), -ELOOP);
	put_desc(TBL, 0, BUF, 8, VIRTQ_DESC_F_WRITE | nxt, 1);
	put_desc(TBL, 1, BUF, 8, 0, 0);
	CHECK_I(indirect_case(true, ind, TBL, 2 * 16, 0, 0), -EINVAL);
}

/* Top-level descriptors count towards the chain bound with the table's. */
static void test_indirect_too_long(void)
{
	struct drv d;

	for (unsigned top = 3; top <= 4; top++) {
		drv_setup(&d, 8, true, false, true);
		for (unsigned i = 0; i < top; i++)
			put_desc(d.cfg.desc, i, BUF, 1, VIRTQ_DESC_F_NEXT, i + 1);
		put_desc(d.cfg.desc, top, TBL, 5 * 16, VIRTQ_DESC_F_INDIRECT, 0);
		for (unsigned i = 0; i < 5; i++)
			put_desc(TBL, i, BUF, 1, i < 4 ? VIRTQ_DESC_F_NEXT : 0, i + 1);
		drv_add(&d, 0);
		CHECK_I(drv_pop(&d), top == 3 ? 1 : -ELOOP);
	}
}

/* Runs `n` one-descriptor chains through add, pop and push. */
static void run_chains(struct drv *d, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint16_t head = i % d->cfg.size;

		put_desc(d->cfg.desc, head, BUF + head, 1, 0, 0);
		drv_add(d, head);
		if (drv_pop(d) != 1 || d->e.head != head) {
			CHECK(false, "chain %u did not pop", i);
			return;
		}
		virtq_push(&d->q, head, head);
	}
}

/* avail, used and the ring slots across 65535 -> 0, with a full ring. */
static void test_wrap(void)
{
	struct drv d;

	drv_setup(&d, 4, true, false, false);
	run_chains(&d, 65534);
	CHECK_U(used_idx(&d), 65534);
	for (uint16_t i = 0; i < 4; i++) {
		put_desc(d.cfg.desc, i, BUF + 0x10 * i, 0x10, VIRTQ_DESC_F_WRITE, 0);
		drv_add(&d, 3 - i);
	}
	CHECK_U(get16(d.cfg.avail + 2), 2);
	for (uint16_t i = 0; i < 4; i++) {
		CHECK_I(drv_pop(&d), 1);
		CHECK_U(d.e.head, 3 - i);
		check_seg(&d, 0, BUF + 0x10 * (3 - i), 0x10);
		virtq_push(&d.q, d.e.head, i);
		check_used(&d, (uint16_t)(65535 + i), 3 - i, i);
	}
	CHECK_I(drv_pop(&d), 0);
	CHECK_U(used_idx(&d), 2);
}

static void test_event_idx_notify(void)
{
	struct drv d;

	drv_setup(&d, 8, false, true, false);
	virtq_push(&d.q, 0, 0);
	CHECK(virtq_should_notify(&d.q), "first use must notify");
	set_used_event(&d, 2);			/* interrupt once entry 2 is used */
	virtq_push(&d.q, 1, 0);
	CHECK(!virtq_should_notify(&d.q), "used_event 2 not crossed at idx 2");
	virtq_push(&d.q, 2, 0);
	CHECK(virtq_should_notify(&d.q), "used_event 2 crossed at idx 3");
	CHECK(!virtq_should_notify(&d.q), "nothing pushed since");
	virtq_push(&d.q, 3, 0);
	CHECK(!virtq_should_notify(&d.q), "used_event 2 behind");
	/* EVENT_IDX: the device ignores NO_INTERRUPT. */
	put16(d.cfg.avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
	set_used_event(&d, 5);
	virtq_push(&d.q, 4, 0);
	virtq_push(&d.q, 5, 0);
	virtq_push(&d.q, 6, 0);
	CHECK(virtq_should_notify(&d.q), "used_event 5 crossed by a batch");

	/* Across the wrap of the used index. */
	while (d.q.used_idx != 65535)
		virtq_push(&d.q, 0, 0);
	CHECK_U(used_idx(&d), 65535);
	set_used_event(&d, 65535);
	CHECK(!virtq_should_notify(&d.q), "used_event 65535 not crossed yet");
	virtq_push(&d.q, 0, 0);
	CHECK(virtq_should_notify(&d.q), "used_event 65535 crossed at idx 0");
	set_used_event(&d, 0);
	virtq_push(&d.q, 0, 0);
	CHECK(virtq_should_notify(&d.q), "used_event 0 crossed at idx 1");
	virtq_push(&d.q, 0, 0);
	CHECK(!virtq_should_notify(&d.q), "used_event 0 behind at idx 2");
}

/* 65536 pushes without a check: the window is empty modulo 2^16, so only
 * forgetting the last signalled index keeps the interrupt. */
static void test_event_idx_full_wrap(void)
{
	struct drv d;

	drv_setup(&d, 8, false, true, false);
	virtq_push(&d.q, 0, 0);
	CHECK(virtq_should_notify(&d.q), "first use must notify");
	for (unsigned i = 0; i < 65537; i++)
		virtq_push(&d.q, 0, 0);
	set_used_event(&d, 100);
	CHECK(virtq_should_notify(&d.q), "interrupt lost after a full wrap");
}

static void test_no_interrupt(void)
{
	struct drv d;

	drv_setup(&d, 8, false, false, false);
	set_used_event(&d, 0x1234);		/* ignored without EVENT_IDX */
	virtq_push(&d.q, 0, 0);
	CHECK(virtq_should_notify(&d.q), "flags 0 must notify");
	put16(d.cfg.avail, VIRTQ_AVAIL_F_NO_INTERRUPT);
	virtq_push(&d.q, 0, 0);
	CHECK(!virtq_should_notify(&d.q), "NO_INTERRUPT set");
	put16(d.cfg.avail, 0);
	virtq_push(&d.q, 0, 0);
	CHECK(virtq_should_notify(&d.q), "NO_INTERRUPT cleared");
}

static void test_kicks_flags(void)
{
	struct drv d;

	drv_setup(&d, 8, false, false, false);
	CHECK(!virtq_set_kicks(&d.q, false), "disabling reports work");
	CHECK_U(get16(d.cfg.used), VIRTQ_USED_F_NO_NOTIFY);
	CHECK(!virtq_set_kicks(&d.q, true), "work reported on an empty ring");
	CHECK_U(get16(d.cfg.used), 0);
	virtq_set_kicks(&d.q, false);
	put_desc(d.cfg.desc, 0, BUF, 1, 0, 0);
	drv_add(&d, 0);				/* the driver saw NO_NOTIFY: no kick */
	CHECK(virtq_set_kicks(&d.q, true), "chain added before enabling was missed");
	CHECK_U(get16(d.cfg.used), 0);
	CHECK_I(drv_pop(&d), 1);
	CHECK_U(avail_event(&d), 0);		/* not written without EVENT_IDX */
}

static void test_kicks_event_idx(void)
{
	const uint64_t ev = 0xdead;
	struct drv d;

	drv_setup(&d, 8, false, true, false);
	run_chains(&d, 3);
	CHECK_I(drv_pop(&d), 0);
	CHECK_U(avail_event(&d), 3);		/* an empty pop arms avail_event */
	put16(d.cfg.used + 4 + 8 * 8, ev);
	CHECK(!virtq_set_kicks(&d.q, false), "disabling reports work");
	CHECK_U(get16(d.cfg.used), 0);		/* flags stay 0 with EVENT_IDX */
	run_chains(&d, 2);
	CHECK_I(drv_pop(&d), 0);
	CHECK_U(avail_event(&d), ev);		/* kicks off: not armed */
	CHECK(!virtq_set_kicks(&d.q, true), "work reported on an empty ring");
	CHECK_U(avail_event(&d), 5);
	virtq_set_kicks(&d.q, false);
	put_desc(d.cfg.desc, 0, BUF, 1, 0, 0);
	drv_add(&d, 0);
	CHECK(virtq_set_kicks(&d.q, true), "chain added before enabling was missed");
	CHECK_U(avail_event(&d), 5);
	CHECK_I(drv_pop(&d), 1);
	CHECK_I(drv_pop(&d), 0);
	CHECK_U(avail_event(&d), 6);
	CHECK_U(get16(d.cfg.used), 0);
}

/* Descriptor 0 chains to 1 and so on; each field is the case's. */
struct hostile {
	const char *what;
	unsigned n;
	struct { uint64_t addr; uint32_t len; uint16_t flags, next; } d[4];
	unsigned max;
	int want;
};

#define NXT VIRTQ_DESC_F_NEXT
#define WR VIRTQ_DESC_F_WRITE

static const struct hostile hostile_cases[] = {
	{ "buffer ends at RAM's end", 1, { { RAM - 16, 16, 0, 0 } }, MAX_SEGS, 1 },
	{ "buffer crosses RAM's end", 1, { { RAM - 8, 16, 0, 0 } }, MAX_SEGS, -EFAULT },
	{ "buffer just past RAM", 1, { { RAM, 1, 0, 0 } }, MAX_SEGS, -EFAULT },
	{ "addr + len wraps", 1, { { ~0ULL - 3, 16, 0, 0 } }, MAX_SEGS, -EFAULT },
	{ "writable after readable", 2, { { BUF, 8, NXT, 1 }, { BUF, 8, WR, 0 } }, MAX_SEGS, 1 },
	{ "readable after writable", 2, { { BUF, 8, WR | NXT, 1 }, { BUF, 8, 0, 0 } }, MAX_SEGS, -EINVAL },
	{ "next past the table", 1, { { BUF, 8, NXT, 8 } }, MAX_SEGS, -EINVAL },
	{ "self loop", 1, { { BUF, 8, NXT, 0 } }, MAX_SEGS, -ELOOP },
	{ "loop 0-1-2-1", 3, { { BUF, 8, NXT, 1 }, { BUF, 8, NXT, 2 }, { BUF, 8, NXT, 1 } },
	  MAX_SEGS, -ELOOP },
	{ "segments at max", 2, { { BUF, 8, NXT, 1 }, { BUF, 8, WR, 0 } }, 2, 1 },
	{ "segments over max", 3, { { BUF, 8, NXT, 1 }, { BUF, 8, WR | NXT, 2 }, { BUF, 8, WR, 0 } },
	  2, -E2BIG },
};

/* Every case's ring sits at the end of RAM; after a failure the chain is
 * still the next one (last_avail did not move) and pops once repaired. */
static void test_hostile_chains(void)
{
	for (unsigned i = 0; i < ARRAY_SIZE(hostile_cases); i++) {
		const struct hostile *h = &hostile_cases[i];
		struct drv d;
		int ret;

		drv_setup(&d, 8, true, true, true);
		for (unsigned j = 0; j < h->n; j++)
			put_desc(d.cfg.desc, j, h->d[j].addr, h->d[j].len, h->d[j].flags, h->d[j].next);
		drv_add(&d, 0);
		d.e.max = h->max;
		ret = drv_pop(&d);
		CHECK(ret == h->want, "%s: got %d, want %d", h->what, ret, h->want);
		CHECK(d.e.n_out + d.e.n_in <= h->max, "%s: too many segments", h->what);
		if (ret > 0)
			continue;
		put_desc(d.cfg.desc, 0, BUF, 8, 0, 0);
		CHECK_I(drv_pop(&d), 1);
		CHECK_U(d.e.head, 0);
	}
}

static void test_hostile_avail(void)
{
	struct drv d;

	drv_setup(&d, 8, true, false, false);
	put_desc(d.cfg.desc, 0, BUF, 8, 0, 0);
	put16(d.cfg.avail + 2, 9);		/* 9 chains in a ring of 8 */
	CHECK_I(drv_pop(&d), -EINVAL);
	CHECK_I(drv_pop(&d), -EINVAL);
	put16(d.cfg.avail + 2, 8);
	CHECK_I(drv_pop(&d), 1);
	put16(d.cfg.avail + 2, 0);		/* "decremented": 65535 ahead */
	CHECK_I(drv_pop(&d), -EINVAL);

	drv_setup(&d, 8, true, false, false);
	drv_add(&d, 8);				/* head outside the table */
	CHECK_I(drv_pop(&d), -EINVAL);
	drv_setup(&d, 8, true, false, false);
	drv_add(&d, 0xffff);
	CHECK_I(drv_pop(&d), -EINVAL);
}

/* Chains of exactly `size` descriptors pass; one more is a loop. */
static void test_chain_bound(void)
{
	struct drv d;

	drv_setup(&d, 8, true, false, false);
	for (unsigned i = 0; i < 8; i++)
		put_desc(d.cfg.desc, i, BUF, 0, i < 7 ? NXT : 0, i + 1);
	drv_add(&d, 0);
	CHECK_I(drv_pop(&d), 1);
	put_desc(d.cfg.desc, 7, BUF, 0, NXT, 0);
	drv_add(&d, 0);
	CHECK_I(drv_pop(&d), -ELOOP);
}

/* The popped segment is the copy the device checked, not what the guest
 * wrote later. */
static void test_copied(void)
{
	struct drv d;

	drv_setup(&d, 8, true, false, false);
	put_desc(d.cfg.desc, 0, BUF, 64, WR, 0);
	drv_add(&d, 0);
	CHECK_I(drv_pop(&d), 1);
	put_desc(d.cfg.desc, 0, RAM - 8, 4096, 0, 0);
	CHECK_U(d.e.n_in, 1);
	check_seg(&d, 0, BUF, 64);
}

#define TOCTOU_GOOD_ADDR (RAM - 4096)
#define TOCTOU_ROUNDS 100000

struct toctou {
	uint8_t *desc;		/* descriptor 0, host view */
	atomic_bool stop;
};

/* The driver flips descriptor 0 between good {RAM-4K, 4K} and bad
 * {RAM-16, 8K}: every mix of the two is outside RAM. */
static void *toctou_writer(void *arg)
{
	struct toctou *t = arg;

	for (uint64_t i = 0; !atomic_load(&t->stop); i++) {
		bool bad = i & 1;

		__atomic_store_n((uint64_t *)t->desc, bad ? RAM - 16 : TOCTOU_GOOD_ADDR, __ATOMIC_RELAXED);
		__atomic_store_n((uint32_t *)(t->desc + 8), bad ? 8192 : 4096, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_toctou(void)
{
	struct toctou t = { 0 };
	unsigned ok = 0, fault = 0;
	pthread_t th;
	struct drv d;

	drv_setup(&d, 8, true, false, false);
	put_desc(d.cfg.desc, 0, TOCTOU_GOOD_ADDR, 4096, 0, 0);
	t.desc = host(d.cfg.desc, 16);
	drv_add(&d, 0);
	CHECK_I(pthread_create(&th, NULL, toctou_writer, &t), 0);
	for (unsigned i = 0; i < TOCTOU_ROUNDS; i++) {
		int ret = drv_pop(&d);

		if (ret == -EFAULT) {
			fault++;
			continue;
		}
		CHECK_I(ret, 1);
		check_seg(&d, 0, TOCTOU_GOOD_ADDR, 4096);
		ok++;
		virtq_push(&d.q, 0, 0);
		drv_add(&d, 0);
	}
	atomic_store(&t.stop, true);
	pthread_join(th, NULL);
	printf("toctou: %u pops of the good descriptor, %u refused\n", ok, fault);
}

int main(void)
{
	rcu_register_thread();
	if (ram_guard_init(&mem, RAM)) {
		fprintf(stderr, "test_virtq: mem_init failed\n");
		return 1;
	}
	test_init();
	test_simple_chains();
	test_zero_length();
	test_indirect();
	test_indirect_hostile();
	test_indirect_too_long();
	test_wrap();
	test_event_idx_notify();
	test_event_idx_full_wrap();
	test_no_interrupt();
	test_kicks_flags();
	test_kicks_event_idx();
	test_hostile_chains();
	test_hostile_avail();
	test_chain_bound();
	test_copied();
	test_toctou();
	mem_destroy(&mem);
	rcu_unregister_thread();
	if (test_failures) {
		fprintf(stderr, "test_virtq: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_virtq: all checks passed\n");
	return 0;
}
