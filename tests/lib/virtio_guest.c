/*
 * The tests' virtio-pci driver (see virtio_guest.h). It follows what a
 * Linux guest does, in the same order, so the device sees the accesses it
 * will see from a real guest: conf1 enumeration, BAR sizing, capability
 * walk, the status dance, MSI-X table programming, split rings with a
 * free list, kick and interrupt suppression with full barriers between the
 * index store and the event load (the pairs are the device's virtq.c).
 *
 * Threads: one driving thread per struct virtio_guest, RCU-registered, or
 * one per queue once started (see virtio_guest.h): a queue's calls touch
 * only its own struct virtio_guest_queue, the immutable probe results and
 * features, the platform's tables (under their mutex) and the heap
 * pointer (compare-and-swap).
 * The rings are shared with the device's IOThreads: indices are published
 * with release stores and read with acquire loads; everything else in a
 * chain is written before its avail index is published.
 */
#include "tests/lib/virtio_guest.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "dev/virtio.h"
#include "dev/virtq.h"

#define PCI_VENDOR_VIRTIO 0x1af4
#define PCI_DEVICE_VIRTIO_BLK 0x1042
#define PCI_COMMAND 0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_STATUS 0x06
#define PCI_STATUS_CAP_LIST 0x10
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define PCI_CAP_VENDOR 0x09
#define PCI_CAP_MSIX 0x11
#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_MASKALL 0x4000
#define MSI_ADDR 0xfee00000ULL
#define MSI_DATA_BASE 0x40		/* vector v sends data MSI_DATA_BASE + v */
#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR 3
#define VIRTIO_PCI_CAP_DEVICE 4
#define VIRTIO_PCI_CAP_PCI_CFG 5

/* Between two polls of the device. */
static void virtio_guest_pause(struct virtio_guest *g)
{
	struct timespec ts = { .tv_nsec = 20000 };

	if (g->idle)
		g->idle(g);
	else
		nanosleep(&ts, NULL);
}

/* Registers and config space. */

uint64_t virtio_guest_mmio_read(struct virtio_guest *g, uint64_t gpa, unsigned len)
{
	uint64_t v = 0;

	if (!bus_read(g->mmio, gpa, &v, len))
		v = len == 8 ? UINT64_MAX : (1ULL << (len * 8)) - 1;
	return v;
}

void virtio_guest_mmio_write(struct virtio_guest *g, uint64_t gpa, uint64_t val, unsigned len)
{
	bus_write(g->mmio, gpa, &val, len);
}

static void virtio_guest_conf1_select(struct virtio_guest *g, unsigned slot, unsigned off)
{
	uint32_t addr = 0x80000000u | slot << 11 | (off & 0xfc);

	bus_write(g->pio, PCI_CONF1_PORT, &addr, 4);
}

static uint32_t virtio_guest_slot_read(struct virtio_guest *g, unsigned slot, unsigned off,
				       unsigned len)
{
	uint32_t v = 0;

	virtio_guest_conf1_select(g, slot, off);
	if (!bus_read(g->pio, PCI_CONF1_PORT + 4 + (off & 3), &v, len))
		v = len == 4 ? UINT32_MAX : (1u << (len * 8)) - 1;
	return v;
}

uint32_t virtio_guest_pci_read(struct virtio_guest *g, unsigned off, unsigned len)
{
	return virtio_guest_slot_read(g, g->slot, off, len);
}

void virtio_guest_pci_write(struct virtio_guest *g, unsigned off, uint32_t val, unsigned len)
{
	virtio_guest_conf1_select(g, g->slot, off);
	bus_write(g->pio, PCI_CONF1_PORT + 4 + (off & 3), &val, len);
}

uint64_t virtio_guest_common_read(struct virtio_guest *g, unsigned off, unsigned len)
{
	if (len == 8)
		return virtio_guest_mmio_read(g, g->common + off, 4) |
		       virtio_guest_mmio_read(g, g->common + off + 4, 4) << 32;
	return virtio_guest_mmio_read(g, g->common + off, len);
}

void virtio_guest_common_write(struct virtio_guest *g, unsigned off, uint64_t val, unsigned len)
{
	if (len == 8) {
		virtio_guest_mmio_write(g, g->common + off, (uint32_t)val, 4);
		virtio_guest_mmio_write(g, g->common + off + 4, val >> 32, 4);
		return;
	}
	virtio_guest_mmio_write(g, g->common + off, val, len);
}

uint64_t virtio_guest_config_read(struct virtio_guest *g, unsigned off, unsigned len)
{
	if (len == 8)
		return virtio_guest_mmio_read(g, g->device + off, 4) |
		       virtio_guest_mmio_read(g, g->device + off + 4, 4) << 32;
	return virtio_guest_mmio_read(g, g->device + off, len);
}

uint8_t virtio_guest_status(struct virtio_guest *g)
{
	return (uint8_t)virtio_guest_common_read(g, VIRTIO_GUEST_DEVICE_STATUS, 1);
}

static void virtio_guest_add_status(struct virtio_guest *g, uint8_t bits)
{
	virtio_guest_common_write(g, VIRTIO_GUEST_DEVICE_STATUS, virtio_guest_status(g) | bits, 1);
}

/* Guest RAM. */

/* Lock-free: drivers of different queues may allocate at once (a
 * request's first submit allocates its header). */
uint64_t virtio_guest_alloc(struct virtio_guest *g, uint64_t size, uint64_t align)
{
	uint64_t old = __atomic_load_n(&g->heap, __ATOMIC_RELAXED), gpa;

	do {
		gpa = ALIGN_UP(old, align);
		if (gpa > g->heap_end || g->heap_end - gpa < size)
			return 0;
	} while (!__atomic_compare_exchange_n(&g->heap, &old, gpa + size, true, __ATOMIC_RELAXED,
					      __ATOMIC_RELAXED));
	return gpa;
}

void *virtio_guest_hva(struct virtio_guest *g, uint64_t gpa, uint64_t len)
{
	return mem_translate(g->mem, gpa, len);
}

/* Probe: find the function, its BARs and capabilities. */

static int virtio_guest_find(struct virtio_guest *g, uint16_t device)
{
	unsigned slot;

	for (slot = 0; slot < PCI_MAX_SLOTS; slot++) {
		if (virtio_guest_slot_read(g, slot, 0, 2) == PCI_VENDOR_VIRTIO &&
		    virtio_guest_slot_read(g, slot, 2, 2) == device) {
			g->slot = slot;
			return 0;
		}
	}
	return -ENODEV;
}

/* Reads BAR bar's address and sizes it with the all-ones write, as a
 * guest's PCI core does; decoding is still off. */
static int virtio_guest_bar(struct virtio_guest *g, unsigned bar)
{
	unsigned off = PCI_BAR0 + 4 * bar;
	uint32_t v = virtio_guest_pci_read(g, off, 4), mask;

	if (v & 0x7)		/* I/O space or a 64-bit BAR */
		return -EINVAL;
	virtio_guest_pci_write(g, off, UINT32_MAX, 4);
	mask = virtio_guest_pci_read(g, off, 4) & ~0xfu;
	virtio_guest_pci_write(g, off, v, 4);
	if (!mask)
		return -EINVAL;
	g->bar[bar] = v & ~0xfu;
	g->bar_size[bar] = (uint32_t)(~mask + 1);
	return 0;
}

/* Where a virtio vendor capability points: gpa, or 0 when it lies
 * outside its BAR. */
static uint64_t virtio_guest_cap_gpa(struct virtio_guest *g, unsigned cap, uint32_t *len)
{
	unsigned bar = virtio_guest_pci_read(g, cap + 4, 1);
	uint32_t off = virtio_guest_pci_read(g, cap + 8, 4);

	*len = virtio_guest_pci_read(g, cap + 12, 4);
	if (bar > 1 || off > g->bar_size[bar] || g->bar_size[bar] - off < *len)
		return 0;
	return g->bar[bar] + off;
}

static void virtio_guest_vendor_cap(struct virtio_guest *g, unsigned cap)
{
	unsigned type = virtio_guest_pci_read(g, cap + 3, 1);
	uint32_t len;
	uint64_t gpa = virtio_guest_cap_gpa(g, cap, &len);

	if (type == VIRTIO_PCI_CAP_PCI_CFG && !g->pci_cfg_cap)
		g->pci_cfg_cap = cap;
	if (!gpa)
		return;
	if (type == VIRTIO_PCI_CAP_COMMON && !g->common && len >= VIRTIO_GUEST_COMMON_LEN)
		g->common = gpa;
	if (type == VIRTIO_PCI_CAP_NOTIFY && !g->notify) {
		g->notify = gpa;
		g->notify_mult = virtio_guest_pci_read(g, cap + 16, 4);
	}
	if (type == VIRTIO_PCI_CAP_ISR && !g->isr && len >= 1)
		g->isr = gpa;
	if (type == VIRTIO_PCI_CAP_DEVICE && !g->device) {
		g->device = gpa;
		g->device_len = len;
	}
}

static void virtio_guest_msix_cap(struct virtio_guest *g, unsigned cap)
{
	uint16_t ctrl = virtio_guest_pci_read(g, cap + 2, 2);
	uint32_t table = virtio_guest_pci_read(g, cap + 4, 4);

	if (g->msix_cap || (table & 7) > 1)
		return;
	g->msix_cap = cap;
	g->msix_n = (ctrl & 0x7ff) + 1;
	g->msix_table = g->bar[table & 7] + (table & ~7u);
}

/* Walks the capability list, at most 48 entries (a loop ends there). */
static int virtio_guest_caps(struct virtio_guest *g)
{
	unsigned cap, i;

	if (!(virtio_guest_pci_read(g, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		return -EINVAL;
	cap = virtio_guest_pci_read(g, PCI_CAP_PTR, 1) & ~3u;
	for (i = 0; cap >= 0x40 && i < 48; i++) {
		unsigned id = virtio_guest_pci_read(g, cap, 1);

		if (id == PCI_CAP_VENDOR)
			virtio_guest_vendor_cap(g, cap);
		else if (id == PCI_CAP_MSIX)
			virtio_guest_msix_cap(g, cap);
		cap = virtio_guest_pci_read(g, cap + 1, 1) & ~3u;
	}
	if (!g->common || !g->notify || !g->isr || !g->msix_cap)
		return -EINVAL;
	return 0;
}

int virtio_guest_probe(struct virtio_guest *g, const struct virtio_guest_params *p)
{
	int ret;

	*g = (struct virtio_guest){ .mem = p->mem, .pio = p->pio, .mmio = p->mmio,
				    .platform = p->platform, .heap = p->heap,
				    .heap_end = p->heap + p->heap_size };
	ret = virtio_guest_find(g, p->pci_device ? p->pci_device : PCI_DEVICE_VIRTIO_BLK);
	if (ret)
		return ret;
	if (virtio_guest_bar(g, 0) || virtio_guest_bar(g, 1))
		return -EINVAL;
	virtio_guest_pci_write(g, PCI_COMMAND, virtio_guest_pci_read(g, PCI_COMMAND, 2) |
			       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
	return virtio_guest_caps(g);
}

static void virtio_guest_queue_free(struct virtio_guest_queue *vq)
{
	free(vq->next);
	free(vq->ndesc);
	free(vq->cookie);
	vq->next = vq->ndesc = NULL;
	vq->cookie = NULL;
	vq->size = 0;
}

void virtio_guest_destroy(struct virtio_guest *g)
{
	unsigned i;

	for (i = 0; i < VIRTIO_GUEST_MAX_QUEUES; i++)
		virtio_guest_queue_free(&g->q[i]);
}

/* Reset and the status dance. */

int virtio_guest_reset(struct virtio_guest *g)
{
	uint64_t deadline = clock_ns() + VIRTIO_GUEST_TIMEOUT_MS * 1000000ULL;

	virtio_guest_common_write(g, VIRTIO_GUEST_DEVICE_STATUS, 0, 1);
	g->reset_polls = 0;
	while (virtio_guest_status(g) != 0) {
		if (clock_ns() > deadline)
			return -ETIMEDOUT;
		g->reset_polls++;
		virtio_guest_pause(g);
	}
	return 0;
}

static uint64_t virtio_guest_read_features(struct virtio_guest *g)
{
	uint64_t lo, hi;

	virtio_guest_common_write(g, VIRTIO_GUEST_DEVICE_FEATURE_SELECT, 0, 4);
	lo = virtio_guest_common_read(g, VIRTIO_GUEST_DEVICE_FEATURE, 4);
	virtio_guest_common_write(g, VIRTIO_GUEST_DEVICE_FEATURE_SELECT, 1, 4);
	hi = virtio_guest_common_read(g, VIRTIO_GUEST_DEVICE_FEATURE, 4);
	return hi << 32 | lo;
}

static int virtio_guest_negotiate(struct virtio_guest *g, uint64_t features)
{
	g->device_features = virtio_guest_read_features(g);
	g->features = features & g->device_features;
	virtio_guest_common_write(g, VIRTIO_GUEST_DRIVER_FEATURE_SELECT, 0, 4);
	virtio_guest_common_write(g, VIRTIO_GUEST_DRIVER_FEATURE, (uint32_t)g->features, 4);
	virtio_guest_common_write(g, VIRTIO_GUEST_DRIVER_FEATURE_SELECT, 1, 4);
	virtio_guest_common_write(g, VIRTIO_GUEST_DRIVER_FEATURE, g->features >> 32, 4);
	virtio_guest_add_status(g, VIRTIO_STATUS_FEATURES_OK);
	if (!(virtio_guest_status(g) & VIRTIO_STATUS_FEATURES_OK)) {
		virtio_guest_add_status(g, VIRTIO_STATUS_FAILED);
		return -ENOTSUP;
	}
	return 0;
}

static struct pci_msi_msg virtio_guest_msg(unsigned vector)
{
	return (struct pci_msi_msg){ .addr = MSI_ADDR, .data = MSI_DATA_BASE + vector };
}

/* Enables MSI-X masked, gives every vector its own message, unmasked,
 * then lifts the function mask: Linux's order. */
static void virtio_guest_msix(struct virtio_guest *g)
{
	unsigned ctrl = g->msix_cap + 2, v;

	virtio_guest_pci_write(g, ctrl, MSIX_CTRL_ENABLE | MSIX_CTRL_MASKALL, 2);
	for (v = 0; v < g->msix_n; v++) {
		struct pci_msi_msg m = virtio_guest_msg(v);
		uint64_t e = g->msix_table + 16ULL * v;

		virtio_guest_mmio_write(g, e, (uint32_t)m.addr, 4);
		virtio_guest_mmio_write(g, e + 4, m.addr >> 32, 4);
		virtio_guest_mmio_write(g, e + 8, m.data, 4);
		virtio_guest_mmio_write(g, e + 12, 0, 4);
	}
	virtio_guest_pci_write(g, ctrl, MSIX_CTRL_ENABLE, 2);
}

/* Queues. */

#define VIRTIO_GUEST_RING_BYTES (32 * KiB)	/* rings of VIRTQ_MAX_SIZE entries */
#define VIRTIO_GUEST_TABLE_BYTES (VIRTIO_GUEST_INDIRECT_MAX * sizeof(struct virtio_guest_desc))

static bool virtio_guest_event_idx(const struct virtio_guest *g)
{
	return g->features >> VIRTIO_RING_F_EVENT_IDX & 1;
}

static uint16_t *virtio_guest_avail_event(struct virtio_guest_queue *vq)
{
	return (uint16_t *)(vq->u + 4 + 8 * vq->size);
}

/* Lays the rings out in the queue's guest memory (allocated on first use)
 * and clears them, with every descriptor on the free list. */
static int virtio_guest_queue_mem(struct virtio_guest *g, unsigned i, uint16_t size)
{
	struct virtio_guest_queue *vq = &g->q[i];
	uint64_t base = g->ring_mem[i];
	unsigned d;

	if (!base)
		base = g->ring_mem[i] = virtio_guest_alloc(
			g, VIRTIO_GUEST_RING_BYTES + VIRTQ_MAX_SIZE * VIRTIO_GUEST_TABLE_BYTES, 4096);
	virtio_guest_queue_free(vq);
	*vq = (struct virtio_guest_queue){ .size = size, .desc = base,
					   .avail = base + 16ULL * size,
					   .used = ALIGN_UP(base + 18ULL * size + 6, 64),
					   .indirect = base + VIRTIO_GUEST_RING_BYTES,
					   .next = calloc(size, sizeof(uint16_t)),
					   .ndesc = calloc(size, sizeof(uint16_t)),
					   .cookie = calloc(size, sizeof(void *)), .num_free = size };
	if (!base || !vq->next || !vq->ndesc || !vq->cookie)
		return -ENOMEM;
	vq->d = virtio_guest_hva(g, vq->desc, VIRTIO_GUEST_RING_BYTES);
	vq->a = virtio_guest_hva(g, vq->avail, 6 + 2ULL * size);
	vq->u = virtio_guest_hva(g, vq->used, 6 + 8ULL * size);
	memset(vq->d, 0, VIRTIO_GUEST_RING_BYTES);
	for (d = 0; d < size; d++)
		vq->next[d] = d + 1;
	return 0;
}

static int virtio_guest_queue_setup(struct virtio_guest *g, unsigned i, uint16_t qsize)
{
	struct virtio_guest_queue *vq;
	uint16_t max, size;
	int ret;

	virtio_guest_common_write(g, VIRTIO_GUEST_QUEUE_SELECT, i, 2);
	max = virtio_guest_common_read(g, VIRTIO_GUEST_QUEUE_SIZE, 2);
	size = qsize < max ? qsize : max;
	if (!size || size > VIRTQ_MAX_SIZE)
		return -EIO;
	ret = virtio_guest_queue_mem(g, i, size);
	if (ret)
		return ret;
	vq = &g->q[i];
	vq->vector = 1 + i % (g->msix_n > 1 ? g->msix_n - 1 : 1);
	virtio_guest_common_write(g, VIRTIO_GUEST_QUEUE_SIZE, size, 2);
	virtio_guest_common_write(g, VIRTIO_GUEST_QUEUE_DESC, vq->desc, 8);
	virtio_guest_common_write(g, VIRTIO_GUEST_QUEUE_DRIVER, vq->avail, 8);
	virtio_guest_common_write(g, VIRTIO_GUEST_QUEUE_DEVICE, vq->used, 8);
	virtio_guest_common_write(g, VIRTIO_GUEST_QUEUE_MSIX_VECTOR, vq->vector, 2);
	if (virtio_guest_common_read(g, VIRTIO_GUEST_QUEUE_MSIX_VECTOR, 2) != vq->vector)
		return -EIO;
	vq->notify = g->notify + virtio_guest_common_read(g, VIRTIO_GUEST_QUEUE_NOTIFY_OFF, 2) *
					 (uint64_t)g->notify_mult;
	virtio_guest_common_write(g, VIRTIO_GUEST_QUEUE_ENABLE, 1, 2);
	return 0;
}

static int virtio_guest_setup(struct virtio_guest *g, unsigned nq, uint16_t qsize)
{
	unsigned i;
	int ret;

	if (nq > VIRTIO_GUEST_MAX_QUEUES ||
	    nq > virtio_guest_common_read(g, VIRTIO_GUEST_NUM_QUEUES, 2))
		return -ERANGE;
	virtio_guest_msix(g);
	virtio_guest_common_write(g, VIRTIO_GUEST_CONFIG_MSIX_VECTOR, VIRTIO_GUEST_CONFIG_VECTOR, 2);
	if (virtio_guest_common_read(g, VIRTIO_GUEST_CONFIG_MSIX_VECTOR, 2) !=
	    VIRTIO_GUEST_CONFIG_VECTOR)
		return -EIO;
	for (i = 0; i < nq; i++) {
		ret = virtio_guest_queue_setup(g, i, qsize);
		if (ret)
			return ret;
	}
	g->num_queues = nq;
	return 0;
}

int virtio_guest_start(struct virtio_guest *g, uint64_t features, unsigned nq, uint16_t qsize)
{
	int ret = virtio_guest_reset(g);

	if (ret)
		return ret;
	virtio_guest_add_status(g, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_guest_add_status(g, VIRTIO_STATUS_DRIVER);
	ret = virtio_guest_negotiate(g, features);
	if (!ret)
		ret = virtio_guest_setup(g, nq, qsize);
	if (ret) {
		virtio_guest_add_status(g, VIRTIO_STATUS_FAILED);
		return ret;
	}
	virtio_guest_add_status(g, VIRTIO_STATUS_DRIVER_OK);
	return 0;
}

/* Buffers. */

static void virtio_guest_fill(struct virtio_guest_desc *d, const struct virtio_guest_buf *b,
			      bool more, uint16_t next)
{
	*d = (struct virtio_guest_desc){ .addr = b->gpa, .len = b->len,
					 .flags = b->flags | (more ? VIRTIO_GUEST_DESC_F_NEXT : 0),
					 .next = next };
}

/* Writes the chain's descriptors from the free list; returns the first
 * descriptor left free. */
static uint16_t virtio_guest_chain(struct virtio_guest *g, struct virtio_guest_queue *vq,
				   const struct virtio_guest_buf *bufs, unsigned n, bool indirect)
{
	uint16_t head = vq->free_head, d = head;
	unsigned i;

	if (indirect) {
		uint64_t table = vq->indirect + head * VIRTIO_GUEST_TABLE_BYTES;
		struct virtio_guest_desc *t = virtio_guest_hva(g, table, VIRTIO_GUEST_TABLE_BYTES);

		for (i = 0; i < n; i++)
			virtio_guest_fill(&t[i], &bufs[i], i + 1 < n, i + 1);
		virtio_guest_fill(&vq->d[head], &(struct virtio_guest_buf){
			table, n * sizeof(*t), VIRTIO_GUEST_DESC_F_INDIRECT }, false, 0);
		return vq->next[head];
	}
	for (i = 0; i < n; i++) {
		virtio_guest_fill(&vq->d[d], &bufs[i], i + 1 < n, vq->next[d]);
		d = vq->next[d];
	}
	return d;
}

int virtio_guest_add(struct virtio_guest *g, unsigned q, const struct virtio_guest_buf *bufs,
		     unsigned n, bool indirect, void *cookie)
{
	struct virtio_guest_queue *vq = &g->q[q];
	unsigned need = indirect ? 1 : n;
	uint16_t head = vq->free_head;

	if (!n || (indirect && n > VIRTIO_GUEST_INDIRECT_MAX))
		return -E2BIG;
	if (need > vq->num_free)
		return -ENOSPC;
	vq->free_head = virtio_guest_chain(g, vq, bufs, n, indirect);
	vq->num_free -= need;
	vq->ndesc[head] = need;
	vq->cookie[head] = cookie;
	vq->a[2 + vq->avail_idx % vq->size] = head;
	vq->avail_idx++;
	return head;
}

void virtio_guest_notify(struct virtio_guest *g, unsigned q)
{
	struct virtio_guest_queue *vq = &g->q[q];
	int fd = g->kick_by_exit ? -1 : guest_platform_ioeventfd(g->platform, vq->notify, 2);
	uint64_t one = 1;

	if (fd < 0) {
		virtio_guest_mmio_write(g, vq->notify, q, 2);
		return;
	}
	if (write(fd, &one, sizeof(one)) != sizeof(one))
		abort();	/* an eventfd write fails only when the counter is full */
}

bool virtio_guest_kick(struct virtio_guest *g, unsigned q)
{
	struct virtio_guest_queue *vq = &g->q[q];
	uint16_t old = vq->kicked_idx, now = vq->avail_idx, event;
	bool need;

	__atomic_store_n(&vq->a[1], now, __ATOMIC_RELEASE);
	/* Pairs with the device's barrier between publishing avail_event (or
	 * the NO_NOTIFY flag) and re-reading avail idx in virtq_set_kicks. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->kicked_idx = now;
	if (virtio_guest_event_idx(g)) {
		event = __atomic_load_n(virtio_guest_avail_event(vq), __ATOMIC_RELAXED);
		need = (uint16_t)(now - event - 1) < (uint16_t)(now - old);
	} else {
		need = now != old && !(__atomic_load_n((uint16_t *)vq->u, __ATOMIC_RELAXED) &
				       VIRTIO_GUEST_USED_F_NO_NOTIFY);
	}
	if (need)
		virtio_guest_notify(g, q);
	return need;
}

uint16_t virtio_guest_used_idx(struct virtio_guest *g, unsigned q)
{
	return __atomic_load_n((uint16_t *)(g->q[q].u + 2), __ATOMIC_ACQUIRE);
}

void virtio_guest_set_used_event(struct virtio_guest *g, unsigned q, uint16_t idx)
{
	struct virtio_guest_queue *vq = &g->q[q];

	/* Pairs with the device's barrier between publishing the used index
	 * and reading used_event in virtq_should_notify. */
	__atomic_store_n(&vq->a[2 + vq->size], idx, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

void virtio_guest_set_avail_flags(struct virtio_guest *g, unsigned q, uint16_t flags)
{
	__atomic_store_n(&g->q[q].a[0], flags, __ATOMIC_SEQ_CST);
}

static void virtio_guest_free_chain(struct virtio_guest_queue *vq, uint16_t head)
{
	uint16_t last = head, i;

	for (i = 1; i < vq->ndesc[head]; i++)
		last = vq->next[last];
	vq->next[last] = vq->free_head;
	vq->free_head = head;
	vq->num_free += vq->ndesc[head];
	vq->ndesc[head] = 0;
}

int virtio_guest_get(struct virtio_guest *g, unsigned q, uint32_t *len, void **cookie)
{
	struct virtio_guest_queue *vq = &g->q[q];
	const uint8_t *e;
	uint32_t id;

	if (virtio_guest_used_idx(g, q) == vq->last_used)
		return 0;
	e = vq->u + 4 + 8 * (vq->last_used % vq->size);
	memcpy(&id, e, 4);
	memcpy(len, e + 4, 4);
	vq->last_used++;
	if (virtio_guest_event_idx(g))
		virtio_guest_set_used_event(g, q, vq->last_used);
	if (id >= vq->size || !vq->ndesc[id])
		return -EIO;
	*cookie = vq->cookie[id];
	virtio_guest_free_chain(vq, id);
	return 1;
}

int virtio_guest_wait_used(struct virtio_guest *g, unsigned q, uint16_t idx, int timeout_ms)
{
	uint64_t deadline = clock_ns() + (uint64_t)timeout_ms * 1000000;

	while ((int16_t)(virtio_guest_used_idx(g, q) - idx) < 0) {
		if (clock_ns() > deadline)
			return -ETIMEDOUT;
		virtio_guest_pause(g);
	}
	return 0;
}

int virtio_guest_irq_fd(struct virtio_guest *g, unsigned vector)
{
	struct pci_msi_msg m = virtio_guest_msg(vector);

	return guest_platform_irqfd(g->platform, &m);
}

int virtio_guest_irq_wait(struct virtio_guest *g, unsigned vector, int timeout_ms)
{
	struct pollfd p = { .fd = virtio_guest_irq_fd(g, vector), .events = POLLIN };
	uint64_t n;

	if (p.fd < 0)
		return -ENOENT;
	if (poll(&p, 1, timeout_ms) <= 0 || read(p.fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n > 0x7fffffff ? 0x7fffffff : (int)n;
}

/* virtio-blk requests. */

void virtio_guest_blk_data(struct virtio_guest_blk_req *r, uint64_t gpa, uint32_t len)
{
	bool in = r->type == VIRTIO_GUEST_BLK_T_IN || r->type == VIRTIO_GUEST_BLK_T_GET_ID;

	if (r->n == ARRAY_SIZE(r->data))
		abort();
	r->data[r->n++] = (struct virtio_guest_buf){ gpa, len, in ? VIRTIO_GUEST_DESC_F_WRITE : 0 };
}

int virtio_guest_blk_submit(struct virtio_guest *g, unsigned q, struct virtio_guest_blk_req *r,
			    bool indirect, void *cookie)
{
	struct virtio_guest_buf bufs[VIRTIO_GUEST_INDIRECT_MAX];
	uint32_t hdr[4] = { r->type, 0, (uint32_t)r->sector, r->sector >> 32 };
	uint8_t *h;

	if (!r->hdr)
		r->hdr = virtio_guest_alloc(g, 32, 16);
	h = r->hdr ? virtio_guest_hva(g, r->hdr, 17) : NULL;
	if (!h)
		return -ENOMEM;
	memcpy(h, hdr, sizeof(hdr));
	h[16] = VIRTIO_GUEST_BLK_S_NONE;
	bufs[0] = (struct virtio_guest_buf){ r->hdr, 16, 0 };
	memcpy(&bufs[1], r->data, r->n * sizeof(r->data[0]));
	bufs[r->n + 1] = (struct virtio_guest_buf){ r->hdr + 16, 1, VIRTIO_GUEST_DESC_F_WRITE };
	return virtio_guest_add(g, q, bufs, r->n + 2, indirect, cookie);
}

uint8_t virtio_guest_blk_status(struct virtio_guest *g, const struct virtio_guest_blk_req *r)
{
	const uint8_t *s = virtio_guest_hva(g, r->hdr + 16, 1);

	return s ? *s : VIRTIO_GUEST_BLK_S_NONE;
}

int virtio_guest_blk_run(struct virtio_guest *g, unsigned q, struct virtio_guest_blk_req *r,
			 bool indirect)
{
	uint64_t deadline = clock_ns() + VIRTIO_GUEST_TIMEOUT_MS * 1000000ULL, now;
	void *cookie = NULL;
	int ret = virtio_guest_blk_submit(g, q, r, indirect, r);

	if (ret < 0)
		return ret;
	virtio_guest_kick(g, q);
	while ((ret = virtio_guest_get(g, q, &r->used_len, &cookie)) == 0) {
		now = clock_ns();
		if (now >= deadline)
			return -ETIMEDOUT;
		ret = virtio_guest_irq_wait(g, g->q[q].vector, (int)((deadline - now) / 1000000) + 1);
		if (ret < 0)
			return ret;
	}
	if (ret < 0 || cookie != r)
		return -EIO;
	return virtio_guest_blk_status(g, r);
}
