/*
 * The PCI platform of the tests: plays KVM for devices on a pci_root when
 * there is no VM. It records what KVM would be told, ioeventfds (guest
 * write at gpa -> eventfd) and irqfds (eventfd -> MSI message), so that the
 * test driver (virtio_guest.h) kicks a queue by writing the eventfd that
 * the guest's write would have signalled, and waits for an interrupt on the
 * eventfd that delivers the message it programmed.
 *
 * It refuses what KVM refuses: a duplicate ioeventfd (-EEXIST), removing
 * one that is not there (-ENOENT), a width other than 0, 1, 2, 4 or 8
 * (-EINVAL), a negative fd (-EBADF).
 *
 * Threads: the ops run on whichever thread the device calls them from (the
 * driver's thread inside a bus access, or the main thread); lookups from
 * the driver's thread. One mutex guards the tables.
 */
#ifndef TESTS_LIB_GUEST_PLATFORM_H
#define TESTS_LIB_GUEST_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/mutex.h"
#include "dev/pci.h"

#define GUEST_PLATFORM_MAX 256

struct guest_platform_ioeventfd {
	uint64_t gpa;
	unsigned len;			/* 0: any width */
	int fd;
};

struct guest_platform_irqfd {
	int fd;
	bool connected;			/* msg is delivered by writes of fd */
	struct pci_msi_msg msg;
};

struct guest_platform {
	struct pci_platform platform;
	struct mutex lock;		/* guards everything below */
	unsigned n_ioeventfd, n_irqfd;
	struct guest_platform_ioeventfd ioeventfd[GUEST_PLATFORM_MAX];
	struct guest_platform_irqfd irqfd[GUEST_PLATFORM_MAX];	/* handle = index + 1 */
};

void guest_platform_init(struct guest_platform *p);
void guest_platform_destroy(struct guest_platform *p);

/* The eventfd KVM would signal for a guest write of len bytes at gpa, or
 * -1 when that write would exit to userspace. Any thread. */
int guest_platform_ioeventfd(struct guest_platform *p, uint64_t gpa, unsigned len);

/* The eventfd whose writes deliver msg right now, or -1. Any thread. */
int guest_platform_irqfd(struct guest_platform *p, const struct pci_msi_msg *msg);

#endif
