/*
 * Unit test of dev/pci.c through the real port I/O and MMIO buses: every
 * access goes through bus_read/bus_write on 0xcf8-0xcff, on the ECAM at
 * 0xE0000000 or on a BAR, as a vCPU exit would. Register offsets and
 * encodings are written out here from the PCI specification rather than
 * taken from pci.c, so a mistake there is not repeated here.
 *
 * The test function has two BARs (0 and 2) and two capabilities; its ops
 * record what the root tells it (BAR accesses, bar_moved, config_written)
 * and check that the function's lock is held where the contract says so.
 * The platform only counts calls: the root itself must make none.
 *
 * Threads: the main thread runs the checks; the stress test adds two
 * RCU-registered threads that program the function through ECAM and read
 * it through conf1 and its BAR at the same time, reporting through atomics.
 * Exit 0: pass; 1: fail, with every failed check printed.
 */
#include "tests/check.h"
#include "core/bus.h"
#include "core/util.h"
#include "dev/pci.h"
#include "rcu/rcu.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONF1_ADDR 0xcf8
#define CONF1_DATA 0xcfc
#define ECAM_BASE 0xE0000000ULL
#define WINDOW_BASE 0xC0000000ULL
#define WINDOW_END 0xE0000000ULL
#define ONES 0xffffffffu

#define T_VENDOR 0x1234
#define T_DEVICE 0x5678
#define T_CLASS 0x0780ab		/* base 07, sub-class 80, prog-if ab */
#define T_REV 0x5a
#define T_SUBSYS_VENDOR 0x1111
#define T_SUBSYS 0x2222
#define T_BAR0_SIZE 0x4000ULL
#define T_BAR2_SIZE 0x1000ULL
#define T_CAP1_ID 0x09
#define T_CAP2_ID 0x05
#define MAX_MOVES 4096

static const uint8_t cap1_body[6] = { 8, 0xaa, 0xbb, 0xcc, 0xdd, 0xee };
static const uint8_t cap2_body[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };

struct move {
	unsigned bar;
	uint64_t old_gpa, new_gpa;
};

struct tdev {
	struct pci_dev pci;
	_Atomic unsigned reads[PCI_MAX_BARS], writes[PCI_MAX_BARS];
	uint64_t last_off;		/* single-threaded checks only */
	uint32_t last_write;
	/* Recorded by callbacks, which run with pci.lock held. */
	struct move moves[MAX_MOVES];
	unsigned n_moves;
	unsigned n_written, written_off, written_len;
	atomic_bool unlocked_callback;	/* a callback ran without pci.lock */
	int cap1, cap2;
};

struct rec_platform {
	struct pci_platform platform;
	_Atomic unsigned calls;
};

static struct bus pio, mmio;

/* ---- the recording platform and the test function ---- */

static int rec_irqfd_set(struct pci_platform *p, int fd, const struct pci_msi_msg *msg,
			 unsigned *handle)
{
	atomic_fetch_add(&container_of(p, struct rec_platform, platform)->calls, 1);
	return 0;
}

static int rec_ioeventfd_set(struct pci_platform *p, uint64_t gpa, unsigned len, int fd,
			     bool assign)
{
	atomic_fetch_add(&container_of(p, struct rec_platform, platform)->calls, 1);
	return 0;
}

static const struct pci_platform_ops rec_platform_ops = {
	.irqfd_set = rec_irqfd_set,
	.ioeventfd_set = rec_ioeventfd_set,
};

/* What the test function's BAR reads give: which BAR and which offset. */
static uint32_t bar_value(unsigned bar, uint64_t off)
{
	return 0xb0000000u | bar << 16 | (uint32_t)off;
}

static void tdev_bar_read(struct pci_dev *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
	struct tdev *t = container_of(d, struct tdev, pci);
	uint64_t v = bar_value(bar, off);

	atomic_fetch_add(&t->reads[bar], 1);
	t->last_off = off;
	memcpy(data, &v, len);
}

static void tdev_bar_write(struct pci_dev *d, unsigned bar, uint64_t off, const void *data,
			   unsigned len)
{
	struct tdev *t = container_of(d, struct tdev, pci);

	atomic_fetch_add(&t->writes[bar], 1);
	t->last_off = off;
	t->last_write = 0;
	memcpy(&t->last_write, data, len < 4 ? len : 4);
}

/* pthread's default mutex refuses trylock while anyone holds it. */
static void tdev_check_locked(struct tdev *t)
{
	if (pthread_mutex_trylock(&t->pci.lock.m) == 0) {
		atomic_store(&t->unlocked_callback, true);
		pthread_mutex_unlock(&t->pci.lock.m);
	}
}

static void tdev_bar_moved(struct pci_dev *d, unsigned bar, uint64_t old_gpa, uint64_t new_gpa)
{
	struct tdev *t = container_of(d, struct tdev, pci);

	tdev_check_locked(t);
	if (t->n_moves < MAX_MOVES)
		t->moves[t->n_moves] = (struct move){ bar, old_gpa, new_gpa };
	t->n_moves++;
}

static void tdev_config_written(struct pci_dev *d, unsigned off, unsigned len)
{
	struct tdev *t = container_of(d, struct tdev, pci);

	tdev_check_locked(t);
	t->n_written++;
	t->written_off = off;
	t->written_len = len;
}

static const struct pci_dev_ops tdev_ops = {
	.bar_read = tdev_bar_read,
	.bar_write = tdev_bar_write,
	.bar_moved = tdev_bar_moved,
	.config_written = tdev_config_written,
};

static void tdev_init(struct tdev *t)
{
	memset(t, 0, sizeof(*t));
	pci_dev_init(&t->pci, &tdev_ops, "tdev", T_VENDOR, T_DEVICE, T_CLASS, T_REV,
		     T_SUBSYS_VENDOR, T_SUBSYS);
	CHECK_I(pci_bar_init(&t->pci, 0, T_BAR0_SIZE), 0);
	CHECK_I(pci_bar_init(&t->pci, 2, T_BAR2_SIZE), 0);
	t->cap1 = pci_cap_add(&t->pci, T_CAP1_ID, cap1_body, sizeof(cap1_body));
	t->cap2 = pci_cap_add(&t->pci, T_CAP2_ID, cap2_body, sizeof(cap2_body));
	CHECK_I(t->cap1, 0x40);
	CHECK_I(t->cap2, 0x48);		/* 0x40 + 2 + 6, dword aligned */
	/* The device lets the guest write the first body byte of cap 2. */
	t->pci.wmask[t->cap2 + 2] = 0xff;
}

/* Forgets what the callbacks recorded so far. */
static void tdev_reset_log(struct tdev *t)
{
	mutex_lock(&t->pci.lock);
	t->n_moves = 0;
	t->n_written = 0;
	mutex_unlock(&t->pci.lock);
}

static void check_move(const struct tdev *t, unsigned i, unsigned bar, uint64_t old_gpa,
		       uint64_t new_gpa)
{
	const struct move *m = &t->moves[i];

	CHECK(i < t->n_moves, "bar_moved #%u missing (%u calls)", i, t->n_moves);
	if (i >= t->n_moves)
		return;
	CHECK(m->bar == bar && m->old_gpa == old_gpa && m->new_gpa == new_gpa,
	      "bar_moved #%u: bar %u %#llx -> %#llx, want bar %u %#llx -> %#llx", i, m->bar,
	      (unsigned long long)m->old_gpa, (unsigned long long)m->new_gpa, bar,
	      (unsigned long long)old_gpa, (unsigned long long)new_gpa);
}

/* ---- guest-side accesses ---- */

static uint32_t conf1_addr(unsigned bus, unsigned slot, unsigned fn, unsigned reg)
{
	return 0x80000000u | bus << 16 | slot << 11 | fn << 8 | (reg & 0xfc);
}

static uint32_t conf1_read(unsigned slot, unsigned fn, unsigned reg, unsigned len)
{
	uint32_t a = conf1_addr(0, slot, fn, reg), v = 0;

	CHECK(bus_write(&pio, CONF1_ADDR, &a, 4), "nothing at 0xcf8");
	bus_read(&pio, CONF1_DATA + (reg & 3), &v, len);
	return v;
}

static void conf1_write(unsigned slot, unsigned fn, unsigned reg, uint32_t v, unsigned len)
{
	uint32_t a = conf1_addr(0, slot, fn, reg);

	CHECK(bus_write(&pio, CONF1_ADDR, &a, 4), "nothing at 0xcf8");
	bus_write(&pio, CONF1_DATA + (reg & 3), &v, len);
}

static uint64_t ecam_gpa(unsigned slot, unsigned fn, unsigned reg)
{
	return ECAM_BASE + ((uint64_t)slot << 15 | fn << 12 | reg);
}

static uint32_t ecam_read(unsigned slot, unsigned fn, unsigned reg, unsigned len)
{
	uint32_t v = 0;

	CHECK(bus_read(&mmio, ecam_gpa(slot, fn, reg), &v, len), "nothing at ECAM %#x", reg);
	return v;
}

static void ecam_write(unsigned slot, unsigned fn, unsigned reg, uint32_t v, unsigned len)
{
	CHECK(bus_write(&mmio, ecam_gpa(slot, fn, reg), &v, len), "nothing at ECAM %#x", reg);
}

/* A dword from the MMIO bus; *hit says whether any device took it. */
static uint32_t mmio_read32(uint64_t gpa, bool *hit)
{
	uint32_t v = 0;

	*hit = bus_read(&mmio, gpa, &v, 4);
	return v;
}

static uint32_t bar_addr(unsigned slot, unsigned bar)
{
	return conf1_read(slot, 0, 0x10 + 4 * bar, 4);
}

/* ---- tests ---- */

static void test_enumeration(struct tdev *t, struct pci_root *root, struct rec_platform *rp)
{
	uint32_t a, v = 0;
	uint64_t big = 0;

	CHECK_U(t->pci.slot, 1);
	CHECK(t->pci.root == root && t->pci.platform == &rp->platform, "root or platform not set");
	/* The host bridge at 00:00.0: class 06/00, header type 0, no BARs. */
	CHECK_U(conf1_read(0, 0, 0x0a, 2), 0x0600);
	CHECK_U(conf1_read(0, 0, 0x0e, 1), 0);
	CHECK(conf1_read(0, 0, 0, 2) != 0xffff, "no vendor id at 00:00.0");
	for (unsigned bar = 0; bar < PCI_MAX_BARS; bar++)
		CHECK_U(bar_addr(0, bar), 0);
	CHECK_U(conf1_read(1, 0, 0, 4), T_DEVICE << 16 | T_VENDOR);
	for (unsigned slot = 2; slot < 32; slot++) {
		CHECK_U(conf1_read(slot, 0, 0, 4), ONES);
		CHECK_U(ecam_read(slot, 0, 0, 4), ONES);
	}
	for (unsigned fn = 1; fn < 8; fn++) {
		CHECK_U(conf1_read(1, fn, 0, 4), ONES);
		CHECK_U(ecam_read(1, fn, 0, 2), 0xffff);
		CHECK_U(ecam_read(0, fn, 0, 4), ONES);
	}
	/* Enable bit clear, or another bus: all ones, and writes go nowhere. */
	a = conf1_addr(0, 1, 0, 0) & ~0x80000000u;
	bus_write(&pio, CONF1_ADDR, &a, 4);
	bus_read(&pio, CONF1_DATA, &v, 4);
	CHECK_U(v, ONES);
	a = conf1_addr(1, 1, 0, 0x3c);
	bus_write(&pio, CONF1_ADDR, &a, 4);
	bus_read(&pio, CONF1_DATA, &v, 4);
	CHECK_U(v, ONES);
	v = 0x77;
	bus_write(&pio, CONF1_DATA, &v, 1);
	CHECK_U(conf1_read(1, 0, 0x3c, 1), 0);
	CHECK(!bus_read(&mmio, ECAM_BASE + (1 << 20) + (1 << 15), &v, 4) && v == ONES,
	      "ECAM of bus 1 decoded: %#x", v);
	CHECK(!bus_write(&mmio, ECAM_BASE + (1 << 20) + (1 << 15) + 0x3c, &v, 1),
	      "ECAM write to bus 1 decoded");
	CHECK(bus_read(&mmio, ECAM_BASE + (1 << 15) + 0x100, &big, 8) && big == UINT64_MAX,
	      "8-byte ECAM read gave %#llx", (unsigned long long)big);
}

static void test_header(struct tdev *t)
{
	uint32_t b0 = bar_addr(1, 0), b2 = bar_addr(1, 2);

	CHECK_U(conf1_read(1, 0, 0x08, 4), (uint32_t)T_CLASS << 8 | T_REV);
	CHECK_U(conf1_read(1, 0, 0x2c, 4), T_SUBSYS << 16 | T_SUBSYS_VENDOR);
	CHECK_U(conf1_read(1, 0, 0x0e, 1), 0);		/* type 0, single function */
	CHECK_U(conf1_read(1, 0, 0x3d, 1), 0);		/* no INTx pin */
	CHECK_U(conf1_read(1, 0, 0x30, 4), 0);		/* no expansion ROM */
	CHECK_U(conf1_read(1, 0, 0x04, 2), 0);		/* decoding off */
	CHECK(b0 >= WINDOW_BASE && b0 + T_BAR0_SIZE <= WINDOW_END && b0 % T_BAR0_SIZE == 0,
	      "BAR 0 at %#x", b0);
	CHECK(b2 >= WINDOW_BASE && b2 + T_BAR2_SIZE <= WINDOW_END && b2 % T_BAR2_SIZE == 0,
	      "BAR 2 at %#x", b2);
	CHECK(b2 >= b0 + T_BAR0_SIZE || b0 >= b2 + T_BAR2_SIZE, "BARs overlap");
	for (unsigned bar = 0; bar < PCI_MAX_BARS; bar++)
		CHECK(bar == 0 || bar == 2 || bar_addr(1, bar) == 0, "BAR %u implemented", bar);
	CHECK_U(t->pci.bar_gpa[0], PCI_BAR_UNMAPPED);
	/* Read-only registers keep their value. */
	for (unsigned reg = 0; reg < 0x40; reg += 4) {
		uint32_t before = conf1_read(1, 0, reg, 4);

		if (reg == 0x04 || reg == 0x0c || (reg >= 0x10 && reg < 0x28) || reg == 0x3c)
			continue;
		conf1_write(1, 0, reg, ONES, 4);
		CHECK(conf1_read(1, 0, reg, 4) == before, "register %#x changed to %#x", reg,
		      conf1_read(1, 0, reg, 4));
	}
	conf1_write(1, 0, 0x3c, ONES, 4);
	CHECK_U(conf1_read(1, 0, 0x3c, 4), 0xff);	/* interrupt line only */
	conf1_write(1, 0, 0x0c, ONES, 4);
	CHECK_U(conf1_read(1, 0, 0x0c, 4), 0xff);	/* cache line size only */
}

static void test_command_status(struct tdev *t)
{
	/* Writable command bits: memory space, bus master, INTx disable. */
	conf1_write(1, 0, 0x04, 0xffff, 2);
	CHECK_U(conf1_read(1, 0, 0x04, 2), 0x0406);
	conf1_write(1, 0, 0x04, 0, 2);
	CHECK_U(conf1_read(1, 0, 0x04, 2), 0);
	tdev_reset_log(t);
	/* The device sets received master abort (13) and master data parity
	 * error (8); the guest clears them by writing ones, one at a time. */
	mutex_lock(&t->pci.lock);
	t->pci.cfg[0x07] |= 0x21;
	mutex_unlock(&t->pci.lock);
	CHECK_U(conf1_read(1, 0, 0x06, 2), 0x2110);
	conf1_write(1, 0, 0x06, 0, 2);
	CHECK_U(conf1_read(1, 0, 0x06, 2), 0x2110);
	conf1_write(1, 0, 0x06, 0x2000, 2);
	CHECK_U(conf1_read(1, 0, 0x06, 2), 0x0110);
	/* A dword write to command+status: the status half clears W1C bits
	 * only, the capability-list bit stays. */
	conf1_write(1, 0, 0x04, 0xffff0000, 4);
	CHECK_U(conf1_read(1, 0, 0x04, 4), 0x00100000);
	CHECK_U(t->n_written, 3);
	CHECK(t->written_off == 0x04 && t->written_len == 4, "config_written(%#x, %u)",
	      t->written_off, t->written_len);
}

static void test_bar_sizing(struct tdev *t)
{
	uint32_t b0 = bar_addr(1, 0), b2 = bar_addr(1, 2);

	tdev_reset_log(t);
	conf1_write(1, 0, 0x10, ONES, 4);
	CHECK_U(bar_addr(1, 0), (uint32_t)~(T_BAR0_SIZE - 1));
	conf1_write(1, 0, 0x18, ONES, 4);
	CHECK_U(bar_addr(1, 2), (uint32_t)~(T_BAR2_SIZE - 1));
	conf1_write(1, 0, 0x14, ONES, 4);
	CHECK_U(bar_addr(1, 1), 0);			/* not implemented */
	conf1_write(1, 0, 0x10, b0 | 0xfff, 4);	/* low bits are read-only 0 */
	conf1_write(1, 0, 0x18, b2, 4);
	CHECK_U(bar_addr(1, 0), b0);
	CHECK_U(bar_addr(1, 2), b2);
	CHECK_U(t->n_moves, 0);				/* decoding is off */
}

/* Checks that BAR `bar` answers at gpa (and reaches the device with the
 * right BAR index and offset), or that nothing answers there. */
static void check_decodes(struct tdev *t, unsigned bar, uint64_t gpa, bool want)
{
	unsigned before = atomic_load(&t->reads[bar]);
	bool hit;
	uint32_t v = mmio_read32(gpa + 0x24, &hit);

	if (want) {
		CHECK(hit && v == bar_value(bar, 0x24) && t->last_off == 0x24,
		      "BAR %u at %#llx: hit %d value %#x", bar, (unsigned long long)gpa, hit, v);
		CHECK_U(atomic_load(&t->reads[bar]), before + 1);
	} else {
		CHECK(!hit && v == ONES, "BAR %u still decodes at %#llx (%#x)", bar,
		      (unsigned long long)gpa, v);
		CHECK_U(atomic_load(&t->reads[bar]), before);
	}
}

static void test_decode_and_move(struct tdev *t)
{
	uint64_t b0 = bar_addr(1, 0), b2 = bar_addr(1, 2), n0 = WINDOW_BASE + 0x100000;
	uint32_t v = 0xabcd;

	tdev_reset_log(t);
	check_decodes(t, 0, b0, false);
	ecam_write(1, 0, 0x04, 0x0002, 2);		/* memory space on */
	CHECK_U(t->n_moves, 2);
	check_move(t, 0, 0, PCI_BAR_UNMAPPED, b0);
	check_move(t, 1, 2, PCI_BAR_UNMAPPED, b2);
	check_decodes(t, 0, b0, true);
	check_decodes(t, 2, b2, true);
	CHECK(bus_write(&mmio, b2 + 8, &v, 2) && t->last_off == 8 && t->last_write == 0xabcd &&
	      atomic_load(&t->writes[2]) == 1, "BAR 2 write not delivered");
	CHECK_U(t->pci.bar_gpa[0], b0);
	/* Bus master alone changes nothing. */
	ecam_write(1, 0, 0x04, 0x0006, 2);
	CHECK_U(t->n_moves, 2);
	/* Relocation while decoding. */
	conf1_write(1, 0, 0x10, (uint32_t)n0, 4);
	CHECK_U(t->n_moves, 3);
	check_move(t, 2, 0, b0, n0);
	check_decodes(t, 0, b0, false);
	check_decodes(t, 0, n0, true);
	/* A byte write to the BAR's top byte moves it too. */
	ecam_write(1, 0, 0x13, 0xd1, 1);
	check_move(t, 3, 0, n0, 0xd1100000);
	check_decodes(t, 0, 0xd1100000, true);
	/* Decoding off unmaps both, on maps them where they are. */
	conf1_write(1, 0, 0x04, 0, 2);
	check_move(t, 4, 0, 0xd1100000, PCI_BAR_UNMAPPED);
	check_move(t, 5, 2, b2, PCI_BAR_UNMAPPED);
	check_decodes(t, 0, 0xd1100000, false);
	check_decodes(t, 2, b2, false);
	conf1_write(1, 0, 0x10, (uint32_t)b0, 4);	/* moving while off: no call */
	CHECK_U(t->n_moves, 6);
	conf1_write(1, 0, 0x04, 0x0002, 2);
	check_move(t, 6, 0, PCI_BAR_UNMAPPED, b0);
	check_move(t, 7, 2, PCI_BAR_UNMAPPED, b2);
	CHECK_U(t->n_moves, 8);
	CHECK(!atomic_load(&t->unlocked_callback), "a callback ran without the pci lock");
}

/* Decoding is on (test_decode_and_move). BAR 2 over the ECAM, then over
 * BAR 0: refused without harm; back in free space: decodes again. */
static void test_conflict(struct tdev *t)
{
	uint64_t b0 = bar_addr(1, 0), b2 = bar_addr(1, 2), host = conf1_read(0, 0, 0, 4);
	bool hit;

	tdev_reset_log(t);
	conf1_write(1, 0, 0x18, (uint32_t)ECAM_BASE, 4);
	CHECK_U(t->n_moves, 1);
	check_move(t, 0, 2, b2, PCI_BAR_UNMAPPED);
	CHECK_U(t->pci.bar_gpa[2], PCI_BAR_UNMAPPED);
	CHECK(mmio_read32(ECAM_BASE, &hit) == host && hit, "the ECAM lost its range");
	conf1_write(1, 0, 0x18, (uint32_t)b0 + 0x1000, 4);
	CHECK_U(t->n_moves, 1);				/* still not decoding */
	check_decodes(t, 0, b0, true);
	conf1_write(1, 0, 0x18, 0x10000000, 4);	/* outside the window: the guest's choice */
	check_move(t, 1, 2, PCI_BAR_UNMAPPED, 0x10000000);
	check_decodes(t, 2, 0x10000000, true);
	conf1_write(1, 0, 0x18, (uint32_t)b2, 4);
	check_move(t, 2, 2, 0x10000000, b2);
	check_decodes(t, 2, b2, true);
}

static void test_capabilities(struct tdev *t)
{
	unsigned want[][2] = { { 0x40, T_CAP1_ID }, { 0x48, T_CAP2_ID } }, n = 0;
	unsigned ptr = conf1_read(1, 0, 0x34, 1);

	CHECK(conf1_read(1, 0, 0x06, 2) & 0x10, "status: no capability list");
	for (; ptr && n < 48; n++, ptr = conf1_read(1, 0, ptr + 1, 1)) {
		CHECK(n < 2 && ptr == want[n][0] && conf1_read(1, 0, ptr, 1) == want[n][1],
		      "capability %u at %#x id %#x", n, ptr, conf1_read(1, 0, ptr, 1));
		if (n >= 2)
			break;
	}
	CHECK_U(n, 2);
	for (unsigned i = 0; i < sizeof(cap1_body); i++)
		CHECK_U(ecam_read(1, 0, 0x42 + i, 1), cap1_body[i]);
	/* Pointers and bodies are read-only unless the device says otherwise. */
	conf1_write(1, 0, 0x40, ONES, 4);
	conf1_write(1, 0, 0x34, 0, 1);
	CHECK_U(conf1_read(1, 0, 0x40, 4), 0xaa084800u | T_CAP1_ID);
	CHECK_U(conf1_read(1, 0, 0x34, 1), 0x40);
	tdev_reset_log(t);
	conf1_write(1, 0, 0x48, 0x5c5c5c5c, 4);
	CHECK_U(conf1_read(1, 0, 0x48, 4), 0x025c0000u | T_CAP2_ID);
	CHECK(t->n_written == 1 && t->written_off == 0x48 && t->written_len == 4,
	      "config_written %u times, last (%#x, %u)", t->n_written, t->written_off,
	      t->written_len);
	ecam_write(1, 0, 0x4a, 0x33, 1);
	CHECK_U(conf1_read(1, 0, 0x4a, 1), 0x33);
	CHECK(t->written_off == 0x4a && t->written_len == 1, "config_written(%#x, %u)",
	      t->written_off, t->written_len);
	CHECK(!atomic_load(&t->unlocked_callback), "config_written without the pci lock");
}

/* pci_cap_add puts capabilities on dword boundaries, up to 0x100. */
static void test_cap_space(void)
{
	static struct pci_dev d;
	uint8_t body[2] = { 0 };
	int off = 0;

	pci_dev_init(&d, &tdev_ops, "full", 1, 2, 0, 0, 0, 0);
	CHECK_I(pci_cap_add(&d, 9, body, 255), -ENOSPC);
	CHECK_I(pci_cap_add(&d, 9, body, 1), 0x40);
	for (unsigned i = 0; i < 46; i++)	/* from 0x44: dword aligned */
		off = pci_cap_add(&d, 9, body, sizeof(body));
	CHECK_I(off, 0xf8);
	CHECK_I(pci_cap_add(&d, 9, body, 3), -ENOSPC);	/* would end at 0x101 */
	CHECK_I(pci_cap_add(&d, 9, body, 2), 0xfc);	/* ends exactly at 0x100 */
	CHECK_I(pci_cap_add(&d, 9, NULL, 0), -ENOSPC);
	CHECK_U(d.cfg[0xf9], 0xfc);
	CHECK_U(d.cfg[0xfd], 0);
	CHECK_I(pci_bar_init(&d, 6, 0x1000), -EINVAL);
	CHECK_I(pci_bar_init(&d, 0, 0x800), -EINVAL);
	CHECK_I(pci_bar_init(&d, 0, 0x3000), -EINVAL);
	CHECK_I(pci_bar_init(&d, 0, 1ULL << 32), -EINVAL);
	mutex_destroy(&d.lock);
}

static void test_conf1_widths(void)
{
	uint32_t a = conf1_addr(0, 1, 0, 0x08) | 0x7f000003, v = 0;
	uint64_t v64 = 0;
	uint8_t b = 1;

	bus_write(&pio, CONF1_ADDR, &a, 4);
	bus_read(&pio, CONF1_ADDR, &v, 4);
	CHECK_U(v, conf1_addr(0, 1, 0, 0x08));		/* reserved bits read as 0 */
	/* Linux's probe writes a byte to 0xcfb: not the address register. */
	bus_write(&pio, CONF1_ADDR + 3, &b, 1);
	bus_read(&pio, CONF1_ADDR, &v, 4);
	CHECK_U(v, conf1_addr(0, 1, 0, 0x08));
	v = 0;
	bus_read(&pio, CONF1_ADDR, &v, 1);
	CHECK_U(v, 0xff);
	bus_read(&pio, CONF1_ADDR + 2, &v, 2);
	CHECK_U(v, 0xffff);
	for (unsigned i = 0; i < 4; i++) {
		v = 0;
		bus_read(&pio, CONF1_DATA + i, &v, 1);
		CHECK_U(v, ((uint32_t)T_CLASS << 8 | T_REV) >> (8 * i) & 0xff);
	}
	for (unsigned i = 0; i < 3; i++) {
		v = 0;
		bus_read(&pio, CONF1_DATA + i, &v, 2);
		CHECK_U(v, ((uint32_t)T_CLASS << 8 | T_REV) >> (8 * i) & 0xffff);
	}
	v = 0;
	CHECK(!bus_read(&pio, CONF1_DATA + 3, &v, 2) && v == 0xffff, "word at 0xcff: %#x", v);
	CHECK(!bus_read(&pio, CONF1_DATA + 2, &v, 4) && v == ONES, "dword at 0xcfe: %#x", v);
	CHECK(bus_read(&pio, CONF1_ADDR, &v64, 8) && v64 == UINT64_MAX, "qword at 0xcf8");
	bus_write(&pio, CONF1_ADDR, &v64, 8);
	bus_read(&pio, CONF1_ADDR, &v, 4);
	CHECK_U(v, conf1_addr(0, 1, 0, 0x08));
	/* Byte and word writes land at their offset in the dword. */
	conf1_write(1, 0, 0x3d, 0x12, 1);		/* interrupt pin: read-only */
	conf1_write(1, 0, 0x3c, 0x34, 1);
	CHECK_U(conf1_read(1, 0, 0x3c, 2), 0x0034);
	conf1_write(1, 0, 0x3e, 0xffff, 2);		/* min_gnt/max_lat: read-only */
	CHECK_U(conf1_read(1, 0, 0x3c, 4), 0x34);
}

static void test_ecam_agrees(void)
{
	uint32_t v;

	for (unsigned slot = 0; slot < 3; slot++)
		for (unsigned reg = 0; reg < 0x60; reg++)
			for (unsigned len = 1; len <= 4; len *= 2) {
				if (reg % len)
					continue;
				CHECK(ecam_read(slot, 0, reg, len) == conf1_read(slot, 0, reg, len),
				      "slot %u reg %#x len %u: ECAM %#x conf1 %#x", slot, reg, len,
				      ecam_read(slot, 0, reg, len), conf1_read(slot, 0, reg, len));
			}
	ecam_write(1, 0, 0x3c, 0x56, 1);
	CHECK_U(conf1_read(1, 0, 0x3c, 1), 0x56);
	conf1_write(1, 0, 0x3c, 0x78, 1);
	CHECK_U(ecam_read(1, 0, 0x3c, 1), 0x78);
	/* Extended config space exists (zero, read-only) through ECAM only. */
	CHECK_U(ecam_read(1, 0, 0x100, 4), 0);
	ecam_write(1, 0, 0xffc, ONES, 4);
	CHECK_U(ecam_read(1, 0, 0xffc, 4), 0);
	/* Unaligned ECAM accesses read all ones and write nothing. */
	CHECK_U(ecam_read(1, 0, 0x3d, 2), 0xffff);
	CHECK_U(ecam_read(1, 0, 0x02, 4), ONES);
	ecam_write(1, 0, 0x3b, 0x11223344, 4);
	CHECK_U(ecam_read(1, 0, 0x3c, 1), 0x78);
	v = ecam_read(1, 0, 0x3c, 4);
	CHECK_U(v & 0xff, 0x78);
}

/* A function with BARs of the given sizes (0: none), for allocation tests. */
static void sized_init(struct tdev *t, const uint64_t size[PCI_MAX_BARS])
{
	memset(t, 0, sizeof(*t));
	pci_dev_init(&t->pci, &tdev_ops, "sized", T_VENDOR, T_DEVICE, T_CLASS, 0, 0, 0);
	for (unsigned i = 0; i < PCI_MAX_BARS; i++)
		if (size[i])
			CHECK_I(pci_bar_init(&t->pci, i, size[i]), 0);
}

/* Every BAR of every added function lies in the window, naturally
 * aligned, and no two overlap. */
static void check_layout(struct tdev *const *t, unsigned n)
{
	for (unsigned i = 0; i < n * PCI_MAX_BARS; i++) {
		const struct tdev *x = t[i / PCI_MAX_BARS];
		uint64_t xs = x->pci.bar_size[i % PCI_MAX_BARS], xa;

		if (!xs)
			continue;
		xa = bar_addr(x->pci.slot, i % PCI_MAX_BARS);
		CHECK(xa >= WINDOW_BASE && xa + xs <= WINDOW_END && xa % xs == 0,
		      "slot %u BAR %u at %#llx size %#llx", x->pci.slot, i % PCI_MAX_BARS,
		      (unsigned long long)xa, (unsigned long long)xs);
		for (unsigned j = 0; j < i; j++) {
			const struct tdev *y = t[j / PCI_MAX_BARS];
			uint64_t ys = y->pci.bar_size[j % PCI_MAX_BARS];
			uint64_t ya = ys ? bar_addr(y->pci.slot, j % PCI_MAX_BARS) : 0;

			CHECK(!ys || xa >= ya + ys || ya >= xa + xs, "BARs %u and %u overlap", i, j);
		}
	}
}

static void test_dev_add(struct rec_platform *rp)
{
	static const uint64_t sizes[4][PCI_MAX_BARS] = {
		{ 0x1000 }, { 0x10000, 0x1000 }, { 0, 0, 0, 0, 0, 0x100000 }, { 0x10000000 },
	};
	static struct tdev dev[PCI_MAX_SLOTS + 1];
	struct tdev *added[4];
	struct pci_root *root;
	uint64_t a0;

	CHECK_I(pci_root_create(&root, &pio, &mmio, &rp->platform), 0);
	for (unsigned i = 0; i < 4; i++) {
		sized_init(&dev[i], sizes[i]);
		added[i] = &dev[i];
		CHECK_I(pci_dev_add(root, &dev[i].pci), 0);
		CHECK_U(dev[i].pci.slot, i + 1);
	}
	check_layout(added, 4);
	/* The 256 MiB BAR took the window's top half: nothing else fits. */
	sized_init(&dev[4], sizes[0]);
	CHECK_I(pci_dev_add(root, &dev[4].pci), -ENOSPC);
	CHECK_U(conf1_read(5, 0, 0, 4), ONES);
	/* Removing a decoding function unmaps its BAR and empties the slot. */
	a0 = bar_addr(1, 0);
	conf1_write(1, 0, 0x04, 0x0002, 2);
	check_decodes(&dev[0], 0, a0, true);
	tdev_reset_log(&dev[0]);
	pci_dev_del(root, &dev[0].pci);
	check_move(&dev[0], 0, 0, a0, PCI_BAR_UNMAPPED);
	check_decodes(&dev[0], 0, a0, false);
	CHECK_U(conf1_read(1, 0, 0, 4), ONES);
	conf1_write(1, 0, 0x04, 0x0002, 2);		/* goes nowhere */
	CHECK_U(dev[0].pci.bar_gpa[0], PCI_BAR_UNMAPPED);
	/* BAR-less functions fill the free slots, lowest first, up to 31. */
	for (unsigned i = 4; i < PCI_MAX_SLOTS + 1; i++) {
		sized_init(&dev[i], (const uint64_t[PCI_MAX_BARS]){ 0 });
		CHECK_I(pci_dev_add(root, &dev[i].pci), i < PCI_MAX_SLOTS ? 0 : -ENOSPC);
		if (i < PCI_MAX_SLOTS)
			CHECK_U(dev[i].pci.slot, i == 4 ? 1 : i);
	}
	CHECK_U(conf1_read(31, 0, 0, 4), T_DEVICE << 16 | T_VENDOR);
	for (unsigned i = 1; i < PCI_MAX_SLOTS; i++)
		pci_dev_del(root, &dev[i].pci);
	pci_root_destroy(root);
	rcu_barrier();
	CHECK(!bus_read(&pio, CONF1_ADDR, &a0, 4) && !bus_read(&mmio, ECAM_BASE, &a0, 4),
	      "config mechanisms still registered");
	for (unsigned i = 0; i < PCI_MAX_SLOTS; i++)
		mutex_destroy(&dev[i].pci.lock);
}

/* ---- concurrent access ---- */

#define STRESS_NS (300 * 1000000ULL)

struct stress {
	struct tdev *t;
	uint64_t b0, other;		/* BAR 0's two homes */
	atomic_bool stop;
	_Atomic unsigned long writes, reads, hits, bad;
};

/* Toggles decoding and moves BAR 0 through ECAM only. */
static void *stress_writer(void *arg)
{
	struct stress *s = arg;

	rcu_register_thread();
	for (unsigned long i = 0; !atomic_load(&s->stop); i++) {
		ecam_write(1, 0, 0x04, i & 1 ? 0x0002 : 0, 2);
		ecam_write(1, 0, 0x10, (uint32_t)(i & 2 ? s->other : s->b0), 4);
		atomic_fetch_add(&s->writes, 1);
	}
	rcu_unregister_thread();
	return NULL;
}

/* Reads the ids through conf1 (this thread is its only user) and BAR 0
 * wherever it may be: a hit must reach BAR 0 at the right offset. */
static void *stress_reader(void *arg)
{
	struct stress *s = arg;

	rcu_register_thread();
	while (!atomic_load(&s->stop)) {
		bool hit;
		uint32_t v = mmio_read32(s->b0 + 0x24, &hit);

		if (conf1_read(1, 0, 0, 4) != (T_DEVICE << 16 | T_VENDOR) ||
		    (hit ? v != bar_value(0, 0x24) : v != ONES))
			atomic_fetch_add(&s->bad, 1);
		atomic_fetch_add(&s->hits, hit);
		v = mmio_read32(s->other + 0x24, &hit);
		if (hit ? v != bar_value(0, 0x24) : v != ONES)
			atomic_fetch_add(&s->bad, 1);
		atomic_fetch_add(&s->reads, 1);
	}
	rcu_unregister_thread();
	return NULL;
}

/* Each bar_moved call starts where the previous one for that BAR ended. */
static void check_move_chain(const struct tdev *t)
{
	uint64_t at[PCI_MAX_BARS];
	unsigned n = t->n_moves < MAX_MOVES ? t->n_moves : MAX_MOVES;

	for (unsigned i = 0; i < PCI_MAX_BARS; i++)
		at[i] = PCI_BAR_UNMAPPED;
	for (unsigned i = 0; i < n; i++) {
		const struct move *m = &t->moves[i];

		CHECK(m->old_gpa == at[m->bar] && m->new_gpa != m->old_gpa,
		      "move %u: bar %u %#llx -> %#llx, was at %#llx", i, m->bar,
		      (unsigned long long)m->old_gpa, (unsigned long long)m->new_gpa,
		      (unsigned long long)at[m->bar]);
		at[m->bar] = m->new_gpa;
	}
}

static void test_stress(struct tdev *t)
{
	struct stress s = { .t = t, .b0 = bar_addr(1, 0), .other = WINDOW_BASE + 0x200000 };
	uint64_t start = clock_ns();
	pthread_t w, r;

	conf1_write(1, 0, 0x04, 0, 2);
	tdev_reset_log(t);
	if (pthread_create(&w, NULL, stress_writer, &s) || pthread_create(&r, NULL, stress_reader, &s))
		abort();
	while (clock_ns() - start < STRESS_NS)
		usleep(10000);
	atomic_store(&s.stop, true);
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	printf("stress: %lu config writes, %lu reads (%lu BAR hits)\n", atomic_load(&s.writes),
	       atomic_load(&s.reads), atomic_load(&s.hits));
	CHECK(atomic_load(&s.writes) >= 100 && atomic_load(&s.reads) >= 100, "too few operations");
	CHECK_U(atomic_load(&s.bad), 0);
	CHECK(!atomic_load(&t->unlocked_callback), "a callback ran without the pci lock");
	mutex_lock(&t->pci.lock);
	check_move_chain(t);
	mutex_unlock(&t->pci.lock);
	ecam_write(1, 0, 0x10, (uint32_t)s.b0, 4);
}

int main(void)
{
	static struct tdev t;
	struct rec_platform rp = { .platform = { .ops = &rec_platform_ops } };
	struct pci_root *root;

	rcu_register_thread();
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	CHECK_I(pci_root_create(&root, &pio, &mmio, &rp.platform), 0);
	tdev_init(&t);
	CHECK_I(pci_dev_add(root, &t.pci), 0);
	test_enumeration(&t, root, &rp);
	test_header(&t);
	test_command_status(&t);
	test_bar_sizing(&t);
	test_decode_and_move(&t);
	test_conflict(&t);
	test_capabilities(&t);
	test_cap_space();
	test_conf1_widths();
	test_ecam_agrees();
	test_stress(&t);
	pci_dev_del(root, &t.pci);
	pci_root_destroy(root);
	test_dev_add(&rp);
	CHECK_U(atomic_load(&rp.calls), 0);
	rcu_barrier();
	mutex_destroy(&t.pci.lock);
	bus_destroy(&pio);
	bus_destroy(&mmio);
	rcu_unregister_thread();
	if (test_failures) {
		fprintf(stderr, "test_pci: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_pci: all checks passed\n");
	return 0;
}
