/*
 * Unit test of core/mem.c: the split of guest RAM around the PCI hole,
 * mem_translate at every boundary (end of RAM, the hole, 4 GiB, wrapping
 * gpa + len), and mem_read/mem_write. RAM is MAP_NORESERVE, so a 4 GiB+
 * guest costs only the pages written. Single-threaded (RCU-registered).
 * Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "core/mem.h"
#include "core/util.h"
#include "rcu/rcu.h"

#include <errno.h>
#include <stdio.h>
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

int main(void)
{
	rcu_register_thread();
	test_small();
	test_bad_sizes();
	test_hole_edge();
	test_split();
	rcu_unregister_thread();
	if (test_failures) {
		fprintf(stderr, "test_mem: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_mem: all checks passed\n");
	return 0;
}
