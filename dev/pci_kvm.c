/*
 * The PCI platform on KVM (see pci_kvm.h). An MSI-X vector's eventfd gets
 * an MSI GSI route and an irqfd on that GSI, so a device thread's eventfd
 * write interrupts the guest without userspace; doorbells are ioeventfds.
 *
 * Threads: any vCPU thread or the main thread. The handle is the caller's
 * (an MSI-X vector's, under its pci_dev lock): it holds gsi + 1, so 0 means
 * "no route yet". The route table is serialised inside vm.c.
 */
#include "dev/pci_kvm.h"

#include "core/util.h"
#include "core/vm.h"

static struct vm *pci_kvm_vm(struct pci_platform *p)
{
	return container_of(p, struct pci_kvm, platform)->vm;
}

/* The irqfd is removed before its route, so the GSI is never raised while
 * it has no route (or, once reused, another vector's). */
static void pci_kvm_irqfd_del(struct vm *vm, int fd, unsigned *handle)
{
	if (!*handle)
		return;
	vm_irqfd(vm, fd, *handle - 1, false);
	vm_msi_route_del(vm, *handle - 1);
	*handle = 0;
}

static int pci_kvm_irqfd_set(struct pci_platform *p, int fd, const struct pci_msi_msg *msg,
			     unsigned *handle)
{
	struct vm *vm = pci_kvm_vm(p);
	unsigned gsi;
	int ret;

	if (!msg) {
		pci_kvm_irqfd_del(vm, fd, handle);
		return 0;
	}
	if (*handle)
		return vm_msi_route_set(vm, *handle - 1, msg->addr, msg->data);
	ret = vm_msi_route_add(vm, msg->addr, msg->data, &gsi);
	if (ret)
		return ret;
	ret = vm_irqfd(vm, fd, gsi, true);
	if (ret) {
		vm_msi_route_del(vm, gsi);
		return ret;
	}
	*handle = gsi + 1;
	return 0;
}

static int pci_kvm_ioeventfd_set(struct pci_platform *p, uint64_t gpa, unsigned len, int fd,
				 bool assign)
{
	return vm_ioeventfd(pci_kvm_vm(p), gpa, len, fd, assign);
}

static const struct pci_platform_ops pci_kvm_ops = {
	.irqfd_set = pci_kvm_irqfd_set,
	.ioeventfd_set = pci_kvm_ioeventfd_set,
};

void pci_kvm_init(struct pci_kvm *p, struct vm *vm)
{
	*p = (struct pci_kvm){ .platform = { .ops = &pci_kvm_ops }, .vm = vm };
}
