/*
 * The PCI platform on KVM: MSI GSI routes plus irqfds for interrupts,
 * ioeventfds for doorbells. Thread rules as in pci_platform_ops; the GSI
 * table lives in struct vm under its own lock.
 */
#ifndef DEV_PCI_KVM_H
#define DEV_PCI_KVM_H

#include "dev/pci.h"

struct vm;

struct pci_kvm {
	struct pci_platform platform;
	struct vm *vm;
};

void pci_kvm_init(struct pci_kvm *p, struct vm *vm);

#endif
