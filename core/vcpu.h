/*
 * vCPUs: one thread each, running KVM_RUN and dispatching port I/O and MMIO
 * exits to the VM's buses without any global lock.
 *
 * Threads: vcpu_create/vcpu_start/vcpu_join on the main thread; vcpu_stop
 * from any thread; everything else in struct vcpu belongs to its thread.
 */
#ifndef CORE_VCPU_H
#define CORE_VCPU_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct vm;
struct boot_setup;
struct kvm_run;

struct vcpu {
	unsigned id;			/* also its APIC id */
	int fd;
	struct kvm_run *run;		/* shared with KVM; owned by the vCPU thread */
	struct vm *vm;
	pthread_t thread;
	bool started;			/* main thread only */
	atomic_bool stop;		/* set by vcpu_stop, read by the vCPU thread */
};

/* Creates vCPU id of n_vcpus with CPUID, MSRs and FPU state. vCPU 0 also
 * gets the boot entry state; the others wait for INIT/SIPI from the guest.
 * Returns 0 or -errno (logged). */
int vcpu_create(struct vcpu *v, struct vm *vm, unsigned id, unsigned n_vcpus,
		const struct boot_setup *boot);
int vcpu_start(struct vcpu *v);
/* Makes the vCPU thread leave KVM_RUN and exit. Any thread. */
void vcpu_stop(struct vcpu *v);
/* Joins the thread (after vcpu_stop) and frees the vCPU's resources. */
void vcpu_destroy(struct vcpu *v);

#endif
