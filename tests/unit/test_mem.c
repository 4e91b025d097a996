/*
 * Unit test of core/mem.c: the split of guest RAM around the PCI hole,
 * mem_translate at every boundary (end of RAM, the hole, 4 GiB, wrapping
 * gpa + len), and mem_read/mem_write. RAM is MAP_NORESERVE, so a 4 GiB+
 * guest costs only the pages written. Dirty marking: page and word
 * boundaries, ranges past the end of RAM, across the PCI hole and wrapping
 * 2^64, logging off, fetch clearing, and a marker thread racing a fetcher
 * that must see every mark exactly once.
 * Threads: main, plus one marker thread (both RCU-registered).
 * Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "core/mem.h"
#include "core/util.h"
#include "rcu/rcu.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HOLE MEM_PCI_HOLE_START

struct regions {
	unsigned n;
	struct mem_region r[4];
};

static int collect(const struct mem_region *r, void *arg)
{
	struct regions *rs = arg;

	if (rs->n < ARRAY_SIZE(rs->r))
		rs->r[rs->n] = *r;
	rs->n++;
	return 0;
}

static int stop_at_first(const struct mem_region *r, void *arg)
{
	(*(unsigned *)arg)++;
	return 42;
}

static struct regions regions_of(struct mem_map *m)
{
	struct regions rs = { 0 };

	CHECK_U(mem_for_each(m, collect, &rs), 0);
	return rs;
}

/* gpa..gpa+len must translate to hva + (gpa - base). */
static void check_in(struct mem_map *m, const struct mem_region *r, uint64_t gpa, uint64_t len)
{
	uint8_t *p = mem_translate(m, gpa, len);

	CHECK(p == r->hva + (gpa - r->gpa), "translate(%#llx, %#llx) = %p, want %p",
	      (unsigned long long)gpa, (unsigned long long)len, (void *)p,
	      (void *)(r->hva + (gpa - r->gpa)));
}

static void check_out(struct mem_map *m, uint64_t gpa, uint64_t len)
{
	uint8_t buf[16] = { 0 };

	CHECK(mem_translate(m, gpa, len) == NULL, "translate(%#llx, %#llx) not NULL",
	      (unsigned long long)gpa, (unsigned long long)len);
	if (len <= sizeof(buf)) {
		CHECK_U(mem_read(m, gpa, buf, len), -EFAULT);
		CHECK_U(mem_write(m, gpa, buf, len), -EFAULT);
	}
}

/* Overflow: gpa + len wraps past 2^64 and would land in RAM if added. */
static void check_wrapping(struct mem_map *m)
{
	check_out(m, ~0ULL, 2);
	check_out(m, ~0ULL - 0xf, 0x20);
	check_out(m, 0x10, ~0ULL - 0xf);
	check_out(m, 1, ~0ULL);
	check_out(m, 0, ~0ULL);
	check_out(m, ~0ULL, 1);
}

static void test_small(void)
{
	const uint64_t size = 64 * MiB;
	struct mem_map m = { NULL };
	struct regions rs;
	unsigned calls = 0;

	CHECK_U(mem_init(&m, size), 0);
	rs = regions_of(&m);
	CHECK_U(rs.n, 1);
	CHECK(rs.r[0].gpa == 0 && rs.r[0].size == size && rs.r[0].hva && rs.r[0].slot == 0,
	      "region %#llx+%#llx slot %u", (unsigned long long)rs.r[0].gpa,
	      (unsigned long long)rs.r[0].size, rs.r[0].slot);
	CHECK_U(regions_of(&m).r[0].size, size);
	CHECK_U(mem_for_each(&m, stop_at_first, &calls), 42);
	CHECK_U(calls, 1);

	check_in(&m, rs.r, 0, size);
	check_in(&m, rs.r, 0, 1);
	check_in(&m, rs.r, size - 1, 1);
	check_in(&m, rs.r, size - 8, 8);
	check_in(&m, rs.r, 0x1234, size - 0x1234);
	check_out(&m, size, 1);
	check_out(&m, size - 1, 2);
	check_out(&m, size - 8, 9);
	check_out(&m, 0, size + 1);
	check_out(&m, 0x1234, size - 0x1233);
	check_out(&m, HOLE, 1);
	check_out(&m, MEM_4G, 1);
	check_wrapping(&m);
	mem_destroy(&m);
	CHECK(m.snap == NULL, "snapshot left after mem_destroy");
	CHECK(mem_translate(&m, 0, 1) == NULL, "translate after mem_destroy");
	mem_destroy(&m);
}

static void test_bad_sizes(void)
{
	struct mem_map m = { NULL };

	CHECK_U(mem_init(&m, 0), -EINVAL);
	CHECK_U(mem_init(&m, 4095), -EINVAL);
	CHECK_U(mem_init(&m, 64 * MiB + 1), -EINVAL);
	CHECK_U(mem_init(&m, 64 * MiB + 2048), -EINVAL);
	CHECK(m.snap == NULL, "snapshot published on error");
	CHECK_U(mem_init(&m, 4096), 0);
	CHECK_U(regions_of(&m).r[0].size, 4096);
	mem_destroy(&m);
}

/* Exactly 3 GiB: one region; the hole starts where RAM ends. */
static void test_hole_edge(void)
{
	struct mem_map m = { NULL };
	struct regions rs;

	CHECK_U(mem_init(&m, HOLE), 0);
	rs = regions_of(&m);
	CHECK_U(rs.n, 1);
	CHECK_U(mem_low_size(HOLE + 4096), HOLE);
	CHECK_U(mem_low_size(HOLE), HOLE);
	CHECK_U(mem_low_size(4096), 4096);
	CHECK_U(regions_of(&m).r[0].size, HOLE);
	check_in(&m, rs.r, HOLE - 1, 1);
	check_out(&m, HOLE, 1);
	check_out(&m, MEM_4G, 1);
	mem_destroy(&m);
}

static void test_split(void)
{
	const uint64_t size = 4 * GiB + 64 * MiB, high = size - HOLE;
	struct mem_map m = { NULL };
	uint8_t a[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, b[8] = { 0 };
	struct regions rs;
	unsigned calls = 0;

	CHECK_U(mem_init(&m, size), 0);
	rs = regions_of(&m);
	CHECK_U(rs.n, 2);
	CHECK(rs.r[0].gpa == 0 && rs.r[0].size == HOLE && rs.r[0].slot == 0, "low region %#llx+%#llx",
	      (unsigned long long)rs.r[0].gpa, (unsigned long long)rs.r[0].size);
	CHECK(rs.r[1].gpa == MEM_4G && rs.r[1].size == high && rs.r[1].slot == 1,
	      "high region %#llx+%#llx", (unsigned long long)rs.r[1].gpa,
	      (unsigned long long)rs.r[1].size);
	CHECK(rs.r[0].hva + rs.r[0].size <= rs.r[1].hva || rs.r[1].hva + rs.r[1].size <= rs.r[0].hva,
	      "host mappings overlap");
	CHECK_U(regions_of(&m).r[0].size, HOLE);
	CHECK_U(mem_for_each(&m, stop_at_first, &calls), 42);
	CHECK_U(calls, 1);

	check_in(&m, &rs.r[0], 0, HOLE);
	check_in(&m, &rs.r[0], HOLE - 1, 1);
	check_out(&m, HOLE, 1);
	check_out(&m, HOLE - 1, 2);
	check_out(&m, HOLE + 0x1000, 4);
	check_out(&m, MEM_4G - 1, 1);
	check_out(&m, MEM_4G - 1, 2);
	check_out(&m, HOLE - 4096, MEM_4G - HOLE + 8192);	/* across the whole hole */
	check_in(&m, &rs.r[1], MEM_4G, 1);
	check_in(&m, &rs.r[1], MEM_4G, high);
	check_in(&m, &rs.r[1], MEM_4G + high - 1, 1);
	check_out(&m, MEM_4G + high, 1);
	check_out(&m, MEM_4G + high - 4, 8);
	check_out(&m, MEM_4G, high + 1);
	check_wrapping(&m);

	/* Copies land where translate says, and the two regions do not alias. */
	CHECK_U(mem_write(&m, MEM_4G + high - 8, a, 8), 0);
	CHECK_U(mem_write(&m, HOLE - 8, b, 8), 0);
	CHECK(!memcmp(rs.r[1].hva + high - 8, a, 8), "mem_write to the high region");
	memset(b, 0xee, sizeof(b));
	CHECK_U(mem_read(&m, MEM_4G + high - 8, b, 8), 0);
	CHECK(!memcmp(a, b, 8), "mem_read from the high region");
	CHECK_U(mem_read(&m, HOLE - 8, b, 8), 0);
	CHECK(b[0] == 0 && b[7] == 0, "low and high regions alias");
	CHECK_U(mem_read(&m, HOLE - 4, b, 8), -EFAULT);
	CHECK_U(mem_write(&m, MEM_4G + high - 4, a, 8), -EFAULT);
	mem_destroy(&m);
}

#define PAGE MEM_DIRTY_PAGE
#define WORD_BITS (8 * sizeof(unsigned long))
#define MAX_PAGES (4 * GiB / PAGE)

static unsigned long dirty_bits[MAX_PAGES / WORD_BITS];

static bool bit(const unsigned long *bits, uint64_t page)
{
	return bits[page / WORD_BITS] >> (page % WORD_BITS) & 1;
}

/* Fetches the region at gpa and checks that exactly pages[0..n) are dirty
 * (n == ~0u: every page). */
static void check_dirty(struct mem_map *m, uint64_t gpa, const uint64_t *pages, unsigned n)
{
	long got = mem_dirty_fetch(m, gpa, dirty_bits);
	uint64_t set = 0;

	CHECK(got > 0 && (uint64_t)got <= MAX_PAGES, "fetch(%#llx) = %ld",
	      (unsigned long long)gpa, got);
	if (got <= 0 || (uint64_t)got > MAX_PAGES)
		return;
	for (uint64_t p = 0; p < (uint64_t)got; p++)
		set += bit(dirty_bits, p);
	for (unsigned i = 0; n != ~0u && i < n; i++)
		CHECK(bit(dirty_bits, pages[i]), "region %#llx: page %llu not dirty",
		      (unsigned long long)gpa, (unsigned long long)pages[i]);
	CHECK_U(set, n == ~0u ? (uint64_t)got : n);
}

#define EXPECT(m, gpa, ...) \
	check_dirty(m, gpa, (const uint64_t[]){ __VA_ARGS__ }, \
		    sizeof((const uint64_t[]){ __VA_ARGS__ }) / sizeof(uint64_t))
#define EXPECT_NONE(m, gpa) check_dirty(m, gpa, NULL, 0)

static void test_dirty_small(void)
{
	const uint64_t size = 64 * MiB, last = size / PAGE - 1;
	struct mem_map m = { NULL };

	CHECK_U(mem_init(&m, size), 0);
	CHECK_I(mem_dirty_fetch(&m, 0, dirty_bits), (long)(size / PAGE));
	mem_dirty_mark(&m, 0, size);
	EXPECT_NONE(&m, 0);		/* logging is off */

	mem_dirty_log(&m, true);
	mem_dirty_mark(&m, PAGE - 1, 1);
	EXPECT(&m, 0, 0);
	EXPECT_NONE(&m, 0);		/* the fetch cleared it */
	mem_dirty_mark(&m, PAGE - 1, 2);
	EXPECT(&m, 0, 0, 1);
	mem_dirty_mark(&m, 2 * PAGE, PAGE);
	mem_dirty_mark(&m, 5 * PAGE, 0);
	EXPECT(&m, 0, 2);
	mem_dirty_mark(&m, 63 * PAGE + 100, PAGE);
	EXPECT(&m, 0, 63, 64);
	mem_dirty_mark(&m, 130 * PAGE + 1, 60 * PAGE);
	check_dirty(&m, 0, (const uint64_t[]){ 130, 131, 132, 133, 134, 135, 136, 137, 138, 139,
			   140, 141, 142, 143, 144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154,
			   155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169,
			   170, 171, 172, 173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184,
			   185, 186, 187, 188, 189, 190 }, 61);

	/* The end of RAM, and ranges that wrap past 2^64. */
	mem_dirty_mark(&m, size - 1, 100);
	EXPECT(&m, 0, last);
	mem_dirty_mark(&m, size, PAGE);
	mem_dirty_mark(&m, ~0ULL - 10, 100);	/* would be 0..88 if it wrapped */
	mem_dirty_mark(&m, ~0ULL, ~0ULL);
	EXPECT_NONE(&m, 0);
	mem_dirty_mark(&m, size - 2 * PAGE, ~0ULL);
	EXPECT(&m, 0, last - 1, last);
	mem_dirty_mark(&m, 1, ~0ULL);
	check_dirty(&m, 0, NULL, ~0u);

	/* Off marks nothing; on again starts from a clean bitmap. */
	mem_dirty_log(&m, false);
	mem_dirty_mark(&m, 0, PAGE);
	EXPECT_NONE(&m, 0);
	mem_dirty_log(&m, true);
	mem_dirty_mark(&m, 7 * PAGE, 1);
	mem_dirty_log(&m, true);
	EXPECT_NONE(&m, 0);
	CHECK_I(mem_dirty_fetch(&m, size, dirty_bits), -EINVAL);
	mem_destroy(&m);
}

static void test_dirty_split(void)
{
	const uint64_t size = 4 * GiB + 64 * MiB, low_last = HOLE / PAGE - 1;
	struct mem_map m = { NULL };

	CHECK_U(mem_init(&m, size), 0);
	mem_dirty_log(&m, true);
	mem_dirty_mark(&m, HOLE - PAGE, MEM_4G - HOLE + 2 * PAGE + 1);
	EXPECT(&m, 0, low_last);
	EXPECT(&m, MEM_4G, 0, 1);
	mem_dirty_mark(&m, HOLE, MEM_4G - HOLE);
	mem_dirty_mark(&m, HOLE + 0x1234, 8);
	EXPECT_NONE(&m, 0);
	EXPECT_NONE(&m, MEM_4G + 12345);	/* any gpa inside the region */
	mem_dirty_mark(&m, 0, ~0ULL);
	check_dirty(&m, 0, NULL, ~0u);
	check_dirty(&m, MEM_4G, NULL, ~0u);
	CHECK_I(mem_dirty_fetch(&m, HOLE, dirty_bits), -EINVAL);
	CHECK_I(mem_dirty_fetch(&m, size + MEM_4G, dirty_bits), -EINVAL);
	CHECK_I(mem_dirty_fetch(&m, MEM_4G, dirty_bits), (long)((size - HOLE) / PAGE));
	mem_destroy(&m);
}

/*
 * A marker thread races the fetcher (main) on a small bitmap, so both hit
 * the same words all the time. The marker re-marks a page only once the
 * fetcher has seen its previous mark, so every mark must show up in
 * exactly one fetch: seen[p] == marked[p] at the end, or a mark was lost.
 */
#define RACE_PAGES 256
#define RACE_MARKS 100000

struct race {
	struct mem_map m;
	atomic_uint seen[RACE_PAGES];	/* written by the fetcher */
	unsigned marked[RACE_PAGES];	/* marker's, read after join */
	atomic_bool done;
};

static void *marker(void *arg)
{
	struct race *r = arg;
	uint64_t deadline = clock_ns() + 2000000000ULL;
	unsigned n = 0;

	rcu_register_thread();
	for (unsigned p = 0; n < RACE_MARKS && clock_ns() < deadline; p = (p + 1) % RACE_PAGES) {
		if (atomic_load(&r->seen[p]) != r->marked[p])
			continue;
		mem_dirty_mark(&r->m, p * PAGE + n % PAGE, 1);
		r->marked[p]++;
		n++;
	}
	rcu_unregister_thread();
	atomic_store(&r->done, true);
	return NULL;
}

static void race_fetch(struct race *r)
{
	unsigned long bits[RACE_PAGES / WORD_BITS];

	CHECK_I(mem_dirty_fetch(&r->m, 0, bits), RACE_PAGES);
	for (unsigned p = 0; p < RACE_PAGES; p++)
		if (bit(bits, p))
			atomic_fetch_add(&r->seen[p], 1);
}

static void test_dirty_race(void)
{
	static struct race r;
	unsigned lost = 0, marks = 0;
	pthread_t t;

	CHECK_U(mem_init(&r.m, RACE_PAGES * PAGE), 0);
	mem_dirty_log(&r.m, true);
	CHECK_I(pthread_create(&t, NULL, marker, &r), 0);
	while (!atomic_load(&r.done))
		race_fetch(&r);
	pthread_join(t, NULL);
	race_fetch(&r);
	for (unsigned p = 0; p < RACE_PAGES; p++) {
		lost += r.marked[p] != atomic_load(&r.seen[p]);
		marks += r.marked[p];
	}
	CHECK(lost == 0, "%u pages: marks lost or seen twice (%u marks)", lost, marks);
	CHECK(marks >= 10 * RACE_PAGES, "only %u marks made", marks);
	mem_destroy(&r.m);
}

int main(void)
{
	rcu_register_thread();
	test_small();
	test_bad_sizes();
	test_hole_edge();
	test_split();
	test_dirty_small();
	test_dirty_split();
	test_dirty_race();
	rcu_unregister_thread();
	if (test_failures) {
		fprintf(stderr, "test_mem: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_mem: all checks passed\n");
	return 0;
}
