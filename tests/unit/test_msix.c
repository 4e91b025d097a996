/*
 * Unit test of dev/msix.c: a PCI function with MSI-X on a recording
 * platform, driven through its config bytes (stored through wmask, then
 * msix_config_written, as pci.c does) and its table and PBA
 * (msix_table_read/msix_table_write, as the device's BAR ops do), all under
 * the function's lock. Interrupts are read back from the vectors' eventfds.
 *
 * Covers the capability layout, enable/disable, function and vector masks,
 * pending bits set while masked and delivered on unmask, message updates
 * reaching the platform, a refused route, reset, hostile accesses, and a
 * two-thread notify-versus-unmask race that must lose no interrupt.
 *
 * Threads: main, plus a notifier thread in the race test. Exit 0 pass, 1 fail.
 */
#include "tests/check.h"
#include "core/mutex.h"
#include "core/util.h"
#include "dev/msix.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CAP_CTRL 2
#define ENABLE 0x8000
#define FMASK 0x4000
#define ADDR 0xfee00000u
#define MAX_FDS 80

/* Remembers, per eventfd, the last message the platform was told. */
struct rec {
	struct pci_platform platform;
	struct mutex lock;
	unsigned calls;			/* irqfd_set calls */
	unsigned next_handle;
	int fail;			/* irqfd_set returns this while non-zero */
	struct {
		int fd;
		bool connected;
		struct pci_msi_msg msg;
	} fds[MAX_FDS];
};

static int rec_irqfd_set(struct pci_platform *p, int fd, const struct pci_msi_msg *msg,
			 unsigned *handle)
{
	struct rec *r = container_of(p, struct rec, platform);
	int ret = 0;

	mutex_lock(&r->lock);
	r->calls++;
	if ((r->fail || r->next_handle == MAX_FDS) && msg && !*handle) {
		ret = r->fail ? r->fail : -ENOSPC;
	} else if (!msg) {
		CHECK(*handle != 0, "disconnecting fd %d, which has no handle", fd);
		r->fds[*handle - 1].connected = false;
		*handle = 0;
	} else {
		if (!*handle) {
			*handle = ++r->next_handle;
			r->fds[*handle - 1].fd = fd;
		}
		CHECK_I(r->fds[*handle - 1].fd, fd);
		r->fds[*handle - 1].connected = true;
		r->fds[*handle - 1].msg = *msg;
	}
	mutex_unlock(&r->lock);
	return ret;
}

static int rec_ioeventfd_set(struct pci_platform *p, uint64_t gpa, unsigned len, int fd,
			     bool assign)
{
	return -ENOTSUP;
}

static const struct pci_platform_ops rec_ops = {
	.irqfd_set = rec_irqfd_set,
	.ioeventfd_set = rec_ioeventfd_set,
};

static struct rec rec;

/* The message the platform delivers for fd, or addr 0 when none. */
static struct pci_msi_msg rec_msg(int fd)
{
	struct pci_msi_msg msg = { 0, 0 };

	mutex_lock(&rec.lock);
	for (unsigned i = 0; i < rec.next_handle; i++)
		if (rec.fds[i].fd == fd && rec.fds[i].connected)
			msg = rec.fds[i].msg;
	mutex_unlock(&rec.lock);
	return msg;
}

static unsigned rec_calls(void)
{
	mutex_lock(&rec.lock);
	unsigned n = rec.calls;

	mutex_unlock(&rec.lock);
	return n;
}

static void noop_bar(struct pci_dev *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
}

static const struct pci_dev_ops dev_ops = { .bar_read = noop_bar };

struct fn {
	struct pci_dev d;
	struct msix m;
};

static void fn_init(struct fn *f, unsigned n)
{
	pci_dev_init(&f->d, &dev_ops, "msix-test", 0x1af4, 0x1042, 0x010000, 1, 0x1af4, 2);
	CHECK_I(pci_bar_init(&f->d, 1, 0x4000), 0);
	CHECK_I(msix_init(&f->m, &f->d, n, 1, 0x800), 0);
	f->d.platform = &rec.platform;
}

/* What pci.c does for a guest config write: keep the read-only bits, then
 * tell the capability. */
static void cfg_write16(struct fn *f, unsigned off, uint16_t val)
{
	mutex_lock(&f->d.lock);
	for (unsigned i = 0; i < 2; i++) {
		uint8_t b = (uint8_t)(val >> (8 * i)), w = f->d.wmask[off + i];

		f->d.cfg[off + i] = (uint8_t)((f->d.cfg[off + i] & ~w) | (b & w));
	}
	msix_config_written(&f->m, off, 2);
	mutex_unlock(&f->d.lock);
}

static uint16_t ctrl_get(struct fn *f)
{
	return (uint16_t)(f->d.cfg[f->m.cap + CAP_CTRL] | f->d.cfg[f->m.cap + CAP_CTRL + 1] << 8);
}

static void ctrl_set(struct fn *f, uint16_t bits)
{
	cfg_write16(f, f->m.cap + CAP_CTRL, bits);
}

static void tbl_write(struct fn *f, uint64_t off, uint64_t val, unsigned len)
{
	mutex_lock(&f->d.lock);
	msix_table_write(&f->m, off, &val, len);
	mutex_unlock(&f->d.lock);
}

static uint64_t tbl_read(struct fn *f, uint64_t off, unsigned len)
{
	uint64_t val = ~0ULL;

	mutex_lock(&f->d.lock);
	msix_table_read(&f->m, off, &val, len);
	mutex_unlock(&f->d.lock);
	return len < 8 ? val & ((1ULL << (8 * len)) - 1) : val;
}

static void vec_msg(struct fn *f, unsigned v, uint64_t addr, uint32_t data)
{
	tbl_write(f, v * 16, (uint32_t)addr, 4);
	tbl_write(f, v * 16 + 4, addr >> 32, 4);
	tbl_write(f, v * 16 + 8, data, 4);
}

static void vec_mask(struct fn *f, unsigned v, bool masked)
{
	tbl_write(f, v * 16 + 12, masked, 4);
}

static uint64_t pba(struct fn *f, unsigned q)
{
	return tbl_read(f, (uint64_t)f->m.n * 16 + 8 * q, 8);
}

/* How many interrupts the vector's eventfd has collected (and clears it). */
static uint64_t irqs(struct fn *f, unsigned v)
{
	uint64_t n = 0;

	if (read(f->m.vec[v].fd, &n, sizeof(n)) != sizeof(n))
		n = 0;
	return n;
}

static void test_layout(void)
{
	struct fn f;
	const uint8_t *c;
	uint32_t table, pbao;

	CHECK_U(msix_bar_size(1), 16 + 8);
	CHECK_U(msix_bar_size(64), 64 * 16 + 8);
	CHECK_U(msix_bar_size(65), 65 * 16 + 16);
	CHECK_U(msix_bar_size(MSIX_MAX_VECTORS), MSIX_MAX_VECTORS * 16 + MSIX_MAX_VECTORS / 8);

	pci_dev_init(&f.d, &dev_ops, "bad", 1, 2, 0, 0, 0, 0);
	CHECK_I(msix_init(&f.m, &f.d, 0, 1, 0), -EINVAL);
	CHECK_I(msix_init(&f.m, &f.d, MSIX_MAX_VECTORS + 1, 1, 0), -EINVAL);
	CHECK_I(msix_init(&f.m, &f.d, 4, PCI_MAX_BARS, 0), -EINVAL);
	CHECK_I(msix_init(&f.m, &f.d, 4, 1, 4), -EINVAL);
	CHECK_I(msix_init(&f.m, &f.d, 4, 1, UINT32_MAX - 7), -EINVAL);

	fn_init(&f, 3);
	c = &f.d.cfg[f.m.cap];
	memcpy(&table, c + 4, 4);
	memcpy(&pbao, c + 8, 4);
	CHECK_U(c[0], 0x11);
	CHECK_U(ctrl_get(&f), 2);
	CHECK_U(table, 0x800 | 1);
	CHECK_U(pbao, (0x800 + 3 * 16) | 1);
	CHECK_U(f.m.pba_off, 0x800 + 3 * 16);
	CHECK_U(f.d.wmask[f.m.cap + CAP_CTRL], 0);
	CHECK_U(f.d.wmask[f.m.cap + CAP_CTRL + 1], 0xc0);
	/* The table size is read-only. */
	ctrl_set(&f, 0x07ff);
	CHECK_U(ctrl_get(&f), 2);
	for (unsigned v = 0; v < 3; v++) {
		CHECK_U(tbl_read(&f, v * 16, 8), 0);
		CHECK_U(tbl_read(&f, v * 16 + 8, 4), 0);
		CHECK_U(tbl_read(&f, v * 16 + 12, 4), 1);
		CHECK(f.m.vec[v].fd >= 0, "vector %u has no eventfd", v);
	}
	CHECK_U(pba(&f, 0), 0);
	msix_destroy(&f.m);
}

/* Enable with the vector masked; notify pends; unmask delivers it. */
static void test_pending_then_unmask(void)
{
	struct fn f;
	unsigned calls = rec_calls();
	int fd1;

	fn_init(&f, 2);
	fd1 = f.m.vec[1].fd;
	ctrl_set(&f, ENABLE);
	CHECK_U(ctrl_get(&f), ENABLE | 1);
	vec_msg(&f, 1, ADDR | 0x1000, 0x41);
	msix_notify(&f.m, 1);
	CHECK_U(irqs(&f, 1), 0);
	CHECK_U(pba(&f, 0), 2);
	CHECK_U(tbl_read(&f, f.m.n * 16, 4), 2);
	CHECK_U(tbl_read(&f, f.m.n * 16 + 4, 4), 0);
	CHECK_U(rec_calls(), calls);
	CHECK_U(rec_msg(f.m.vec[1].fd).addr, 0);

	vec_mask(&f, 1, false);
	CHECK_U(rec_msg(f.m.vec[1].fd).addr, ADDR | 0x1000);
	CHECK_U(rec_msg(f.m.vec[1].fd).data, 0x41);
	CHECK_U(irqs(&f, 1), 1);
	CHECK_U(pba(&f, 0), 0);
	msix_notify(&f.m, 1);
	msix_notify(&f.m, 1);
	CHECK_U(irqs(&f, 1), 2);
	CHECK_U(irqs(&f, 0), 0);
	CHECK_U(pba(&f, 0), 0);
	/* Vector 0 is still masked and has no message. */
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, 0);
	msix_notify(&f.m, 0);
	CHECK_U(pba(&f, 0), 1);
	msix_destroy(&f.m);
	CHECK_U(rec_msg(fd1).addr, 0);
}

/* The function mask holds every vector; toggling it costs no route call. */
static void test_function_mask(void)
{
	struct fn f;
	unsigned calls;

	fn_init(&f, 2);
	ctrl_set(&f, ENABLE | FMASK);
	vec_msg(&f, 0, ADDR, 0x30);
	vec_msg(&f, 1, ADDR, 0x31);
	vec_mask(&f, 0, false);
	vec_mask(&f, 1, false);
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, 0);
	msix_notify(&f.m, 0);
	CHECK_U(irqs(&f, 0), 0);
	CHECK_U(pba(&f, 0), 1);

	ctrl_set(&f, ENABLE);
	CHECK_U(irqs(&f, 0), 1);
	CHECK_U(irqs(&f, 1), 0);
	CHECK_U(pba(&f, 0), 0);
	CHECK_U(rec_msg(f.m.vec[1].fd).data, 0x31);
	calls = rec_calls();
	ctrl_set(&f, ENABLE | FMASK);
	msix_notify(&f.m, 1);
	CHECK_U(irqs(&f, 1), 0);
	CHECK_U(pba(&f, 0), 2);
	ctrl_set(&f, ENABLE);
	CHECK_U(irqs(&f, 1), 1);
	CHECK_U(rec_calls(), calls);
	/* A config write elsewhere changes nothing. */
	cfg_write16(&f, 0x04, 0x0006);
	CHECK_U(rec_calls(), calls);
	msix_destroy(&f.m);
}

/* Message changes reach the platform on the same connection; disabling
 * MSI-X disconnects, and a vector without an address is never connected. */
static void test_messages(void)
{
	struct fn f;
	unsigned calls;

	fn_init(&f, 1);
	ctrl_set(&f, ENABLE);
	vec_mask(&f, 0, false);
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, 0);
	msix_notify(&f.m, 0);
	CHECK_U(irqs(&f, 0), 0);
	CHECK_U(pba(&f, 0), 1);
	tbl_write(&f, 0, ADDR | 0x2000 | 3, 4);		/* the low two bits are reserved */
	CHECK_U(tbl_read(&f, 0, 4), ADDR | 0x2000);
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, ADDR | 0x2000);
	CHECK_U(irqs(&f, 0), 1);
	calls = rec_calls();
	tbl_write(&f, 8, 0x55, 4);
	CHECK_U(rec_msg(f.m.vec[0].fd).data, 0x55);
	CHECK_U(rec_calls(), calls + 1);
	tbl_write(&f, 8, 0x55, 4);
	CHECK_U(rec_calls(), calls + 1);
	/* One 8-byte write: address high and low together. */
	tbl_write(&f, 0, 0x00000001fee01000ULL, 8);
	CHECK_U(tbl_read(&f, 0, 8), 0x00000001fee01000ULL);
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, 0x00000001fee01000ULL);

	ctrl_set(&f, 0);
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, 0);
	msix_notify(&f.m, 0);
	CHECK_U(irqs(&f, 0), 0);
	ctrl_set(&f, ENABLE);
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, 0x00000001fee01000ULL);
	CHECK_U(irqs(&f, 0), 1);
	/* data + vector control in one 8-byte write masks the vector. */
	tbl_write(&f, 8, 0x0000000100000066ULL, 8);
	CHECK_U(tbl_read(&f, 8, 8), 0x0000000100000066ULL);
	msix_notify(&f.m, 0);
	CHECK_U(irqs(&f, 0), 0);
	tbl_write(&f, 12, 0xfffffffe, 4);		/* unmasks; reserved bits read 0 */
	CHECK_U(tbl_read(&f, 12, 4), 0);
	CHECK_U(rec_msg(f.m.vec[0].fd).data, 0x66);
	CHECK_U(irqs(&f, 0), 1);
	msix_destroy(&f.m);
}

/* A route the platform refuses leaves the vector masked, so events pend
 * until a later change connects it. */
static void test_refused_route(void)
{
	struct fn f;

	fn_init(&f, 1);
	ctrl_set(&f, ENABLE);
	vec_msg(&f, 0, ADDR, 0x20);
	rec.fail = -ENOSPC;
	vec_mask(&f, 0, false);
	rec.fail = 0;
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, 0);
	msix_notify(&f.m, 0);
	CHECK_U(irqs(&f, 0), 0);
	CHECK_U(pba(&f, 0), 1);
	CHECK_U(f.m.errors, 1);
	vec_mask(&f, 0, true);
	vec_mask(&f, 0, false);
	CHECK_U(rec_msg(f.m.vec[0].fd).addr, ADDR);
	CHECK_U(irqs(&f, 0), 1);
	msix_destroy(&f.m);
}

static void test_reset(void)
{
	struct fn f;

	fn_init(&f, 2);
	ctrl_set(&f, ENABLE | FMASK);
	vec_msg(&f, 1, ADDR, 0x22);
	vec_mask(&f, 1, false);
	msix_notify(&f.m, 1);
	ctrl_set(&f, ENABLE);
	CHECK_U(irqs(&f, 1), 1);
	vec_mask(&f, 0, false);
	msix_notify(&f.m, 0);
	CHECK_U(pba(&f, 0), 1);

	mutex_lock(&f.d.lock);
	msix_reset(&f.m);
	mutex_unlock(&f.d.lock);
	CHECK_U(ctrl_get(&f), 1);
	CHECK_U(rec_msg(f.m.vec[1].fd).addr, 0);
	CHECK_U(pba(&f, 0), 0);
	for (unsigned v = 0; v < 2; v++) {
		CHECK_U(tbl_read(&f, v * 16, 8), 0);
		CHECK_U(tbl_read(&f, v * 16 + 8, 8), 1ULL << 32);
	}
	msix_notify(&f.m, 1);
	CHECK_U(irqs(&f, 1), 0);
	msix_destroy(&f.m);
}

/* Sizes other than 4 and 8, misaligned or out-of-range offsets, PBA writes
 * and bad vector numbers: reads give zero, nothing changes. */
static void test_hostile(void)
{
	static const struct { uint64_t off; unsigned len; } bad[] = {
		{ 0, 1 }, { 12, 1 }, { 12, 2 }, { 2, 4 }, { 13, 4 }, { 4, 8 }, { 12, 8 },
		{ 70 * 16 + 16, 4 }, { 70 * 16 + 16, 8 }, { 1ULL << 40, 4 }, { ~0ULL - 3, 4 },
		{ ~0ULL - 7, 8 }, { 0, 3 }, { 0, 16 },
	};
	struct fn f;
	uint8_t buf[16];

	fn_init(&f, 70);
	ctrl_set(&f, ENABLE);
	for (unsigned i = 0; i < ARRAY_SIZE(bad); i++) {
		memset(buf, 0xff, sizeof(buf));
		mutex_lock(&f.d.lock);
		msix_table_write(&f.m, bad[i].off, buf, bad[i].len);
		msix_table_read(&f.m, bad[i].off, buf, bad[i].len);
		mutex_unlock(&f.d.lock);
		for (unsigned b = 0; b < bad[i].len; b++)
			CHECK(buf[b] == 0, "read of %u bytes at %#llx: byte %u is %#x", bad[i].len,
			      (unsigned long long)bad[i].off, b, buf[b]);
	}
	for (unsigned v = 0; v < 70; v++) {
		CHECK_U(tbl_read(&f, v * 16, 8), 0);
		CHECK_U(tbl_read(&f, v * 16 + 8, 8), 1ULL << 32);
	}
	msix_notify(&f.m, 70);
	msix_notify(&f.m, MSIX_NO_VECTOR);
	msix_notify(&f.m, ~0u);
	msix_notify(&f.m, 65);
	CHECK_U(pba(&f, 0), 0);
	CHECK_U(pba(&f, 1), 2);
	CHECK_U(tbl_read(&f, 70 * 16 + 8, 4), 2);
	CHECK_U(tbl_read(&f, 70 * 16 + 12, 4), 0);
	tbl_write(&f, 70 * 16 + 8, 0, 8);		/* the PBA is read-only */
	CHECK_U(pba(&f, 1), 2);
	msix_destroy(&f.m);
}

/*
 * The race: each round starts with the vector masked. Then, at once, the
 * notifier thread raises it and the main thread unmasks it. However the
 * two interleave, the round must end with exactly one interrupt in the
 * eventfd (a lost one leaves 0 and the pending bit set with the vector
 * unmasked). Random spins before each side sweep their relative timing.
 */
#define RACE_ROUNDS 50000

struct race {
	struct fn *f;
	atomic_uint round;		/* started by main */
	atomic_uint done;		/* finished by the notifier */
};

static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		;
}

/* Spins first: both sides must run at once for their timing to overlap. */
static void wait_for(atomic_uint *a, unsigned v)
{
	for (unsigned i = 0; atomic_load(a) != v; i++)
		if (i > 1000)
			sched_yield();
}

/* On a machine with two CPUs or more, the two sides get one each, so the
 * race is run in parallel rather than only at preemption points. */
static void pin_to_cpu(unsigned i)
{
	cpu_set_t set;
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(i % (unsigned)n, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *race_notifier(void *arg)
{
	struct race *r = arg;
	unsigned seed = 12345;

	pin_to_cpu(1);
	for (unsigned i = 1; i <= RACE_ROUNDS; i++) {
		wait_for(&r->round, i);
		seed = seed * 1103515245 + 12345;
		spin(seed >> 24 & 0x1f);
		msix_notify(&r->f->m, 0);
		atomic_store(&r->done, i);
	}
	return NULL;
}

static void test_race(void)
{
	struct fn f;
	struct race r = { .f = &f };
	pthread_t t;
	unsigned lost = 0, extra = 0, seed = 777;

	fn_init(&f, 1);
	ctrl_set(&f, ENABLE);
	vec_msg(&f, 0, ADDR, 0x40);
	CHECK_I(pthread_create(&t, NULL, race_notifier, &r), 0);
	pin_to_cpu(0);
	for (unsigned i = 1; i <= RACE_ROUNDS; i++) {
		vec_mask(&f, 0, true);
		atomic_store(&r.round, i);
		seed = seed * 1103515245 + 12345;
		spin(seed >> 24 & 0x1f);
		vec_mask(&f, 0, false);
		wait_for(&r.done, i);
		uint64_t n = irqs(&f, 0);

		lost += n == 0;
		extra += n > 1;
	}
	pthread_join(t, NULL);
	CHECK(lost == 0, "%u of %u interrupts lost", lost, RACE_ROUNDS);
	CHECK(extra == 0, "%u rounds delivered more than one interrupt", extra);
	CHECK_U(pba(&f, 0), 0);
	msix_destroy(&f.m);
}

int main(void)
{
	rec.platform.ops = &rec_ops;
	mutex_init(&rec.lock);
	test_layout();
	test_pending_then_unmask();
	test_function_mask();
	test_messages();
	test_refused_route();
	test_reset();
	test_hostile();
	test_race();
	if (test_failures) {
		fprintf(stderr, "test_msix: %d check(s) failed\n", test_failures);
		return 1;
	}
	printf("test_msix: all checks passed\n");
	return 0;
}
