/*
 * A configured disk: its block backend, its virtio-blk device on a
 * virtio-pci function, and the IOThreads that serve its queues (the
 * configured ones it was given, or its own: one per queue up to the vCPU
 * count). Main thread only.
 */
#ifndef DEV_DISK_H
#define DEV_DISK_H

#include <stddef.h>
#include <stdio.h>

#include "core/config.h"
#include "core/iothread.h"
#include "core/mem.h"
#include "dev/pci.h"

struct disk;

struct disk_params {
	const struct disk_config *cfg;
	const char *config_path;		/* for messages */
	unsigned vcpus;
	struct iothread *const *iothreads;	/* vm_config.iothreads, started */
	struct mem_map *mem;
	struct pci_root *root;
};

/* Opens and closes the image: the checks disk_create's would fail. 0, or
 * -errno with "PATH: why" in err. */
int disk_check(const struct disk_config *cfg, char *err, size_t errlen);

/* Opens the image and plugs the device. Returns 0, or -errno with one line
 * for the user in err. */
int disk_create(struct disk **out, const struct disk_params *p, char *err, size_t errlen);

/* Stops the device (draining its I/O), prints its per-queue counters to f
 * if f is not NULL, and frees everything, its own IOThreads included. The
 * vCPUs must be stopped. */
void disk_destroy(struct disk *d, FILE *f);

#endif
