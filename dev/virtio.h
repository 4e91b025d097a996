/*
 * A virtio device as its transport sees it (virtio 1.x): features, queues,
 * device config space, and the start/reset hooks. The transport
 * (virtio_pci.c) owns the register interface and the status state machine
 * and calls the device's ops; devices never call the transport's registers,
 * only the notify functions below.
 *
 * Threads: ops run on vCPU threads with the transport's lock held. Queue
 * configuration is written by the transport before DRIVER_OK and is
 * constant while the device runs; the device hands each queue to its
 * IOThread in start. virtio_notify_* may be called from any thread.
 */
#ifndef DEV_VIRTIO_H
#define DEV_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_F_VERSION_1 32
#define VIRTIO_F_ACCESS_PLATFORM 33
#define VIRTIO_RING_F_INDIRECT_DESC 28
#define VIRTIO_RING_F_EVENT_IDX 29

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

#define VIRTIO_NO_VECTOR 0xffff

/* One queue as the driver configured it. */
struct virtio_queue {
	uint16_t size;			/* driver's choice, <= max_queue_size */
	bool enabled;
	uint64_t desc, avail, used;	/* guest physical */
	uint16_t vector;		/* MSI-X vector or VIRTIO_NO_VECTOR */
	int kick_fd;			/* eventfd signalled by guest kicks */
};

struct virtio_dev;
struct virtio_transport;

struct virtio_dev_ops {
	/* Device config space; off + len <= config_size. */
	void (*config_read)(struct virtio_dev *d, unsigned off, void *data, unsigned len);
	void (*config_write)(struct virtio_dev *d, unsigned off, const void *data, unsigned len);
	/* DRIVER_OK: serve the enabled queues with d->features. Must not block
	 * (hand the queues to IOThreads with BHs). 0, or -errno: the transport
	 * sets NEEDS_RESET. */
	int (*start)(struct virtio_dev *d);
	/* The driver reset a started device: stop every queue and finish or
	 * abandon in-flight requests so that nothing touches guest memory or
	 * the rings afterwards, then call virtio_reset_done (any thread, may be
	 * before reset returns). Must not block. */
	void (*reset)(struct virtio_dev *d);
};

struct virtio_transport_ops {
	void (*notify)(struct virtio_transport *t, uint16_t vector);
	void (*needs_reset)(struct virtio_transport *t);
	void (*reset_done)(struct virtio_transport *t);
};

struct virtio_transport {
	const struct virtio_transport_ops *ops;
};

/* Set by the device before the transport is created; constant after. */
struct virtio_dev {
	const struct virtio_dev_ops *ops;
	const char *name;			/* for messages: "disk.data" */
	uint16_t device_id;			/* 2: block */
	uint64_t host_features;			/* device bits; the transport adds its own */
	unsigned num_queues;
	uint16_t max_queue_size;
	unsigned config_size;
	struct virtio_queue *queues;		/* num_queues, the device's array */
	/* Written by the transport under its lock; read by the device in
	 * start and afterwards. */
	uint64_t features;			/* negotiated */
	struct virtio_transport *transport;	/* set when the transport binds */
};

static inline bool virtio_has(const struct virtio_dev *d, unsigned bit)
{
	return d->features >> bit & 1;
}

/* Interrupts the driver for queue q (its vector). Any thread, lock-free. */
void virtio_notify_queue(struct virtio_dev *d, unsigned q);
/* Sets NEEDS_RESET and raises the config interrupt (a hostile ring). Any thread. */
void virtio_needs_reset(struct virtio_dev *d);
/* Completes a reset begun by ops->reset. Any thread. */
void virtio_reset_done(struct virtio_dev *d);

#endif
