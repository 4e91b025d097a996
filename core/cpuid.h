/*
 * Per-vCPU CPUID: KVM's supported table with this vCPU's APIC id and the
 * VM's topology (one thread per core, all cores in one package). Pure code.
 */
#ifndef CORE_CPUID_H
#define CORE_CPUID_H

struct kvm_cpuid2;

/* Rewrites c (a copy of KVM_GET_SUPPORTED_CPUID) in place for vCPU apic_id
 * of n_vcpus. */
void cpuid_fixup(struct kvm_cpuid2 *c, unsigned apic_id, unsigned n_vcpus);

#endif
