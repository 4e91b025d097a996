/*
 * Unit test of core/cpuid.c: cpuid_fixup on a synthetic KVM_GET_SUPPORTED_CPUID
 * table, for every vCPU of 1, 2, 3, 4, 5, 8 and 254-vCPU VMs. Expected values
 * come from the Intel SDM (leaves 1, 4, 0xB, 0x1F) and AMD APM (0x80000008,
 * 0x8000001E) field layouts, written out here rather than reused from cpuid.c.
 * Single-threaded. Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "core/cpuid.h"
#include "core/util.h"

#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_X(what, got, want) \
	CHECK((got) == (want), "n=%u apic=%u %s: got %#x, want %#x", n, apic, what, \
	      (unsigned)(got), (unsigned)(want))

/* Register values as KVM might report them: junk in the fields cpuid_fixup
 * owns, and bits it must keep elsewhere. */
static const struct kvm_cpuid_entry2 test_template[] = {
	{ .function = 0, .eax = 0x1f, .ebx = 0x756e6547 },
	{ .function = 1, .eax = 0x000906ea, .ebx = 0xa5a50800, .ecx = 0x7ffafbbf, .edx = 0x0f8bfbff },
	{ .function = 4, .index = 0, .eax = 0xfc004121, .ebx = 0x01c0003f },
	{ .function = 4, .index = 1, .eax = 0x00004122, .ecx = 0x3f },
	{ .function = 4, .index = 3, .eax = 0x1c03c163, .edx = 0x6 },
	{ .function = 7, .ebx = 0x029c6fbf, .ecx = 0x40000000, .edx = 0x10000000 },
	{ .function = 0xb, .index = 0, .eax = 7, .ebx = 9, .ecx = 0x1234, .edx = 0xff },
	{ .function = 0xb, .index = 1, .eax = 7, .ebx = 9, .ecx = 0x1234, .edx = 0xff },
	{ .function = 0xb, .index = 2, .eax = 7, .ebx = 9, .ecx = 0x1234, .edx = 0xff },
	{ .function = 0x1f, .index = 0, .eax = 7, .ebx = 9, .ecx = 0x1234, .edx = 0xff },
	{ .function = 0x1f, .index = 1, .eax = 7, .ebx = 9, .ecx = 0x1234, .edx = 0xff },
	{ .function = 0x1f, .index = 2, .eax = 7, .ebx = 9, .ecx = 0x1234, .edx = 0xff },
	{ .function = 0x80000008, .eax = 0x3030, .ebx = 0x1000, .ecx = 0x3ff5f0ff },
	{ .function = 0x8000001e, .eax = 0xdead, .ebx = 0xbeef, .ecx = 0x0303 },
};

static struct kvm_cpuid2 *cpuid_table(void)
{
	size_t n = ARRAY_SIZE(test_template);
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

	if (!c) {
		perror("calloc");
		exit(1);
	}
	c->nent = (unsigned)n;
	memcpy(c->entries, test_template, sizeof(test_template));
	return c;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, unsigned fn, unsigned idx)
{
	for (unsigned i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	return NULL;
}

static void check_leaf1(const struct kvm_cpuid_entry2 *e, const struct kvm_cpuid_entry2 *t,
			unsigned apic, unsigned n)
{
	CHECK_X("1.eax", e->eax, t->eax);
	CHECK_X("1.ebx apic id [31:24]", e->ebx >> 24, apic);
	CHECK_X("1.ebx logical count [23:16]", (e->ebx >> 16) & 0xff, n);
	CHECK_X("1.ebx [15:0]", e->ebx & 0xffff, t->ebx & 0xffff);
	CHECK_X("1.ecx", e->ecx, t->ecx | 1U << 31);
	CHECK_X("1.edx", e->edx, t->edx | (n > 1 ? 1U << 28 : 0));
}

/* Topology leaf 0xB or 0x1F, subleaf idx: SMT level (1 thread, shift 0),
 * core level (n cores, shift ceil(log2 n)), then invalid. */
static void check_topo(const struct kvm_cpuid_entry2 *e, unsigned idx, unsigned apic, unsigned n,
		       unsigned shift)
{
	static const unsigned level_type[] = { 1, 2, 0 };
	const unsigned want_eax[] = { 0, shift, 0 }, want_ebx[] = { 1, n, 0 };

	CHECK_X("topo.eax shift", e->eax, want_eax[idx]);
	CHECK_X("topo.ebx count", e->ebx, want_ebx[idx]);
	CHECK_X("topo.ecx level type [15:8]", (e->ecx >> 8) & 0xff, level_type[idx]);
	CHECK_X("topo.ecx level [7:0]", e->ecx & 0xff, idx);
	CHECK_X("topo.ecx [31:16]", e->ecx >> 16, 0);
	CHECK_X("topo.edx x2apic id", e->edx, apic);
}

static void check_vcpu(const struct kvm_cpuid2 *c, unsigned apic, unsigned n, unsigned shift)
{
	const struct kvm_cpuid_entry2 *e, *t;

	CHECK(apic < 1U << shift || n == 1, "n=%u: apic %u does not fit %u bits", n, apic, shift);
	for (size_t i = 0; i < ARRAY_SIZE(test_template); i++) {
		t = &test_template[i];
		e = find(c, t->function, t->index);
		CHECK(e == &c->entries[i], "leaf %#x.%u moved or lost", t->function, t->index);
		if (!e)
			continue;
		switch (t->function) {
		case 1:
			check_leaf1(e, t, apic, n);
			break;
		case 4:
			/* 6 bits: saturates at 63 above 64 vCPUs. */
			CHECK_X("4.eax cores-1 [31:26]", e->eax >> 26, n - 1 < 63 ? n - 1 : 63);
			CHECK_X("4.eax [25:0]", e->eax & 0x3ffffff, t->eax & 0x3ffffff);
			CHECK_X("4.ebx/ecx/edx", e->ebx ^ e->ecx ^ e->edx, t->ebx ^ t->ecx ^ t->edx);
			break;
		case 0xb:
		case 0x1f:
			check_topo(e, t->index, apic, n, shift);
			break;
		case 0x80000008:
			CHECK_X("80000008.ecx ApicIdSize [15:12]", (e->ecx >> 12) & 0xf, shift);
			CHECK_X("80000008.ecx NC [7:0]", e->ecx & 0xff, n - 1);
			CHECK_X("80000008.ecx other bits", e->ecx & ~0xf0ffU, t->ecx & ~0xf0ffU);
			CHECK_X("80000008.eax", e->eax, t->eax);
			break;
		case 0x8000001e:
			CHECK_X("8000001e.eax ext apic id", e->eax, apic);
			CHECK_X("8000001e.ebx core id [7:0]", e->ebx & 0xff, apic & 0xff);
			CHECK_X("8000001e.ebx threads-1 [15:8]", (e->ebx >> 8) & 0xff, 0);
			CHECK_X("8000001e.ecx node", e->ecx, 0);
			break;
		default:
			CHECK(!memcmp(e, t, sizeof(*e)), "leaf %#x changed", t->function);
			break;
		}
	}
}

int main(void)
{
	/* vCPU count and ceil(log2(count)). */
	static const unsigned cases[][2] = {
		{ 1, 0 }, { 2, 1 }, { 3, 2 }, { 4, 2 }, { 5, 3 }, { 8, 3 }, { 9, 4 }, { 254, 8 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		unsigned n = cases[i][0], shift = cases[i][1];

		for (unsigned apic = 0; apic < n; apic++) {
			struct kvm_cpuid2 *c = cpuid_table();

			cpuid_fixup(c, apic, n);
			CHECK(c->nent == ARRAY_SIZE(test_template), "nent %u", c->nent);
			check_vcpu(c, apic, n, shift);
			/* A second pass changes nothing: no field depends on its old value. */
			cpuid_fixup(c, apic, n);
			check_vcpu(c, apic, n, shift);
			free(c);
		}
	}
	if (test_failures) {
		fprintf(stderr, "test_cpuid: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_cpuid: all checks passed\n");
	return 0;
}
