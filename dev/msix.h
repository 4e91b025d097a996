/*
 * MSI-X for a PCI function: the capability, the vector table and the
 * pending-bit array in a BAR, and one eventfd per vector that device
 * threads signal to interrupt the guest (KVM irqfd in the vmm).
 *
 * Threads: table and capability accesses come from vCPU threads with the
 * function's pci_dev lock held (the owner forwards them from its
 * pci_dev_ops). msix_notify is called from any thread (IOThreads) and takes
 * no lock: it reads each vector's mask state atomically.
 */
#ifndef DEV_MSIX_H
#define DEV_MSIX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "dev/pci.h"

#define MSIX_MAX_VECTORS 2048
#define MSIX_NO_VECTOR 0xffff		/* virtio's VIRTIO_MSI_NO_VECTOR */

struct msix_vector {
	uint32_t table[4];		/* addr lo, addr hi, data, control; pci lock */
	int fd;				/* eventfd; signalled by msix_notify */
	unsigned handle;		/* the platform's, for irqfd_set */
	atomic_bool masked;		/* vector or function masked, or MSI-X off */
	atomic_bool pending;		/* a notify arrived while masked */
	bool connected;			/* irqfd_set holds this vector's msg */
	struct pci_msi_msg msg;		/* what the platform delivers while connected; pci lock */
};

struct msix {
	struct pci_dev *pci;
	unsigned n;			/* vectors */
	unsigned bar;			/* table at table_off, PBA at pba_off */
	uint32_t table_off, pba_off;
	unsigned cap;			/* config offset of the capability */
	struct msix_vector *vec;
	unsigned errors;		/* irqfd_set failures, to rate-limit the log; pci lock */
};

/* Bytes of BAR space the table and PBA of n vectors need. */
uint64_t msix_bar_size(unsigned n);

/*
 * Adds the capability to d (before pci_dev_add) with n vectors whose table
 * starts at table_off (8-byte aligned) in BAR `bar` and PBA follows it;
 * creates the eventfds. Every vector starts masked with no message.
 * Returns 0, -EINVAL (n, bar or table_off), -ENOSPC (config space full) or
 * -errno.
 */
int msix_init(struct msix *m, struct pci_dev *d, unsigned n, unsigned bar, uint32_t table_off);
/* Disconnects and closes the eventfds. */
void msix_destroy(struct msix *m);

/* Forwarded by the owner: a BAR access within [table_off, table_off +
 * msix_bar_size(n)) (off relative to table_off), and every config write.
 * pci lock held. Only 4- and 8-byte naturally aligned table and PBA
 * accesses do anything; others read as zero and are ignored, as are PBA
 * writes. A table or capability change that opens a vector (enabled,
 * unmasked, non-zero address) connects its eventfd through the platform's
 * irqfd_set and delivers its pending bit; disabling MSI-X disconnects. */
void msix_table_read(struct msix *m, uint64_t off, void *data, unsigned len);
void msix_table_write(struct msix *m, uint64_t off, const void *data, unsigned len);
void msix_config_written(struct msix *m, unsigned off, unsigned len);

/* Raises vector v: signals its eventfd, or sets its pending bit while it is
 * masked (delivered on unmask). v >= n (MSIX_NO_VECTOR) is ignored. Any
 * thread, lock-free. */
void msix_notify(struct msix *m, unsigned v);

/* Clears every vector to its reset state (masked, no message, not
 * pending), clears MSI-X enable and function mask, and disconnects: a
 * PCI reset, not a virtio one. pci lock held. */
void msix_reset(struct msix *m);

#endif
