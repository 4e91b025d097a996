/*
 * PCI root bus (see pci.h). Model: the PCI Local Bus 3.0 specification
 * (type 0 configuration header, configuration mechanism #1) and PCIe 4.0
 * section 7.2.2 (ECAM). The root itself is the host bridge at 00:00.0:
 * Linux's mechanism #1 probe accepts the ports only if bus 0 holds a host
 * bridge (or a VGA or Intel/Compaq function) when there is no DMI table.
 *
 * Threads: vCPU threads reach config space through the conf1 (PIO) and ECAM
 * (MMIO) handlers, inside the bus's RCU read section; the main thread runs
 * pci_root_create/destroy and pci_dev_add/del.
 *
 * Ownership and locks:
 * - conf1_addr is the chipset's one CONFIG_ADDRESS register, shared by all
 *   vCPUs as on hardware, so it is an atomic: an address write and a data
 *   access are two exits, and guests serialise the pair with their own lock.
 * - slots[] are RCU-published pointers: writers hold r->lock, readers
 *   rcu_dereference inside the bus's read section. A removed function stays
 *   valid until its owner frees it after a grace period; a config write
 *   re-checks the slot under d->lock so it cannot map a removed function's
 *   BARs again.
 * - A function's cfg, masks and bar_gpa are guarded by d->lock. A write to
 *   the command register or a BAR re-registers the BAR ranges on the MMIO
 *   bus under it (lock order: d->lock, then the bus's writer lock).
 * - mmio_next (the BAR window allocator) is guarded by r->lock; window space
 *   of a removed function is not reused (no hot-plug).
 */
#include "dev/pci.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "rcu/rcu.h"

/* Type 0 configuration header */
#define CFG_VENDOR 0x00
#define CFG_DEVICE 0x02
#define CFG_COMMAND 0x04
#define CFG_STATUS 0x06
#define CFG_REVISION 0x08
#define CFG_CLASS 0x09			/* prog-if, sub-class, base class */
#define CFG_CACHE_LINE 0x0c
#define CFG_BAR0 0x10
#define CFG_BARS_LEN (4 * PCI_MAX_BARS)
#define CFG_SUBSYS_VENDOR 0x2c
#define CFG_SUBSYS 0x2e
#define CFG_CAP_PTR 0x34
#define CFG_INT_LINE 0x3c
#define CFG_CAP_START 0x40
#define CFG_STD_SIZE 0x100		/* capabilities live below this */

#define CMD_MEMORY 0x0002
#define CMD_MASTER 0x0004
#define CMD_INTX_DISABLE 0x0400
#define STATUS_CAP_LIST 0x0010
/* Master data parity error, signalled/received target abort, received
 * master abort, signalled system error, detected parity error. */
#define STATUS_W1C 0xf900

#define BAR_MIN_SIZE 0x1000ULL
#define BAR_MAX_SIZE 0x80000000ULL	/* the largest a 32-bit BAR can decode */

/* CONFIG_ADDRESS: enable, bus, device, function, dword register. Bits 30:24
 * and 1:0 are reserved and read as zero. */
#define CONF1_ENABLE 0x80000000u
#define CONF1_ADDR_MASK 0x80fffffcu
#define CONF1_DATA 4			/* offset of 0xcfc in the port range */

/* Host bridge ids: Red Hat's generic PCIe host bridge, which no Linux
 * driver or quirk claims. */
#define HOST_VENDOR 0x1b36
#define HOST_DEVICE 0x0008
#define HOST_CLASS 0x060000

static_assert(PCI_MMIO_BASE + PCI_MMIO_SIZE == PCI_ECAM_BASE, "BAR window ends at the ECAM");

struct pci_root {
	struct bus *pio, *mmio;
	struct pci_platform *platform;
	struct bus_dev conf1;
	struct bus_dev ecam;
	_Atomic uint32_t conf1_addr;
	atomic_bool conflict_logged;		/* a BAR could not be mapped */
	struct mutex lock;			/* writers of slots[]; mmio_next */
	uint64_t mmio_next;
	struct pci_dev *_Atomic slots[PCI_MAX_SLOTS];
	struct pci_dev host;			/* slot 0 */
	struct rcu_head rcu;
};

/* A decoded configuration access: slot and function on bus 0, register. */
struct pci_cfg_addr {
	unsigned slot, fn, reg;
};

static uint32_t le_get(const uint8_t *p, unsigned len)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < len; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void le_put(uint8_t *p, uint32_t v, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static bool ranges_overlap(unsigned a, unsigned alen, unsigned b, unsigned blen)
{
	return a < b + blen && b < a + alen;
}

/* ---- building a function (owner's thread, before pci_dev_add) ---- */

void pci_dev_init(struct pci_dev *d, const struct pci_dev_ops *ops, const char *name,
		  uint16_t vendor, uint16_t device, uint32_t class_code, uint8_t revision,
		  uint16_t subsys_vendor, uint16_t subsys)
{
	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->name = name;
	d->cap_end = CFG_CAP_START;
	mutex_init(&d->lock);
	for (unsigned i = 0; i < PCI_MAX_BARS; i++)
		d->bar_gpa[i] = PCI_BAR_UNMAPPED;
	le_put(d->cfg + CFG_VENDOR, vendor, 2);
	le_put(d->cfg + CFG_DEVICE, device, 2);
	d->cfg[CFG_REVISION] = revision;
	le_put(d->cfg + CFG_CLASS, class_code, 3);
	le_put(d->cfg + CFG_SUBSYS_VENDOR, subsys_vendor, 2);
	le_put(d->cfg + CFG_SUBSYS, subsys, 2);
	le_put(d->wmask + CFG_COMMAND, CMD_MEMORY | CMD_MASTER | CMD_INTX_DISABLE, 2);
	le_put(d->w1cmask + CFG_STATUS, STATUS_W1C, 2);
	/* Plain read/write registers the guest may use as scratch. */
	d->wmask[CFG_CACHE_LINE] = 0xff;
	d->wmask[CFG_INT_LINE] = 0xff;
}

static void pci_bar_access_read(struct bus_dev *bd, uint64_t off, void *data, unsigned len)
{
	struct pci_bar_region *r = container_of(bd, struct pci_bar_region, bus);

	r->dev->ops->bar_read(r->dev, r->bar, off, data, len);
}

static void pci_bar_access_write(struct bus_dev *bd, uint64_t off, const void *data, unsigned len)
{
	struct pci_bar_region *r = container_of(bd, struct pci_bar_region, bus);

	r->dev->ops->bar_write(r->dev, r->bar, off, data, len);
}

static const struct bus_dev_ops pci_bar_ops = {
	.read = pci_bar_access_read,
	.write = pci_bar_access_write,
};

int pci_bar_init(struct pci_dev *d, unsigned bar, uint64_t size)
{
	if (bar >= PCI_MAX_BARS || size < BAR_MIN_SIZE || size > BAR_MAX_SIZE ||
	    (size & (size - 1)))
		return -EINVAL;
	d->bar_size[bar] = size;
	/* The address bits above the size are writable; the flag bits (32-bit
	 * non-prefetchable memory) and the rest read as zero, which is how
	 * the guest learns the size. */
	le_put(d->wmask + CFG_BAR0 + 4 * bar, (uint32_t)~(size - 1), 4);
	d->bar_region[bar] = (struct pci_bar_region){
		.bus = { .ops = &pci_bar_ops, .name = d->name }, .dev = d, .bar = bar,
	};
	return 0;
}

int pci_cap_add(struct pci_dev *d, uint8_t id, const void *body, unsigned len)
{
	unsigned off = ALIGN_UP(d->cap_end, 4u), link = CFG_CAP_PTR;

	if (len > CFG_STD_SIZE || off + 2 + len > CFG_STD_SIZE)
		return -ENOSPC;
	while (d->cfg[link])
		link = d->cfg[link] + 1u;
	d->cfg[link] = (uint8_t)off;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	if (len)
		memcpy(d->cfg + off + 2, body, len);
	d->cfg[CFG_STATUS] |= STATUS_CAP_LIST;
	d->cap_end = (uint16_t)(off + 2 + len);
	return (int)off;
}

/* ---- BAR decoding ---- */

/* The address BAR `bar` holds, or PCI_BAR_UNMAPPED if it is not
 * implemented or the command register's memory bit is clear. */
static uint64_t pci_bar_target(struct pci_dev *d, unsigned bar) REQUIRES(d->lock)
{
	if (!d->bar_size[bar] || !(le_get(d->cfg + CFG_COMMAND, 2) & CMD_MEMORY))
		return PCI_BAR_UNMAPPED;
	return le_get(d->cfg + CFG_BAR0 + 4 * bar, 4);	/* bits below the size read as 0 */
}

static void pci_log_conflict(struct pci_dev *d, unsigned bar, uint64_t gpa, int err)
{
	if (!atomic_exchange(&d->root->conflict_logged, true))
		log_msg("pci: %s BAR %u at %#llx: %s; left not decoding (logged once)", d->name,
			bar, (unsigned long long)gpa, err == -EEXIST ? "overlaps another range" :
			"cannot be registered");
}

/*
 * Makes BAR `bar` decode at want (or nowhere), moving its range on the MMIO
 * bus, and tells the device. A range the bus refuses (overlap, no memory)
 * leaves the BAR not decoding; the next config write tries again.
 */
static void pci_bar_map(struct pci_dev *d, unsigned bar, uint64_t want) REQUIRES(d->lock)
{
	struct bus_dev *bd = &d->bar_region[bar].bus;
	uint64_t old = d->bar_gpa[bar];
	int ret;

	if (want == old)
		return;
	if (old != PCI_BAR_UNMAPPED && bus_unregister(d->root->mmio, bd) != 0)
		return;		/* out of memory: it keeps decoding where it was */
	if (want != PCI_BAR_UNMAPPED) {
		ret = bus_register(d->root->mmio, want, d->bar_size[bar], bd);
		if (ret) {
			pci_log_conflict(d, bar, want, ret);
			want = PCI_BAR_UNMAPPED;
		}
	}
	d->bar_gpa[bar] = want;
	if (want != old && d->ops->bar_moved)
		d->ops->bar_moved(d, bar, old, want);
}

static void pci_bars_sync(struct pci_dev *d, bool present) REQUIRES(d->lock)
{
	for (unsigned i = 0; i < PCI_MAX_BARS; i++)
		if (d->bar_size[i])
			pci_bar_map(d, i, present ? pci_bar_target(d, i) : PCI_BAR_UNMAPPED);
}

/* ---- configuration accesses (vCPU threads, RCU read section) ---- */

static struct pci_dev *pci_root_lookup(struct pci_root *r, const struct pci_cfg_addr *a)
{
	/* Single-function devices: functions 1-7 are absent. */
	return a->fn == 0 ? rcu_dereference(r->slots[a->slot]) : NULL;
}

static void pci_cfg_read(struct pci_root *r, const struct pci_cfg_addr *a, void *data,
			 unsigned len)
{
	struct pci_dev *d = pci_root_lookup(r, a);

	if (!d) {
		memset(data, 0xff, len);
		return;
	}
	mutex_lock(&d->lock);
	if (d->ops->config_read)
		d->ops->config_read(d, a->reg, len);
	memcpy(data, d->cfg + a->reg, len);
	mutex_unlock(&d->lock);
}

/* Stores the writable bits of v and clears the write-1-to-clear bits set
 * in v; everything else keeps its value. */
static void pci_cfg_store(struct pci_dev *d, unsigned off, const uint8_t *v, unsigned len)
	REQUIRES(d->lock)
{
	for (unsigned i = 0; i < len; i++, off++) {
		uint8_t keep = d->cfg[off] & ~d->wmask[off] & ~(v[i] & d->w1cmask[off]);

		d->cfg[off] = keep | (v[i] & d->wmask[off]);
	}
}

static void pci_cfg_write(struct pci_root *r, const struct pci_cfg_addr *a, const void *data,
			  unsigned len)
{
	struct pci_dev *d = pci_root_lookup(r, a);

	if (!d)
		return;
	mutex_lock(&d->lock);
	if (rcu_dereference(r->slots[a->slot]) == d) {	/* not removed meanwhile */
		pci_cfg_store(d, a->reg, data, len);
		if (ranges_overlap(a->reg, len, CFG_COMMAND, 2) ||
		    ranges_overlap(a->reg, len, CFG_BAR0, CFG_BARS_LEN))
			pci_bars_sync(d, true);
		if (d->ops->config_written)
			d->ops->config_written(d, a->reg, len);
	}
	mutex_unlock(&d->lock);
}

/*
 * Mechanism #1: a dword at 0xcf8 is CONFIG_ADDRESS; 0xcfc-0xcff is the data
 * window onto the addressed dword, at any width that stays inside it. Other
 * accesses to 0xcf8-0xcfb are not ours on a PC (Linux probes with a byte
 * write to 0xcfb) and read as all ones.
 */
static bool pci_conf1_decode(struct pci_root *r, uint64_t off, unsigned len,
			     struct pci_cfg_addr *a)
{
	uint32_t addr = atomic_load(&r->conf1_addr);
	unsigned byte = (unsigned)off - CONF1_DATA;

	if (off < CONF1_DATA || byte + len > 4 || !(addr & CONF1_ENABLE) || (addr >> 16) & 0xff)
		return false;
	*a = (struct pci_cfg_addr){
		.slot = (addr >> 11) & 0x1f, .fn = (addr >> 8) & 7, .reg = (addr & 0xfc) + byte,
	};
	return true;
}

static void pci_conf1_read(struct bus_dev *bd, uint64_t off, void *data, unsigned len)
{
	struct pci_root *r = container_of(bd, struct pci_root, conf1);
	struct pci_cfg_addr a;
	uint32_t v;

	if (off == 0 && len == 4) {
		v = atomic_load(&r->conf1_addr);
		memcpy(data, &v, 4);
	} else if (pci_conf1_decode(r, off, len, &a)) {
		pci_cfg_read(r, &a, data, len);
	} else {
		memset(data, 0xff, len);
	}
}

static void pci_conf1_write(struct bus_dev *bd, uint64_t off, const void *data, unsigned len)
{
	struct pci_root *r = container_of(bd, struct pci_root, conf1);
	struct pci_cfg_addr a;
	uint32_t v;

	if (off == 0 && len == 4) {
		memcpy(&v, data, 4);
		atomic_store(&r->conf1_addr, v & CONF1_ADDR_MASK);
	} else if (pci_conf1_decode(r, off, len, &a)) {
		pci_cfg_write(r, &a, data, len);
	}
}

static const struct bus_dev_ops pci_conf1_ops = {
	.read = pci_conf1_read,
	.write = pci_conf1_write,
};

/* ECAM: bus << 20 | slot << 15 | function << 12 | register. Only bus 0 is
 * registered; accesses must be naturally aligned and at most a dword. */
static bool pci_ecam_decode(uint64_t off, unsigned len, struct pci_cfg_addr *a)
{
	if (len > 4 || off % len || off >= PCI_ECAM_SIZE)
		return false;
	*a = (struct pci_cfg_addr){
		.slot = (off >> 15) & 0x1f, .fn = (off >> 12) & 7, .reg = off & 0xfff,
	};
	return true;
}

static void pci_ecam_read(struct bus_dev *bd, uint64_t off, void *data, unsigned len)
{
	struct pci_root *r = container_of(bd, struct pci_root, ecam);
	struct pci_cfg_addr a;

	if (pci_ecam_decode(off, len, &a))
		pci_cfg_read(r, &a, data, len);
	else
		memset(data, 0xff, len);
}

static void pci_ecam_write(struct bus_dev *bd, uint64_t off, const void *data, unsigned len)
{
	struct pci_root *r = container_of(bd, struct pci_root, ecam);
	struct pci_cfg_addr a;

	if (pci_ecam_decode(off, len, &a))
		pci_cfg_write(r, &a, data, len);
}

static const struct bus_dev_ops pci_ecam_ops = {
	.read = pci_ecam_read,
	.write = pci_ecam_write,
};

/* ---- the root (main thread) ---- */

/* The host bridge has no BARs and no side effects. */
static const struct pci_dev_ops pci_host_ops = { 0 };

static void pci_slot_publish(struct pci_root *r, unsigned slot, struct pci_dev *d)
	REQUIRES(r->lock)
{
	d->root = r;
	d->platform = r->platform;
	d->slot = slot;
	rcu_assign_pointer(r->slots[slot], d);
}

static void pci_root_free_rcu(struct rcu_head *head)
{
	struct pci_root *r = container_of(head, struct pci_root, rcu);

	mutex_destroy(&r->host.lock);
	mutex_destroy(&r->lock);
	free(r);
}

int pci_root_create(struct pci_root **out, struct bus *pio, struct bus *mmio,
		    struct pci_platform *platform)
{
	struct pci_root *r = calloc(1, sizeof(*r));
	int ret;

	if (!r)
		return -ENOMEM;
	r->pio = pio;
	r->mmio = mmio;
	r->platform = platform;
	r->conf1 = (struct bus_dev){ .ops = &pci_conf1_ops, .name = "pci-conf1" };
	r->ecam = (struct bus_dev){ .ops = &pci_ecam_ops, .name = "pci-ecam" };
	r->mmio_next = PCI_MMIO_BASE;
	mutex_init(&r->lock);
	pci_dev_init(&r->host, &pci_host_ops, "pci-host", HOST_VENDOR, HOST_DEVICE, HOST_CLASS,
		     0, HOST_VENDOR, HOST_DEVICE);
	mutex_lock(&r->lock);
	pci_slot_publish(r, 0, &r->host);
	mutex_unlock(&r->lock);
	ret = bus_register(pio, PCI_CONF1_PORT, PCI_CONF1_LEN, &r->conf1);
	if (ret)
		goto err_free;
	ret = bus_register(mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE, &r->ecam);
	if (ret)
		goto err_conf1;
	*out = r;
	return 0;
err_conf1:
	bus_unregister(pio, &r->conf1);
err_free:
	call_rcu(&r->rcu, pci_root_free_rcu);
	return ret;
}

void pci_root_destroy(struct pci_root *r)
{
	for (unsigned s = 1; s < PCI_MAX_SLOTS; s++)
		assert(atomic_load(&r->slots[s]) == NULL);
	bus_unregister(r->pio, &r->conf1);
	bus_unregister(r->mmio, &r->ecam);
	call_rcu(&r->rcu, pci_root_free_rcu);
}

/* Assigns each BAR of d the next naturally aligned window address, into
 * gpa[]; advances mmio_next only if all fit. 0 or -ENOSPC. */
static int pci_window_alloc(struct pci_root *r, const struct pci_dev *d,
			    uint64_t gpa[PCI_MAX_BARS]) REQUIRES(r->lock)
{
	uint64_t next = r->mmio_next;

	for (unsigned i = 0; i < PCI_MAX_BARS; i++) {
		uint64_t size = d->bar_size[i];

		if (!size)
			continue;
		gpa[i] = ALIGN_UP(next, size);
		if (gpa[i] + size > PCI_MMIO_BASE + PCI_MMIO_SIZE)
			return -ENOSPC;
		next = gpa[i] + size;
	}
	r->mmio_next = next;
	return 0;
}

static int pci_free_slot(struct pci_root *r) REQUIRES(r->lock)
{
	for (unsigned s = 1; s < PCI_MAX_SLOTS; s++)
		if (!atomic_load_explicit(&r->slots[s], memory_order_relaxed))
			return (int)s;
	return -ENOSPC;
}

int pci_dev_add(struct pci_root *r, struct pci_dev *d)
{
	uint64_t gpa[PCI_MAX_BARS];
	int slot, ret;

	mutex_lock(&r->lock);
	slot = pci_free_slot(r);
	ret = slot < 0 ? slot : pci_window_alloc(r, d, gpa);
	if (!ret) {
		/* Not yet published: nobody else sees d's config space. */
		for (unsigned i = 0; i < PCI_MAX_BARS; i++)
			if (d->bar_size[i])
				le_put(d->cfg + CFG_BAR0 + 4 * i, (uint32_t)gpa[i], 4);
		pci_slot_publish(r, (unsigned)slot, d);
	}
	mutex_unlock(&r->lock);
	return ret;
}

void pci_dev_del(struct pci_root *r, struct pci_dev *d)
{
	mutex_lock(&r->lock);
	assert(d->slot > 0 && d->slot < PCI_MAX_SLOTS &&
	       atomic_load_explicit(&r->slots[d->slot], memory_order_relaxed) == d);
	rcu_assign_pointer(r->slots[d->slot], NULL);
	mutex_unlock(&r->lock);
	mutex_lock(&d->lock);
	pci_bars_sync(d, false);
	mutex_unlock(&d->lock);
}
