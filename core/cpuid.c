/*
 * CPUID topology (see cpuid.h). Linux reads the APIC id from leaf 1 and the
 * topology from leaf 0xB/0x1F (Intel-style) or 0x80000008/0x8000001E (AMD);
 * all must agree with the MADT, or it warns and may misnumber CPUs.
 */
#include "core/cpuid.h"

#include <linux/kvm.h>

#define CPUID_1_ECX_HYPERVISOR (1U << 31)
#define CPUID_1_EDX_HTT (1U << 28)
#define TOPO_LEVEL_SMT 1
#define TOPO_LEVEL_CORE 2

/* Bits of APIC id that number the cores: ceil(log2(n)). */
static unsigned cpuid_core_shift(unsigned n)
{
	unsigned shift = 0;

	while ((1U << shift) < n)
		shift++;
	return shift;
}

static void cpuid_fix_topology_leaf(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned n)
{
	e->edx = apic_id;
	switch (e->index) {
	case 0:
		e->eax = 0;
		e->ebx = 1;
		e->ecx = (TOPO_LEVEL_SMT << 8) | e->index;
		break;
	case 1:
		e->eax = cpuid_core_shift(n);
		e->ebx = n;
		e->ecx = (TOPO_LEVEL_CORE << 8) | e->index;
		break;
	default:
		e->eax = 0;
		e->ebx = 0;
		e->ecx = e->index;
		break;
	}
}

static void cpuid_fix_entry(struct kvm_cpuid_entry2 *e, unsigned apic_id, unsigned n)
{
	switch (e->function) {
	case 1:
		e->ebx = (e->ebx & 0xffff) | (apic_id << 24) | ((n & 0xff) << 16);
		e->ecx |= CPUID_1_ECX_HYPERVISOR;
		if (n > 1)
			e->edx |= CPUID_1_EDX_HTT;
		break;
	case 4:
		/* Cores per package minus one, in EAX[31:26], saturated at 63. */
		e->eax = (e->eax & 0x03ffffff) | ((n - 1 < 63 ? n - 1 : 63) << 26);
		break;
	case 0xb:
	case 0x1f:
		cpuid_fix_topology_leaf(e, apic_id, n);
		break;
	case 0x80000008:
		e->ecx = (e->ecx & ~0xf0ffU) | (cpuid_core_shift(n) << 12) | ((n - 1) & 0xff);
		break;
	case 0x8000001e:
		e->eax = apic_id;
		e->ebx = apic_id & 0xff;	/* core id; one thread per core */
		e->ecx = 0;			/* node 0 */
		break;
	}
}

void cpuid_fixup(struct kvm_cpuid2 *c, unsigned apic_id, unsigned n_vcpus)
{
	for (unsigned i = 0; i < c->nent; i++)
		cpuid_fix_entry(&c->entries[i], apic_id, n_vcpus);
}
