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
#include "core/mutex.h"

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

/* The GSI routing table: the irqchip pins plus MSI routes. KVM only takes
 * whole tables, so every change rewrites it, under lock. */
struct vm_gsi_routes {
	struct mutex lock;
	struct kvm_irq_routing *table;	/* lock */
	unsigned cap;			/* entries allocated; lock */
	uint64_t msi_used[4];		/* bitmap of MSI GSIs in use; lock */
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
	struct vm_gsi_routes routes;	/* KVM_SET_GSI_ROUTING table */
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

/*
 * MSI routes: a GSI that delivers the message (addr, data). Add allocates a
 * GSI above the irqchip pins; set changes its message; del frees it. Any
 * thread (vCPUs reprogram MSI-X tables); serialised by routes.lock, and
 * slow: each call rewrites the kernel's table. 0 or -errno (-ENOSPC when
 * no GSI is free; set: -EINVAL for a GSI that add did not hand out). A
 * refused add or set leaves the table as it was.
 */
int vm_msi_route_add(struct vm *vm, uint64_t addr, uint32_t data, unsigned *gsi);
int vm_msi_route_set(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
void vm_msi_route_del(struct vm *vm, unsigned gsi);

/* KVM_IRQFD: each write of eventfd fd raises gsi (or stops doing so). Any
 * thread. 0 or -errno. */
int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign);

/* KVM_IOEVENTFD on MMIO: guest writes of len bytes (0: any width) to addr
 * signal fd instead of exiting to userspace. Any thread. 0 or -errno. */
int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, int fd, bool assign);

/* Records why the VM must stop and wakes the main loop. Any thread. */
void vm_shutdown_request(struct vm_shutdown *sd, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
