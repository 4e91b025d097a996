/*
 * PCI: one root bus (segment 0, bus 0) reached through configuration
 * mechanism #1 (ports 0xcf8/0xcfc) and ECAM (MMIO, described by the ACPI
 * MCFG), with 32-bit memory BARs placed in the MMIO window that the DSDT's
 * PCI0 _CRS gives the guest.
 *
 * Threads: config space and BAR accesses come from any vCPU thread. Each
 * function's config space is guarded by its own lock; BAR accesses dispatch
 * through the MMIO bus (RCU, lock-free) straight to the device's ops.
 * pci_root_create/pci_dev_add/pci_dev_del run on the main thread at setup
 * and teardown.
 *
 * The platform ops connect devices to the VM's interrupt controller and
 * doorbells: KVM irqfd/ioeventfd in the vmm (pci_kvm.h), the test driver's
 * own tables in tests. Devices never call KVM directly.
 */
#ifndef DEV_PCI_H
#define DEV_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "core/bus.h"
#include "core/mem.h"
#include "core/mutex.h"

#define PCI_CONF1_PORT 0xcf8		/* address at 0xcf8, data at 0xcfc..0xcff */
#define PCI_CONF1_LEN 8
#define PCI_ECAM_BASE MEM_PCI_ECAM_BASE	/* bus 0 only: 32 slots x 8 functions x 4 KiB */
#define PCI_ECAM_SIZE MEM_PCI_ECAM_SIZE
#define PCI_MMIO_BASE MEM_PCI_HOLE_START	/* 32-bit BAR window */
#define PCI_MMIO_SIZE (PCI_ECAM_BASE - PCI_MMIO_BASE)
#define PCI_CFG_SIZE 4096		/* PCIe extended config space */
#define PCI_MAX_BARS 6
#define PCI_MAX_SLOTS 32
#define PCI_BAR_UNMAPPED UINT64_MAX

/* An MSI message: what the device writes to raise an interrupt. */
struct pci_msi_msg {
	uint64_t addr;
	uint32_t data;
};

struct pci_platform;

struct pci_platform_ops {
	/*
	 * Makes every write of eventfd `fd` deliver msg (KVM: an MSI GSI route
	 * plus an irqfd). Called again for the same fd when msg changes; msg
	 * NULL disconnects fd. *handle is 0 for a new fd and is the platform's
	 * to set and reuse on later calls. Any vCPU thread (MSI-X table
	 * writes), or the main thread; serialised by the platform. 0 or -errno.
	 */
	int (*irqfd_set)(struct pci_platform *p, int fd, const struct pci_msi_msg *msg,
			 unsigned *handle);
	/*
	 * Makes guest writes to [gpa, gpa+len) signal eventfd fd instead of
	 * reaching the MMIO bus (KVM ioeventfd, any data; len 0 = any width),
	 * or removes that when !assign. Any vCPU thread or the main thread.
	 * 0 or -errno.
	 */
	int (*ioeventfd_set)(struct pci_platform *p, uint64_t gpa, unsigned len, int fd,
			     bool assign);
};

struct pci_platform {
	const struct pci_platform_ops *ops;
};

struct pci_dev;

struct pci_dev_ops {
	/* BAR accesses: vCPU threads, concurrently, inside an RCU read
	 * section. off is relative to the BAR's start; len 1, 2, 4 or 8. */
	void (*bar_read)(struct pci_dev *d, unsigned bar, uint64_t off, void *data, unsigned len);
	void (*bar_write)(struct pci_dev *d, unsigned bar, uint64_t off, const void *data,
			  unsigned len);
	/* Optional. BAR `bar` now decodes at new_gpa (PCI_BAR_UNMAPPED: no
	 * longer decodes; old_gpa likewise for "was not decoding"). The
	 * device moves its ioeventfds here. d->lock held; a vCPU thread, or
	 * the main thread in pci_dev_del. */
	void (*bar_moved)(struct pci_dev *d, unsigned bar, uint64_t old_gpa, uint64_t new_gpa);
	/* Optional. The guest wrote [off, off+len) of config space; pci.c has
	 * already stored the writable bits. Capabilities with side effects
	 * (MSI-X enable and mask) act here. d->lock held, vCPU thread. */
	void (*config_written)(struct pci_dev *d, unsigned off, unsigned len);
	/* Optional. The guest is about to read [off, off+len) of config
	 * space: capabilities whose bytes mirror device state (virtio's PCI
	 * configuration access window) refresh d->cfg here. d->lock held,
	 * vCPU thread. */
	void (*config_read)(struct pci_dev *d, unsigned off, unsigned len);
};

/* Where a BAR sits on the MMIO bus; private to pci.c. */
struct pci_bar_region {
	struct bus_dev bus;
	struct pci_dev *dev;
	unsigned bar;
};

/*
 * A PCI function, embedded in its device. The device fills it with
 * pci_dev_init, pci_bar_init and pci_cap_add before pci_dev_add; from then
 * on cfg, bar_gpa and the capability bytes change only under lock.
 */
struct pci_dev {
	const struct pci_dev_ops *ops;
	const char *name;
	struct pci_root *root;			/* set by pci_dev_add */
	struct pci_platform *platform;		/* = root's, set by pci_dev_add */
	unsigned slot;				/* set by pci_dev_add */
	struct mutex lock;			/* guards cfg and bar_gpa */
	uint8_t cfg[PCI_CFG_SIZE];		/* guest-visible config space */
	uint8_t wmask[PCI_CFG_SIZE];		/* bits the guest may change */
	uint8_t w1cmask[PCI_CFG_SIZE];		/* write-1-to-clear bits */
	uint64_t bar_size[PCI_MAX_BARS];	/* 0: BAR not implemented */
	uint64_t bar_gpa[PCI_MAX_BARS];		/* decoding at, or PCI_BAR_UNMAPPED */
	struct pci_bar_region bar_region[PCI_MAX_BARS];
	uint16_t cap_end;			/* next free config byte for pci_cap_add */
};

/* Header type 0 with the given ids and class (base << 16 | sub << 8 | prog-if).
 * No INTx pin: devices interrupt by MSI-X only. */
void pci_dev_init(struct pci_dev *d, const struct pci_dev_ops *ops, const char *name,
		  uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
		  uint16_t subsys_vendor, uint16_t subsys);

/* Declares BAR `bar` as 32-bit, non-prefetchable memory of `size` bytes (a
 * power of two, at least 4 KiB). Returns 0 or -EINVAL. */
int pci_bar_init(struct pci_dev *d, unsigned bar, uint64_t size);

/*
 * Appends a capability with id `id`; body (len bytes) follows the id and
 * next-pointer bytes. Returns the capability's config offset, or -ENOSPC.
 * The body bytes are read-only to the guest unless the caller then sets
 * their bits in d->wmask.
 */
int pci_cap_add(struct pci_dev *d, uint8_t id, const void *body, unsigned len);

struct pci_root;

/* Registers the config mechanisms on pio/mmio and puts the host bridge
 * (class 0x060000, no BARs) in slot 0, which Linux's mechanism #1 probe
 * looks for. platform stays owned by the caller and must outlive the root.
 * Returns 0 or -errno. */
int pci_root_create(struct pci_root **out, struct bus *pio, struct bus *mmio,
		    struct pci_platform *platform);
/* Unregisters; every function must have been removed. */
void pci_root_destroy(struct pci_root *r);

/*
 * Puts d in the next free slot (1, 2, ...), assigns its BARs addresses in
 * the MMIO window (naturally aligned) with decoding off until the guest sets
 * the command register's memory bit. Returns 0, -ENOSPC (no slot or window
 * space) or -errno.
 */
int pci_dev_add(struct pci_root *r, struct pci_dev *d);
/* Stops decoding (bar_moved to PCI_BAR_UNMAPPED) and frees the slot; the
 * BAR window space is not reused. The caller frees d (and may destroy
 * d->lock) after a grace period. */
void pci_dev_del(struct pci_root *r, struct pci_dev *d);

#endif
