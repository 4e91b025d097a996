/*
 * virtio-pci, modern interface only (virtio 1.x section 4.1).
 *
 * BAR 0 holds the common configuration, ISR, device configuration and
 * notification regions at fixed offsets; BAR 1 holds the MSI-X table and
 * PBA. Each queue's doorbell is an eventfd bound to its notify address by
 * the platform (KVM ioeventfd), so a guest kick wakes the queue's IOThread
 * without exiting to this file; a kick that does arrive here (another
 * access width, no ioeventfd) signals the same eventfd.
 *
 * Threads: registers are accessed from vCPU threads under pci.lock, which
 * guards every field marked "lock". The device's ops run under it too. The
 * transport ops (notify, needs_reset, reset_done) come from IOThreads and
 * touch only the atomic fields.
 *
 * Reset is asynchronous: writing 0 to device_status asks the device to stop
 * its queues; device_status keeps reading non-zero until the device reports
 * the drain done, which is what the spec tells drivers to wait for. No vCPU
 * ever waits for an IOThread.
 */
#include "dev/virtio_pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "dev/msix.h"
#include "rcu/rcu.h"

#define VPCI_VENDOR 0x1af4
#define VPCI_DEVICE_BASE 0x1040		/* + virtio device id */
#define VPCI_SUBSYS 0x1100
#define VPCI_CLASS_STORAGE 0x010000
#define VPCI_REVISION 1			/* modern-only devices */

#define VPCI_CAP_VENDOR 0x09
#define VPCI_CAP_COMMON 1
#define VPCI_CAP_NOTIFY 2
#define VPCI_CAP_ISR 3
#define VPCI_CAP_DEVICE 4
#define VPCI_CAP_PCI_CFG 5
/* The PCI configuration access capability's fields, from its start. */
#define VPCI_CFG_BAR 4
#define VPCI_CFG_OFFSET 8
#define VPCI_CFG_LENGTH 12
#define VPCI_CFG_DATA 16

#define VPCI_BAR_REGS 0
#define VPCI_BAR_MSIX 1
#define VPCI_COMMON 0x0000
#define VPCI_COMMON_LEN 0x38
#define VPCI_ISR 0x1000
#define VPCI_DEVICE_CFG 0x2000
#define VPCI_NOTIFY 0x3000
#define VPCI_NOTIFY_MULT 4
#define VPCI_BAR_REGS_SIZE 0x4000
#define VPCI_MAX_QUEUES ((VPCI_BAR_REGS_SIZE - VPCI_NOTIFY) / VPCI_NOTIFY_MULT)

#define VPCI_ISR_QUEUE 1
#define VPCI_ISR_CONFIG 2

struct virtio_pci {
	struct pci_dev pci;
	struct msix msix;
	struct virtio_transport transport;
	struct virtio_dev *dev;
	struct pci_root *root;
	uint32_t dfselect, gfselect;		/* lock */
	uint64_t driver_features;		/* lock */
	uint16_t queue_select;			/* lock */
	uint8_t status;				/* lock */
	bool started;				/* lock: ops->start was called */
	bool resetting;				/* lock: waiting for reset_done */
	_Atomic uint16_t config_vector;		/* written under lock, read anywhere */
	atomic_uint isr;			/* read-to-clear interrupt status */
	atomic_bool reset_complete;		/* set by reset_done, any thread */
	atomic_bool broken;			/* NEEDS_RESET, any thread */
	unsigned cfg_cap;			/* config offset of the PCI_CFG capability */
};

/* The common configuration structure's fields (virtio 1.x 4.1.4.3). */
enum vpci_field {
	F_DFSELECT, F_DFEATURE, F_GFSELECT, F_GFEATURE, F_CONFIG_VECTOR, F_NUM_QUEUES,
	F_STATUS, F_GENERATION, F_QSELECT, F_QSIZE, F_QVECTOR, F_QENABLE, F_QNOTIFY_OFF,
	F_QDESC, F_QAVAIL, F_QUSED, F_COUNT
};

static const struct {
	uint8_t off, width;
} vpci_fields[F_COUNT] = {
	[F_DFSELECT] = { 0x00, 4 }, [F_DFEATURE] = { 0x04, 4 },
	[F_GFSELECT] = { 0x08, 4 }, [F_GFEATURE] = { 0x0c, 4 },
	[F_CONFIG_VECTOR] = { 0x10, 2 }, [F_NUM_QUEUES] = { 0x12, 2 },
	[F_STATUS] = { 0x14, 1 }, [F_GENERATION] = { 0x15, 1 },
	[F_QSELECT] = { 0x16, 2 }, [F_QSIZE] = { 0x18, 2 },
	[F_QVECTOR] = { 0x1a, 2 }, [F_QENABLE] = { 0x1c, 2 },
	[F_QNOTIFY_OFF] = { 0x1e, 2 }, [F_QDESC] = { 0x20, 8 },
	[F_QAVAIL] = { 0x28, 8 }, [F_QUSED] = { 0x30, 8 },
};

static uint64_t vpci_offered(const struct virtio_pci *vp)
{
	return vp->dev->host_features | 1ULL << VIRTIO_F_VERSION_1;
}

static struct virtio_queue *vpci_selected(struct virtio_pci *vp) REQUIRES(vp->pci.lock)
{
	return vp->queue_select < vp->dev->num_queues ? &vp->dev->queues[vp->queue_select] : NULL;
}

static bool vpci_driver_ok(const struct virtio_pci *vp) REQUIRES(vp->pci.lock)
{
	return vp->status & VIRTIO_STATUS_DRIVER_OK;
}

static void vpci_drain_kicks(struct virtio_pci *vp)
{
	uint64_t v;

	for (unsigned i = 0; i < vp->dev->num_queues; i++)
		while (read(vp->dev->queues[i].kick_fd, &v, sizeof(v)) == sizeof(v))
			;
}

/* Back to the state after power-on: the device has stopped its queues. */
static void vpci_reset_finish(struct virtio_pci *vp) REQUIRES(vp->pci.lock)
{
	struct virtio_dev *d = vp->dev;

	for (unsigned i = 0; i < d->num_queues; i++) {
		struct virtio_queue *q = &d->queues[i];

		*q = (struct virtio_queue){ .size = d->max_queue_size, .vector = VIRTIO_NO_VECTOR,
					    .kick_fd = q->kick_fd };
	}
	vpci_drain_kicks(vp);
	d->features = 0;
	vp->driver_features = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->queue_select = 0;
	vp->status = 0;
	vp->started = vp->resetting = false;
	atomic_store(&vp->config_vector, VIRTIO_NO_VECTOR);
	atomic_store(&vp->isr, 0);
	atomic_store(&vp->broken, false);
}

static void vpci_reset(struct virtio_pci *vp) REQUIRES(vp->pci.lock)
{
	if (vp->resetting)
		return;
	if (!vp->started) {
		vpci_reset_finish(vp);
		return;
	}
	vp->resetting = true;
	atomic_store(&vp->reset_complete, false);
	vp->dev->ops->reset(vp->dev);
}

static uint8_t vpci_status(struct virtio_pci *vp) REQUIRES(vp->pci.lock)
{
	/* Acquire pairs with the release in vpci_reset_done: the device's
	 * last writes happen before we hand its state back to the driver. */
	if (vp->resetting && atomic_load_explicit(&vp->reset_complete, memory_order_acquire))
		vpci_reset_finish(vp);
	if (vp->resetting || !atomic_load(&vp->broken))
		return vp->status;
	return vp->status | VIRTIO_STATUS_NEEDS_RESET;
}

static bool vpci_features_ok(struct virtio_pci *vp) REQUIRES(vp->pci.lock)
{
	uint64_t f = vp->driver_features;

	if ((f & ~vpci_offered(vp)) || !(f >> VIRTIO_F_VERSION_1 & 1)) {
		log_msg("%s: driver features %#llx refused (offered %#llx, VERSION_1 required)",
			vp->dev->name, (unsigned long long)f, (unsigned long long)vpci_offered(vp));
		return false;
	}
	vp->dev->features = f;
	return true;
}

static void vpci_start(struct virtio_pci *vp) REQUIRES(vp->pci.lock)
{
	int ret;

	vp->started = true;
	ret = vp->dev->ops->start(vp->dev);
	if (ret) {
		log_msg("%s: cannot start: %s", vp->dev->name, strerror(-ret));
		vp->transport.ops->needs_reset(&vp->transport);
	}
}

static void vpci_set_status(struct virtio_pci *vp, uint8_t v) REQUIRES(vp->pci.lock)
{
	uint8_t added = v & ~vp->status;

	if (vp->resetting)
		return;
	if (v == 0) {
		vpci_reset(vp);
		return;
	}
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !vpci_features_ok(vp))
		v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	/* DRIVER_OK without FEATURES_OK is a driver bug: do not start. */
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK))
		v &= (uint8_t)~VIRTIO_STATUS_DRIVER_OK;
	vp->status = v | (vp->status & VIRTIO_STATUS_DRIVER_OK);
	if ((added & VIRTIO_STATUS_DRIVER_OK) && (v & VIRTIO_STATUS_DRIVER_OK))
		vpci_start(vp);
}

static uint64_t vpci_field_get(struct virtio_pci *vp, enum vpci_field f) REQUIRES(vp->pci.lock)
{
	struct virtio_queue *q = vpci_selected(vp);

	switch (f) {
	case F_DFSELECT: return vp->dfselect;
	case F_DFEATURE: return vp->dfselect < 2 ? (uint32_t)(vpci_offered(vp) >> 32 * vp->dfselect) : 0;
	case F_GFSELECT: return vp->gfselect;
	case F_GFEATURE: return vp->gfselect < 2 ? (uint32_t)(vp->driver_features >> 32 * vp->gfselect) : 0;
	case F_CONFIG_VECTOR: return atomic_load(&vp->config_vector);
	case F_NUM_QUEUES: return vp->dev->num_queues;
	case F_STATUS: return vpci_status(vp);
	case F_GENERATION: return 0;	/* config space changes atomically */
	case F_QSELECT: return vp->queue_select;
	case F_QSIZE: return q ? q->size : 0;
	case F_QVECTOR: return q ? q->vector : VIRTIO_NO_VECTOR;
	case F_QENABLE: return q ? q->enabled : 0;
	case F_QNOTIFY_OFF: return vp->queue_select;
	case F_QDESC: return q ? q->desc : 0;
	case F_QAVAIL: return q ? q->avail : 0;
	case F_QUSED: return q ? q->used : 0;
	default: return 0;
	}
}

static uint16_t vpci_vector(const struct virtio_pci *vp, uint64_t v)
{
	return v < vp->msix.n ? (uint16_t)v : VIRTIO_NO_VECTOR;
}

static void vpci_set_driver_features(struct virtio_pci *vp, uint64_t v) REQUIRES(vp->pci.lock)
{
	unsigned shift = 32 * vp->gfselect;

	if (vp->gfselect > 1 || (vp->status & VIRTIO_STATUS_FEATURES_OK))
		return;
	vp->driver_features = (vp->driver_features & ~(0xffffffffULL << shift)) | v << shift;
}

/* Queue fields are frozen once the device runs: IOThreads read them. */
static void vpci_queue_set(struct virtio_pci *vp, enum vpci_field f, uint64_t v)
	REQUIRES(vp->pci.lock)
{
	struct virtio_queue *q = vpci_selected(vp);

	if (!q || vpci_driver_ok(vp))
		return;
	switch (f) {
	case F_QSIZE: q->size = (uint16_t)v; break;
	case F_QVECTOR: q->vector = vpci_vector(vp, v); break;
	case F_QENABLE: q->enabled = q->enabled || v == 1; break;
	case F_QDESC: q->desc = v; break;
	case F_QAVAIL: q->avail = v; break;
	case F_QUSED: q->used = v; break;
	default: break;
	}
}

static void vpci_field_set(struct virtio_pci *vp, enum vpci_field f, uint64_t v)
	REQUIRES(vp->pci.lock)
{
	switch (f) {
	case F_DFSELECT: vp->dfselect = (uint32_t)v; break;
	case F_GFSELECT: vp->gfselect = (uint32_t)v; break;
	case F_GFEATURE: vpci_set_driver_features(vp, v); break;
	case F_CONFIG_VECTOR: atomic_store(&vp->config_vector, vpci_vector(vp, v)); break;
	case F_STATUS: vpci_set_status(vp, (uint8_t)v); break;
	case F_QSELECT: vp->queue_select = (uint16_t)v; break;
	default: vpci_queue_set(vp, f, v); break;
	}
}

/* The fields overlapping [off, off+len), as bytes, so that accesses of any
 * width (64-bit fields written as two halves) need no special cases. */
static void vpci_common_bytes(struct virtio_pci *vp, uint8_t *b, unsigned off, unsigned len)
	REQUIRES(vp->pci.lock)
{
	for (unsigned f = 0; f < F_COUNT; f++) {
		uint64_t v;

		if (vpci_fields[f].off >= off + len || vpci_fields[f].off + vpci_fields[f].width <= off)
			continue;
		v = vpci_field_get(vp, f);
		memcpy(b + vpci_fields[f].off, &v, vpci_fields[f].width);
	}
}

static void vpci_common_read(struct virtio_pci *vp, unsigned off, void *data, unsigned len)
	REQUIRES(vp->pci.lock)
{
	uint8_t b[VPCI_COMMON_LEN] = { 0 };

	vpci_common_bytes(vp, b, off, len);
	memcpy(data, b + off, len);
}

static void vpci_common_write(struct virtio_pci *vp, unsigned off, const void *data, unsigned len)
	REQUIRES(vp->pci.lock)
{
	uint8_t b[VPCI_COMMON_LEN] = { 0 };

	vpci_common_bytes(vp, b, off, len);
	memcpy(b + off, data, len);
	for (unsigned f = 0; f < F_COUNT; f++) {
		uint64_t v = 0;

		if (vpci_fields[f].off >= off + len || vpci_fields[f].off + vpci_fields[f].width <= off)
			continue;
		memcpy(&v, b + vpci_fields[f].off, vpci_fields[f].width);
		vpci_field_set(vp, f, v);
	}
}

static bool vpci_in(uint64_t off, unsigned len, uint64_t base, uint64_t size)
{
	return off >= base && off + len <= base + size;
}

static void vpci_regs_read(struct virtio_pci *vp, uint64_t off, void *data, unsigned len)
	REQUIRES(vp->pci.lock)
{
	unsigned isr;

	memset(data, 0, len);
	if (vpci_in(off, len, VPCI_COMMON, VPCI_COMMON_LEN)) {
		vpci_common_read(vp, (unsigned)off, data, len);
	} else if (vpci_in(off, len, VPCI_ISR, 1)) {
		isr = atomic_exchange(&vp->isr, 0);
		memcpy(data, &isr, 1);
	} else if (vpci_in(off, len, VPCI_DEVICE_CFG, vp->dev->config_size)) {
		vp->dev->ops->config_read(vp->dev, (unsigned)(off - VPCI_DEVICE_CFG), data, len);
	}
}

static void vpci_kick(struct virtio_pci *vp, uint64_t off)
{
	uint64_t q = (off - VPCI_NOTIFY) / VPCI_NOTIFY_MULT, one = 1;

	if (q < vp->dev->num_queues && write(vp->dev->queues[q].kick_fd, &one, sizeof(one)) < 0)
		log_msg("%s: queue %llu: kick lost: %s", vp->dev->name, (unsigned long long)q,
			strerror(errno));
}

static void vpci_regs_write(struct virtio_pci *vp, uint64_t off, const void *data, unsigned len)
	REQUIRES(vp->pci.lock)
{
	if (vpci_in(off, len, VPCI_COMMON, VPCI_COMMON_LEN))
		vpci_common_write(vp, (unsigned)off, data, len);
	else if (vpci_in(off, len, VPCI_DEVICE_CFG, vp->dev->config_size))
		vp->dev->ops->config_write(vp->dev, (unsigned)(off - VPCI_DEVICE_CFG), data, len);
	else if (vpci_in(off, len, VPCI_NOTIFY, VPCI_BAR_REGS_SIZE - VPCI_NOTIFY))
		vpci_kick(vp, off);
}

static void vpci_access(struct virtio_pci *vp, unsigned bar, uint64_t off, void *data,
			unsigned len, bool write) REQUIRES(vp->pci.lock)
{
	if (bar == VPCI_BAR_REGS && write)
		vpci_regs_write(vp, off, data, len);
	else if (bar == VPCI_BAR_REGS)
		vpci_regs_read(vp, off, data, len);
	else if (write)
		msix_table_write(&vp->msix, off, data, len);
	else
		msix_table_read(&vp->msix, off, data, len);
}

static void vpci_bar_read(struct pci_dev *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
	struct virtio_pci *vp = container_of(d, struct virtio_pci, pci);

	mutex_lock(&vp->pci.lock);
	vpci_access(vp, bar, off, data, len, false);
	mutex_unlock(&vp->pci.lock);
}

static void vpci_bar_write(struct pci_dev *d, unsigned bar, uint64_t off, const void *data,
			   unsigned len)
{
	struct virtio_pci *vp = container_of(d, struct virtio_pci, pci);

	mutex_lock(&vp->pci.lock);
	vpci_access(vp, bar, off, (void *)data, len, true);
	mutex_unlock(&vp->pci.lock);
}

/* Rebinds the doorbells' ioeventfds; kicks still work without them, through
 * vpci_kick, only slower. */
static void vpci_bar_moved(struct pci_dev *d, unsigned bar, uint64_t old_gpa, uint64_t new_gpa)
{
	struct virtio_pci *vp = container_of(d, struct virtio_pci, pci);
	struct pci_platform *p = d->platform;

	if (bar != VPCI_BAR_REGS)
		return;
	for (unsigned i = 0; i < vp->dev->num_queues; i++) {
		uint64_t off = VPCI_NOTIFY + (uint64_t)i * VPCI_NOTIFY_MULT;
		int fd = vp->dev->queues[i].kick_fd, ret;

		if (old_gpa != PCI_BAR_UNMAPPED)
			p->ops->ioeventfd_set(p, old_gpa + off, 2, fd, false);
		if (new_gpa == PCI_BAR_UNMAPPED)
			continue;
		ret = p->ops->ioeventfd_set(p, new_gpa + off, 2, fd, true);
		if (ret)
			log_msg("%s: queue %u: no ioeventfd, kicks will exit to the vmm: %s",
				vp->dev->name, i, strerror(-ret));
	}
}

static bool vpci_overlaps(unsigned off, unsigned len, unsigned start, unsigned n)
{
	return off < start + n && start < off + len;
}

/*
 * The PCI configuration access capability (virtio 1.x 4.1.4.9): a read or
 * write of its data window accesses `length` (1, 2 or 4) bytes at `offset`
 * of BAR `bar`, for drivers that cannot map the BARs.
 */
static void vpci_cfg_window(struct virtio_pci *vp, bool write) REQUIRES(vp->pci.lock)
{
	uint8_t *cap = vp->pci.cfg + vp->cfg_cap;
	uint32_t off, len;

	memcpy(&off, cap + VPCI_CFG_OFFSET, 4);
	memcpy(&len, cap + VPCI_CFG_LENGTH, 4);
	if ((len != 1 && len != 2 && len != 4) || off % len ||
	    cap[VPCI_CFG_BAR] > VPCI_BAR_MSIX ||
	    off + len > vp->pci.bar_size[cap[VPCI_CFG_BAR]])
		return;
	vpci_access(vp, cap[VPCI_CFG_BAR], off, cap + VPCI_CFG_DATA, len, write);
}

static void vpci_config_read(struct pci_dev *d, unsigned off, unsigned len)
{
	struct virtio_pci *vp = container_of(d, struct virtio_pci, pci);

	mutex_assert_held(&vp->pci.lock);
	if (vpci_overlaps(off, len, vp->cfg_cap + VPCI_CFG_DATA, 4))
		vpci_cfg_window(vp, false);
}

static void vpci_config_written(struct pci_dev *d, unsigned off, unsigned len)
{
	struct virtio_pci *vp = container_of(d, struct virtio_pci, pci);

	mutex_assert_held(&vp->pci.lock);
	msix_config_written(&vp->msix, off, len);
	if (vpci_overlaps(off, len, vp->cfg_cap + VPCI_CFG_DATA, 4))
		vpci_cfg_window(vp, true);
}

static const struct pci_dev_ops vpci_pci_ops = {
	.bar_read = vpci_bar_read,
	.bar_write = vpci_bar_write,
	.bar_moved = vpci_bar_moved,
	.config_written = vpci_config_written,
	.config_read = vpci_config_read,
};

static void vpci_notify(struct virtio_transport *t, uint16_t vector)
{
	struct virtio_pci *vp = container_of(t, struct virtio_pci, transport);

	msix_notify(&vp->msix, vector);
}

static void vpci_needs_reset(struct virtio_transport *t)
{
	struct virtio_pci *vp = container_of(t, struct virtio_pci, transport);

	if (atomic_exchange(&vp->broken, true))
		return;
	atomic_fetch_or(&vp->isr, VPCI_ISR_CONFIG);
	msix_notify(&vp->msix, atomic_load(&vp->config_vector));
}

static void vpci_reset_done(struct virtio_transport *t)
{
	struct virtio_pci *vp = container_of(t, struct virtio_pci, transport);

	/* Release pairs with the acquire in vpci_status. */
	atomic_store_explicit(&vp->reset_complete, true, memory_order_release);
}

static const struct virtio_transport_ops vpci_transport_ops = {
	.notify = vpci_notify,
	.needs_reset = vpci_needs_reset,
	.reset_done = vpci_reset_done,
};

static int vpci_add_cap(struct virtio_pci *vp, uint8_t type, uint8_t bar, uint32_t off,
			uint32_t len)
{
	/* struct virtio_pci_cap after cap_vndr/cap_next, plus the notify
	 * multiplier for the notify capability. */
	uint8_t body[18] = { type == VPCI_CAP_NOTIFY || type == VPCI_CAP_PCI_CFG ? 20 : 16, type,
			     bar };

	memcpy(body + 6, &off, 4);
	memcpy(body + 10, &len, 4);
	if (type == VPCI_CAP_NOTIFY) {
		uint32_t mult = VPCI_NOTIFY_MULT;

		memcpy(body + 14, &mult, 4);
	}
	return pci_cap_add(&vp->pci, VPCI_CAP_VENDOR, body, body[0] - 2u);
}

/* The driver picks bar, offset and length, and reads or writes the data. */
static int vpci_add_cfg_cap(struct virtio_pci *vp)
{
	int off = vpci_add_cap(vp, VPCI_CAP_PCI_CFG, 0, 0, 0);

	if (off < 0)
		return off;
	vp->cfg_cap = (unsigned)off;
	vp->pci.wmask[off + VPCI_CFG_BAR] = 0xff;
	memset(vp->pci.wmask + off + VPCI_CFG_OFFSET, 0xff, 12);
	return 0;
}

static uint64_t vpci_pow2(uint64_t v)
{
	uint64_t p = 4096;

	while (p < v)
		p <<= 1;
	return p;
}

static int vpci_init_function(struct virtio_pci *vp)
{
	struct virtio_dev *d = vp->dev;
	unsigned n_vec = d->num_queues + 1;
	int ret;

	pci_dev_init(&vp->pci, &vpci_pci_ops, d->name, VPCI_VENDOR,
		     (uint16_t)(VPCI_DEVICE_BASE + d->device_id), VPCI_CLASS_STORAGE,
		     VPCI_REVISION, VPCI_VENDOR, VPCI_SUBSYS);
	ret = pci_bar_init(&vp->pci, VPCI_BAR_REGS, VPCI_BAR_REGS_SIZE);
	if (!ret)
		ret = pci_bar_init(&vp->pci, VPCI_BAR_MSIX, vpci_pow2(msix_bar_size(n_vec)));
	if (!ret)
		ret = vpci_add_cap(vp, VPCI_CAP_COMMON, VPCI_BAR_REGS, VPCI_COMMON, VPCI_COMMON_LEN);
	if (ret >= 0)
		ret = vpci_add_cap(vp, VPCI_CAP_ISR, VPCI_BAR_REGS, VPCI_ISR, 1);
	if (ret >= 0)
		ret = vpci_add_cap(vp, VPCI_CAP_DEVICE, VPCI_BAR_REGS, VPCI_DEVICE_CFG,
				   d->config_size);
	if (ret >= 0)
		ret = vpci_add_cap(vp, VPCI_CAP_NOTIFY, VPCI_BAR_REGS, VPCI_NOTIFY,
				   d->num_queues * VPCI_NOTIFY_MULT);
	if (ret >= 0)
		ret = vpci_add_cfg_cap(vp);
	if (ret >= 0)
		ret = msix_init(&vp->msix, &vp->pci, n_vec, VPCI_BAR_MSIX, 0);
	return ret < 0 ? ret : 0;
}

static void vpci_close_kicks(struct virtio_dev *d)
{
	for (unsigned i = 0; i < d->num_queues; i++)
		if (d->queues[i].kick_fd >= 0)
			close(d->queues[i].kick_fd);
}

static int vpci_open_kicks(struct virtio_dev *d)
{
	for (unsigned i = 0; i < d->num_queues; i++)
		d->queues[i].kick_fd = -1;
	for (unsigned i = 0; i < d->num_queues; i++) {
		d->queues[i].kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (d->queues[i].kick_fd < 0) {
			int ret = -errno;

			vpci_close_kicks(d);
			return ret;
		}
	}
	return 0;
}

int virtio_pci_create(struct virtio_pci **out, struct pci_root *root, struct virtio_dev *dev)
{
	struct virtio_pci *vp;
	int ret;

	if (dev->num_queues == 0 || dev->num_queues > VPCI_MAX_QUEUES ||
	    dev->config_size > VPCI_NOTIFY - VPCI_DEVICE_CFG)
		return -EINVAL;
	vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	vp->dev = dev;
	vp->root = root;
	vp->transport.ops = &vpci_transport_ops;
	dev->transport = &vp->transport;
	ret = vpci_open_kicks(dev);
	if (ret)
		goto err_free;
	ret = vpci_init_function(vp);
	if (ret)
		goto err_kicks;
	mutex_lock(&vp->pci.lock);
	vpci_reset_finish(vp);
	mutex_unlock(&vp->pci.lock);
	ret = pci_dev_add(root, &vp->pci);
	if (ret)
		goto err_msix;
	*out = vp;
	return 0;
err_msix:
	msix_destroy(&vp->msix);
err_kicks:
	vpci_close_kicks(dev);
err_free:
	free(vp);
	return ret;
}

/* Teardown: stops a running device the way a driver reset would, then
 * waits for the drain (outside any loop callback, so waiting is allowed). */
static void vpci_stop(struct virtio_pci *vp)
{
	struct timespec ms = { 0, 1000000 };
	bool wait;

	mutex_lock(&vp->pci.lock);
	vpci_reset(vp);
	wait = vp->resetting;
	mutex_unlock(&vp->pci.lock);
	while (wait && !atomic_load_explicit(&vp->reset_complete, memory_order_acquire))
		nanosleep(&ms, NULL);
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	vpci_stop(vp);
	pci_dev_del(vp->root, &vp->pci);
	synchronize_rcu();
	msix_destroy(&vp->msix);
	vpci_close_kicks(vp->dev);
	vp->dev->transport = NULL;
	free(vp);
}
