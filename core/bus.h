/*
 * An address bus (one for port I/O, one for MMIO): ranges registered with
 * device ops, looked up by vCPU threads without any lock.
 *
 * The range table is an immutable sorted snapshot published with RCU.
 * Readers (bus_read/bus_write, any vCPU thread) take only rcu_read_lock.
 * Writers (bus_register/bus_unregister, setup or hot-plug, any thread) are
 * serialised by the bus's writer mutex, copy the table, publish the copy and
 * free the old one after a grace period.
 */
#ifndef CORE_BUS_H
#define CORE_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/mutex.h"

struct bus_dev;

/* Handlers run on vCPU threads, concurrently for different vCPUs and inside
 * an RCU read section: they must not block for long and must not call
 * synchronize_rcu. offset is relative to the registered base; len is 1, 2, 4
 * or 8. A device that owns state shared between vCPUs locks it itself. */
struct bus_dev_ops {
	void (*read)(struct bus_dev *dev, uint64_t offset, void *data, unsigned len);
	void (*write)(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len);
};

/* Embedded in each device; recover the device with container_of. */
struct bus_dev {
	const struct bus_dev_ops *ops;
	const char *name;
};

struct bus_table;

struct bus {
	const char *name;			/* "pio" or "mmio", for messages */
	struct bus_table *_Atomic table;	/* RCU-published snapshot */
	struct mutex writer_lock;		/* serialises writers only */
};

void bus_init(struct bus *bus, const char *name);
/* Frees the current table; no reader may be running (vCPUs joined). */
void bus_destroy(struct bus *bus);

/* Publishes [base, base+len). Returns 0, -EINVAL for an empty or
 * wrapping range, -EEXIST if it overlaps a registered range, -ENOMEM. */
int bus_register(struct bus *bus, uint64_t base, uint64_t len, struct bus_dev *dev);

/* Unpublishes every range of dev. Returns 0 or -ENOENT. Readers may still be
 * inside dev's handlers when this returns: the caller frees dev only after a
 * grace period (call_rcu or synchronize_rcu). */
int bus_unregister(struct bus *bus, struct bus_dev *dev);

/* Dispatch an access to the device whose range holds all of [addr,
 * addr+len). Return false when none does, including an access that
 * straddles a range's end (a read then gives all ones). Called inside or outside an RCU
 * read section; the caller's thread must be RCU-registered. */
bool bus_read(struct bus *bus, uint64_t addr, void *data, unsigned len);
bool bus_write(struct bus *bus, uint64_t addr, const void *data, unsigned len);

#endif
