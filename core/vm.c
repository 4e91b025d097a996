/*
 * KVM VM setup (see vm.h). Model: KVM selftests' checked ioctl wrappers and
 * kvmtool's kvm__init, unwound with one label per resource.
 */
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "core/util.h"

#define VM_TSS_ADDR 0xfffbd000
#define VM_IDENTITY_MAP_ADDR 0xfffbc000
#define VM_MAX_CPUID_ENTRIES 256

int __vm_ioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do
		ret = ioctl(fd, req, arg);
	while (ret < 0 && errno == EINTR && req != KVM_RUN);
	return ret < 0 ? -errno : ret;
}

int vm_ioctl_checked(int fd, unsigned long req, void *arg, const char *name)
{
	int ret = __vm_ioctl(fd, req, arg);

	if (ret < 0)
		log_msg("%s failed: %s", name, strerror(-ret));
	return ret;
}

static int vm_open_kvm(struct vm *vm)
{
	int ret;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		log_msg("cannot open /dev/kvm: %s", strerror(errno));
		return ret;
	}
	ret = vm_ioctl(vm->kvm_fd, KVM_GET_API_VERSION, NULL);
	if (ret >= 0 && ret != KVM_API_VERSION) {
		log_msg("KVM API version %d, expected %d", ret, KVM_API_VERSION);
		ret = -ENOTSUP;
	}
	if (ret >= 0)
		ret = vm_ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (ret < 0) {
		close(vm->kvm_fd);
		return ret;
	}
	vm->run_size = (size_t)ret;
	return 0;
}

static int vm_get_cpuid(struct vm *vm)
{
	vm->cpuid = calloc(1, sizeof(*vm->cpuid) +
			      VM_MAX_CPUID_ENTRIES * sizeof(vm->cpuid->entries[0]));
	if (!vm->cpuid)
		return -ENOMEM;
	vm->cpuid->nent = VM_MAX_CPUID_ENTRIES;
	return vm_ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid);
}

#define VM_IOAPIC_PINS 24
#define VM_PIC_IRQS 16

static struct kvm_irq_routing_entry vm_route(unsigned gsi, unsigned chip, unsigned pin)
{
	return (struct kvm_irq_routing_entry){
		.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
		.u.irqchip = { .irqchip = chip, .pin = pin },
	};
}

/* KVM's default routing sends GSI 0 (the PIT) to IOAPIC pin 0; a PC wires
 * it to pin 2, which is what the MADT's IRQ0 -> GSI 2 override tells the
 * guest. Every other ISA IRQ keeps its PIC line and IOAPIC pin. */
static int vm_set_irq_routing(struct vm *vm)
{
	struct kvm_irq_routing *r;
	unsigned n = 0;
	int ret;

	r = calloc(1, sizeof(*r) + (VM_IOAPIC_PINS + VM_PIC_IRQS) * sizeof(r->entries[0]));
	if (!r)
		return -ENOMEM;
	for (unsigned gsi = 0; gsi < VM_PIC_IRQS; gsi++)
		if (gsi != 2)
			r->entries[n++] = vm_route(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
								: KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
	for (unsigned gsi = 0; gsi < VM_IOAPIC_PINS; gsi++)
		if (gsi != 2)
			r->entries[n++] = vm_route(gsi, KVM_IRQCHIP_IOAPIC, gsi ? gsi : 2);
	r->nr = n;
	ret = vm_ioctl(vm->fd, KVM_SET_GSI_ROUTING, r);
	free(r);
	return ret;
}

static int vm_create_irqchip(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t identity = VM_IDENTITY_MAP_ADDR;
	int ret;

	ret = vm_ioctl(vm->fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)VM_TSS_ADDR);
	/* Only VMX uses the identity map; other vendors reject it harmlessly. */
	if (!ret)
		__vm_ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &identity);
	if (!ret)
		ret = vm_ioctl(vm->fd, KVM_CREATE_IRQCHIP, NULL);
	if (!ret)
		ret = vm_set_irq_routing(vm);
	if (!ret)
		ret = vm_ioctl(vm->fd, KVM_CREATE_PIT2, &pit);
	return ret;
}

static int vm_add_slot(const struct mem_region *r, void *arg)
{
	struct vm *vm = arg;
	struct kvm_userspace_memory_region slot = {
		.slot = r->slot,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	return vm_ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &slot);
}

int vm_create(struct vm *vm, uint64_t memory)
{
	int ret;

	*vm = (struct vm){ .kvm_fd = -1, .fd = -1 };
	ret = vm_open_kvm(vm);
	if (ret)
		return ret;
	ret = vm_get_cpuid(vm);
	if (ret < 0)
		goto err_kvm;
	ret = vm->fd = vm_ioctl(vm->kvm_fd, KVM_CREATE_VM, NULL);
	if (ret < 0)
		goto err_kvm;
	ret = vm_create_irqchip(vm);
	if (ret)
		goto err_vm;
	ret = mem_init(&vm->mem, memory);
	if (ret) {
		log_msg("cannot map %llu bytes of guest RAM: %s",
			(unsigned long long)memory, strerror(-ret));
		goto err_vm;
	}
	ret = mem_for_each(&vm->mem, vm_add_slot, vm);
	if (ret)
		goto err_mem;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	return 0;
err_mem:
	mem_destroy(&vm->mem);
err_vm:
	close(vm->fd);
err_kvm:
	free(vm->cpuid);
	close(vm->kvm_fd);
	return ret;
}

void vm_destroy(struct vm *vm)
{
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	close(vm->fd);
	mem_destroy(&vm->mem);
	free(vm->cpuid);
	close(vm->kvm_fd);
}

int vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };

	return vm_ioctl(vm->fd, KVM_IRQ_LINE, &irq);
}

void vm_shutdown_request(struct vm_shutdown *sd, int status, const char *fmt, ...)
{
	va_list ap;

	if (atomic_flag_test_and_set(&sd->claimed))
		return;
	sd->status = status;
	va_start(ap, fmt);
	vsnprintf(sd->reason, sizeof(sd->reason), fmt, ap);
	va_end(ap);
	/* Release: status and reason are visible to whoever sees `requested`
	 * (pairs with the acquire load in the main loop's shutdown handler). */
	atomic_store_explicit(&sd->requested, true, memory_order_release);
	if (sd->notify)
		sd->notify(sd);
}
