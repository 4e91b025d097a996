/*
 * The KVM virtual machine: /dev/kvm and VM file descriptors, in-kernel
 * LAPIC/IOAPIC and PIT, RAM slots, and the shutdown request that ends a run.
 *
 * Threads: vm_create/vm_destroy on the main thread; vm_irq_line and
 * vm_shutdown_request from any thread (vCPUs, IOThreads).
 */
#ifndef CORE_VM_H
#define CORE_VM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/mem.h"

struct kvm_cpuid2;

/* Why the VM stopped. The first request wins; later ones are ignored. */
struct vm_shutdown {
	atomic_flag claimed;		/* set by the first requester */
	atomic_bool requested;
	int status;			/* the vmm's exit status */
	char reason[160];		/* written before `requested` is set */
	/* Wakes the main loop; set by its owner before vCPUs start. */
	void (*notify)(struct vm_shutdown *sd);
};

struct vm {
	int kvm_fd;
	int fd;
	size_t run_size;		/* mmap size of struct kvm_run */
	struct kvm_cpuid2 *cpuid;	/* KVM_GET_SUPPORTED_CPUID, read-only after create */
	struct mem_map mem;
	struct bus pio;			/* port I/O dispatch, RCU-published */
	struct bus mmio;		/* MMIO dispatch, RCU-published */
	struct vm_shutdown shutdown;
};

/* ioctl wrappers: return the ioctl's result or -errno. The checked form
 * logs the request's name on failure. */
int __vm_ioctl(int fd, unsigned long req, void *arg);
int vm_ioctl_checked(int fd, unsigned long req, void *arg, const char *name);
#define vm_ioctl(fd, req, arg) vm_ioctl_checked(fd, req, arg, #req)

/* Opens /dev/kvm, creates the VM with in-kernel irqchip and PIT, maps
 * `memory` bytes of RAM and registers them. Returns 0 or -errno (logged). */
int vm_create(struct vm *vm, uint64_t memory);
void vm_destroy(struct vm *vm);

/* Sets a GSI's level (ISA devices: 1 then 0 gives an edge). */
int vm_irq_line(struct vm *vm, unsigned gsi, int level);

/* Records why the VM must stop and wakes the main loop. Any thread. */
void vm_shutdown_request(struct vm_shutdown *sd, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
