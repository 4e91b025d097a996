/*
 * The virtio-pci transport (modern only, virtio 1.x section 4.1): one PCI
 * function per device with the common, notify, ISR and device config
 * capabilities in BAR 0 and MSI-X in BAR 1 (one vector per queue plus
 * config). Guest kicks are ioeventfds on the notify addresses, so they
 * reach the queue's IOThread without a vCPU exit.
 *
 * Threads: register accesses from any vCPU thread under the transport's
 * lock (the pci_dev lock); notifications from any thread, lock-free.
 */
#ifndef DEV_VIRTIO_PCI_H
#define DEV_VIRTIO_PCI_H

#include "dev/pci.h"
#include "dev/virtio.h"

struct virtio_pci;

/* Creates the function for dev and adds it to root. dev must outlive it.
 * Returns 0 or -errno. */
int virtio_pci_create(struct virtio_pci **out, struct pci_root *root, struct virtio_dev *dev);
/* Removes the function; the device must be reset or never started. */
void virtio_pci_destroy(struct virtio_pci *vp);

#endif
