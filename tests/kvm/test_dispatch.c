/*
 * Exit dispatch on /dev/kvm: a VM made with vm_create runs a hand-assembled
 * 32-bit guest on vCPU 0 that does byte, word, dword and string port I/O
 * and MMIO reads and writes around test devices registered on the PIO and
 * MMIO buses, among them adjacent ranges. Each device logs every access
 * (device, direction, offset, length, value); the test compares the log
 * with the exact list expected, step by step. Reads return a pattern
 * derived from the device and offset; the guest sends each value it read
 * to a report port, so the log also proves the value reached the guest.
 * Unhandled reads must give all ones, accesses just outside a range must
 * reach no device, and string I/O must move each element.
 *
 * Threads: the main thread builds the VM and checks; vCPU 0's thread runs
 * the handlers and is the only writer of the log, which main reads after
 * vcpu_destroy joined it. Exit 0 pass, 1 fail, 77 when /dev/kvm is missing
 * or unusable.
 */
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "tests/check.h"
#include "core/boot.h"
#include "core/bus.h"
#include "core/util.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "rcu/rcu.h"

#define GUEST_RAM (16 * MiB)
#define CODE_ADDR 0x2000
#define OUTS_ADDR 0x3000	/* the bytes rep outsb sends */
#define INS_ADDR 0x3010		/* where rep insw stores */
#define MAX_LOG 64

/* A device whose reads give byte i of an access at offset o the value
 * seed + o + i, and which logs every access. */
struct tdev {
	struct bus_dev dev;
	uint8_t seed;
};

struct access {
	const struct tdev *dev;	/* NULL ends a list */
	bool write;
	uint64_t offset;
	unsigned len;
	uint64_t value;
};

static struct access log_entries[MAX_LOG];
static unsigned log_n;
static sem_t done_sem;

static void tdev_log(struct bus_dev *dev, bool write, uint64_t offset, const void *data,
		     unsigned len)
{
	struct access a = { container_of(dev, struct tdev, dev), write, offset, len, 0 };

	memcpy(&a.value, data, len < 8 ? len : 8);
	if (log_n < MAX_LOG)
		log_entries[log_n] = a;
	log_n++;
}

static void tdev_read(struct bus_dev *dev, uint64_t offset, void *data, unsigned len)
{
	const struct tdev *t = container_of(dev, struct tdev, dev);

	for (unsigned i = 0; i < len; i++)
		((uint8_t *)data)[i] = (uint8_t)(t->seed + offset + i);
	tdev_log(dev, false, offset, data, len);
}

static void tdev_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
	tdev_log(dev, true, offset, data, len);
}

static void done_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len);

static const struct bus_dev_ops tdev_ops = { .read = tdev_read, .write = tdev_write };
static const struct bus_dev_ops done_ops = { .read = tdev_read, .write = done_write };

static struct vm vm;

static void done_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
	tdev_log(dev, true, offset, data, len);
	vm_shutdown_request(&vm.shutdown, 0, "guest wrote the done port");
}

static void done_notify(struct vm_shutdown *sd)
{
	sem_post(&done_sem);
}

#define SEED_PIO_A 0xa0
#define SEED_PIO_B 0xb0
#define SEED_PIO_C 0xc0
#define SEED_MMIO_A 0x10
#define SEED_MMIO_B 0x20

static struct tdev pio_a = { { &tdev_ops, "pio-a" }, SEED_PIO_A };	/* 0x100-0x103 */
static struct tdev pio_b = { { &tdev_ops, "pio-b" }, SEED_PIO_B };	/* 0x104-0x107 */
static struct tdev pio_c = { { &tdev_ops, "pio-c" }, SEED_PIO_C };	/* 0x108 */
static struct tdev report = { { &tdev_ops, "report" }, 0 };		/* 0x1f0-0x1f3 */
static struct tdev done = { { &done_ops, "done" }, 0 };			/* 0x2ff */
static struct tdev mmio_a = { { &tdev_ops, "mmio-a" }, SEED_MMIO_A };	/* 0xd0000000, 4 KiB */
static struct tdev mmio_b = { { &tdev_ops, "mmio-b" }, SEED_MMIO_B };	/* 0xd0001000, 4 KiB */

/* What a read of len bytes at offset o of a device with seed s returns. */
#define BYTE(s, o, i) ((uint64_t)(((s) + (o) + (i)) & 0xff) << (8 * (i)))
#define VAL1(s, o) BYTE(s, o, 0)
#define VAL2(s, o) (VAL1(s, o) | BYTE(s, o, 1))
#define VAL4(s, o) (VAL2(s, o) | BYTE(s, o, 2) | BYTE(s, o, 3))

#define W(d, o, l, v) { &(d), true, o, l, v }
#define R(d, o, l, v) { &(d), false, o, l, v }
#define REPORTED(v) W(report, 0, 4, v)

/* One step of the guest: its machine code and the accesses it must make. */
struct step {
	const char *what;
	uint8_t code[40];
	unsigned len;
	struct access expect[4];
};

#define CODE(...) .code = { __VA_ARGS__ }, .len = sizeof((const uint8_t[]){ __VA_ARGS__ })
/* xor %eax, %eax */
#define ZERO_EAX 0x31, 0xc0
/* mov $0x1f0, %dx; out %eax, %dx */
#define REPORT_EAX 0x66, 0xba, 0xf0, 0x01, 0xef

static const struct step steps[] = {
	{ "outb at the first port of pio-a",
	  CODE(0x66, 0xba, 0x00, 0x01,		/* mov $0x100, %dx */
	       0xb0, 0x11,			/* mov $0x11, %al */
	       0xee),				/* out %al, %dx */
	  { W(pio_a, 0, 1, 0x11) } },
	{ "outw in the middle of pio-a",
	  CODE(0x66, 0xba, 0x02, 0x01,		/* mov $0x102, %dx */
	       0x66, 0xb8, 0x33, 0x22,		/* mov $0x2233, %ax */
	       0x66, 0xef),			/* out %ax, %dx */
	  { W(pio_a, 2, 2, 0x2233) } },
	{ "outl at pio-b, right after pio-a",
	  CODE(0x66, 0xba, 0x04, 0x01,		/* mov $0x104, %dx */
	       0xb8, 0x77, 0x66, 0x55, 0x44,	/* mov $0x44556677, %eax */
	       0xef),				/* out %eax, %dx */
	  { W(pio_b, 0, 4, 0x44556677) } },
	{ "outb at the last port of pio-b, then at pio-c right after it",
	  CODE(0x66, 0xba, 0x07, 0x01,		/* mov $0x107, %dx */
	       0xb0, 0x88,			/* mov $0x88, %al */
	       0xee,				/* out %al, %dx */
	       0x66, 0xba, 0x08, 0x01,		/* mov $0x108, %dx */
	       0xee),				/* out %al, %dx */
	  { W(pio_b, 3, 1, 0x88), W(pio_c, 0, 1, 0x88) } },
	{ "writes just below pio-a and just past pio-c reach no device",
	  CODE(0x66, 0xba, 0xff, 0x00,		/* mov $0xff, %dx */
	       0xee,				/* out %al, %dx */
	       0x66, 0xba, 0x09, 0x01,		/* mov $0x109, %dx */
	       0xef),				/* out %eax, %dx */
	  { { 0 } } },
	{ "inb from pio-a",
	  CODE(ZERO_EAX,
	       0x66, 0xba, 0x01, 0x01,		/* mov $0x101, %dx */
	       0xec,				/* in %dx, %al */
	       REPORT_EAX),
	  { R(pio_a, 1, 1, VAL1(SEED_PIO_A, 1)), REPORTED(VAL1(SEED_PIO_A, 1)) } },
	{ "inw from pio-b",
	  CODE(ZERO_EAX,
	       0x66, 0xba, 0x06, 0x01,		/* mov $0x106, %dx */
	       0x66, 0xed,			/* in %dx, %ax */
	       REPORT_EAX),
	  { R(pio_b, 2, 2, VAL2(SEED_PIO_B, 2)), REPORTED(VAL2(SEED_PIO_B, 2)) } },
	{ "inl from pio-b",
	  CODE(0x66, 0xba, 0x04, 0x01,		/* mov $0x104, %dx */
	       0xed,				/* in %dx, %eax */
	       REPORT_EAX),
	  { R(pio_b, 0, 4, VAL4(SEED_PIO_B, 0)), REPORTED(VAL4(SEED_PIO_B, 0)) } },
	{ "inb from pio-c",
	  CODE(ZERO_EAX,
	       0x66, 0xba, 0x08, 0x01,		/* mov $0x108, %dx */
	       0xec,				/* in %dx, %al */
	       REPORT_EAX),
	  { R(pio_c, 0, 1, VAL1(SEED_PIO_C, 0)), REPORTED(VAL1(SEED_PIO_C, 0)) } },
	{ "unhandled inb, inw, inl (just past pio-c) give all ones",
	  CODE(ZERO_EAX,
	       0x66, 0xba, 0x09, 0x01,		/* mov $0x109, %dx */
	       0xec,				/* in %dx, %al */
	       REPORT_EAX,
	       ZERO_EAX,
	       0x66, 0xba, 0x09, 0x01,		/* mov $0x109, %dx */
	       0x66, 0xed,			/* in %dx, %ax */
	       REPORT_EAX,
	       0x66, 0xba, 0x09, 0x01,		/* mov $0x109, %dx */
	       0xed,				/* in %dx, %eax */
	       REPORT_EAX),
	  { REPORTED(0xff), REPORTED(0xffff), REPORTED(0xffffffff) } },
	{ "rep outsb of 3 bytes to pio-a",
	  CODE(0xbe, 0x00, 0x30, 0x00, 0x00,	/* mov $0x3000, %esi */
	       0xb9, 0x03, 0x00, 0x00, 0x00,	/* mov $3, %ecx */
	       0x66, 0xba, 0x00, 0x01,		/* mov $0x100, %dx */
	       0xf3, 0x6e),			/* rep outsb */
	  { W(pio_a, 0, 1, 0x31), W(pio_a, 0, 1, 0x32), W(pio_a, 0, 1, 0x33) } },
	{ "rep insw of 2 words from pio-b into memory",
	  CODE(0xbf, 0x10, 0x30, 0x00, 0x00,	/* mov $0x3010, %edi */
	       0xb9, 0x02, 0x00, 0x00, 0x00,	/* mov $2, %ecx */
	       0x66, 0xba, 0x04, 0x01,		/* mov $0x104, %dx */
	       0x66, 0xf3, 0x6d),		/* rep insw */
	  { R(pio_b, 0, 2, VAL2(SEED_PIO_B, 0)), R(pio_b, 0, 2, VAL2(SEED_PIO_B, 0)) } },
	{ "MMIO dword write at the last dword of mmio-a",
	  CODE(0xc7, 0x05, 0xfc, 0x0f, 0x00, 0xd0,	/* movl $0xcafef00d, 0xd0000ffc */
	       0x0d, 0xf0, 0xfe, 0xca),
	  { W(mmio_a, 0xffc, 4, 0xcafef00d) } },
	{ "MMIO byte write at the first byte of mmio-b, right after mmio-a",
	  CODE(0xc6, 0x05, 0x00, 0x10, 0x00, 0xd0, 0x5a),	/* movb $0x5a, 0xd0001000 */
	  { W(mmio_b, 0, 1, 0x5a) } },
	{ "MMIO word write at the end of mmio-b",
	  CODE(0x66, 0xc7, 0x05, 0xfe, 0x1f, 0x00, 0xd0,	/* movw $0x1234, 0xd0001ffe */
	       0x34, 0x12),
	  { W(mmio_b, 0xffe, 2, 0x1234) } },
	{ "MMIO writes just below mmio-a and just past mmio-b reach no device",
	  CODE(0xc7, 0x05, 0xfc, 0xff, 0xff, 0xcf,	/* movl $1, 0xcffffffc */
	       0x01, 0x00, 0x00, 0x00,
	       0xc7, 0x05, 0x00, 0x20, 0x00, 0xd0,	/* movl $1, 0xd0002000 */
	       0x01, 0x00, 0x00, 0x00),
	  { { 0 } } },
	{ "MMIO dword read from mmio-a",
	  CODE(0xa1, 0x10, 0x00, 0x00, 0xd0,		/* mov 0xd0000010, %eax */
	       REPORT_EAX),
	  { R(mmio_a, 0x10, 4, VAL4(SEED_MMIO_A, 0x10)), REPORTED(VAL4(SEED_MMIO_A, 0x10)) } },
	{ "MMIO word read from mmio-b",
	  CODE(0x0f, 0xb7, 0x05, 0x02, 0x10, 0x00, 0xd0,	/* movzwl 0xd0001002, %eax */
	       REPORT_EAX),
	  { R(mmio_b, 2, 2, VAL2(SEED_MMIO_B, 2)), REPORTED(VAL2(SEED_MMIO_B, 2)) } },
	{ "MMIO byte read from the last byte of mmio-a",
	  CODE(0x0f, 0xb6, 0x05, 0xff, 0x0f, 0x00, 0xd0,	/* movzbl 0xd0000fff, %eax */
	       REPORT_EAX),
	  { R(mmio_a, 0xfff, 1, VAL1(SEED_MMIO_A, 0xfff)), REPORTED(VAL1(SEED_MMIO_A, 0xfff)) } },
	{ "unhandled MMIO reads (just past mmio-b, just below mmio-a) give all ones",
	  CODE(0xa1, 0x00, 0x20, 0x00, 0xd0,		/* mov 0xd0002000, %eax */
	       REPORT_EAX,
	       0x0f, 0xb7, 0x05, 0xfe, 0xff, 0xff, 0xcf,	/* movzwl 0xcffffffe, %eax */
	       REPORT_EAX),
	  { REPORTED(0xffffffff), REPORTED(0xffff) } },
	{ "outb to the done port, then halt",
	  CODE(0x66, 0xba, 0xff, 0x02,		/* mov $0x2ff, %dx */
	       0xb0, 0x01,			/* mov $1, %al */
	       0xee,				/* out %al, %dx */
	       0xf4,				/* 1: hlt */
	       0xeb, 0xfd),			/* jmp 1b */
	  { W(done, 0, 1, 1) } },
};

static struct bus *pio_bus(void) { return &vm.pio; }
static struct bus *mmio_bus(void) { return &vm.mmio; }

static const struct {
	struct bus *(*bus)(void);
	uint64_t base, len;
	struct tdev *dev;
} layout[] = {
	{ pio_bus, 0x100, 4, &pio_a },
	{ pio_bus, 0x104, 4, &pio_b },
	{ pio_bus, 0x108, 1, &pio_c },
	{ pio_bus, 0x1f0, 4, &report },
	{ pio_bus, 0x2ff, 1, &done },
	{ mmio_bus, 0xd0001000, 0x1000, &mmio_b },	/* registered out of order on purpose */
	{ mmio_bus, 0xd0000000, 0x1000, &mmio_a },
};

/* Skips (exit 77) unless /dev/kvm opens and creates a VM. */
static void require_kvm(void)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), fd;

	if (kvm < 0) {
		printf("SKIP: cannot open /dev/kvm: %s\n", strerror(errno));
		exit(77);
	}
	if (ioctl(kvm, KVM_GET_API_VERSION, NULL) != KVM_API_VERSION) {
		printf("SKIP: /dev/kvm does not speak KVM API version %d\n", KVM_API_VERSION);
		exit(77);
	}
	fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (fd < 0) {
		printf("SKIP: /dev/kvm cannot create a VM: %s\n", strerror(errno));
		exit(77);
	}
	close(fd);
	close(kvm);
}

/* The GDT boot_load would write (core/boot.c): the selectors vcpu_create
 * loads must describe the same segments if the guest ever reloads them. */
static int write_gdt(void)
{
	const uint64_t gdt[BOOT_GDT_ENTRIES] = {
		[BOOT_SEL_CODE64 / 8] = 0x00af9b000000ffffULL,
		[BOOT_SEL_DATA / 8] = 0x00cf93000000ffffULL,
		[BOOT_SEL_TSS / 8] = 0x00008b0000000067ULL,
		[BOOT_SEL_CODE32 / 8] = 0x00cf9b000000ffffULL,
	};

	return mem_write(&vm.mem, BOOT_GDT_ADDR, gdt, sizeof(gdt));
}

static int write_guest(void)
{
	static const uint8_t outs[3] = { 0x31, 0x32, 0x33 };
	uint64_t addr = CODE_ADDR;
	int ret = write_gdt();

	for (unsigned i = 0; !ret && i < ARRAY_SIZE(steps); i++) {
		ret = mem_write(&vm.mem, addr, steps[i].code, steps[i].len);
		addr += steps[i].len;
	}
	return ret ? ret : mem_write(&vm.mem, OUTS_ADDR, outs, sizeof(outs));
}

static int register_devices(void)
{
	for (unsigned i = 0; i < ARRAY_SIZE(layout); i++) {
		int ret = bus_register(layout[i].bus(), layout[i].base, layout[i].len,
				       &layout[i].dev->dev);

		if (ret) {
			printf("FAIL: bus_register %s: %s\n", layout[i].dev->dev.name, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Runs vCPU 0 until the guest writes the done port (at most 10 s). */
static int run_guest(void)
{
	const struct boot_setup boot = { .long_mode = false, .entry = CODE_ADDR };
	struct vcpu v;
	struct timespec ts;
	int ret = vcpu_create(&v, &vm, 0, 1, &boot);

	if (ret) {
		printf("FAIL: vcpu_create: %s\n", strerror(-ret));
		return ret;
	}
	ret = vcpu_start(&v);
	if (ret) {
		printf("FAIL: vcpu_start: %s\n", strerror(-ret));
		vcpu_destroy(&v);
		return ret;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	while ((ret = sem_timedwait(&done_sem, &ts)) && errno == EINTR)
		;
	if (ret)
		printf("FAIL: the guest did not reach the done port within 10 s\n");
	vcpu_stop(&v);
	vcpu_destroy(&v);
	return ret ? -ETIMEDOUT : 0;
}

static const char *dev_name(const struct tdev *d)
{
	return d ? d->dev.name : "(none)";
}

static void print_access(const char *tag, const struct access *a)
{
	printf("    %s %s %s offset 0x%llx len %u value 0x%llx\n", tag, dev_name(a->dev),
	       a->write ? "write" : "read", (unsigned long long)a->offset, a->len,
	       (unsigned long long)a->value);
}

static bool same_access(const struct access *a, const struct access *b)
{
	return a->dev == b->dev && a->write == b->write && a->offset == b->offset &&
	       a->len == b->len && a->value == b->value;
}

/* Compares the log with each step's expected accesses, in order. */
static void check_log(void)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(steps); i++) {
		for (const struct access *e = steps[i].expect; e->dev; e++, n++) {
			const struct access *got = n < log_n && n < MAX_LOG ? &log_entries[n] : NULL;

			if (got && same_access(got, e))
				continue;
			printf("FAIL: step \"%s\", access %u:\n", steps[i].what, n);
			print_access("expected", e);
			if (got)
				print_access("got     ", got);
			else
				printf("    got nothing (the log holds %u accesses)\n", log_n);
			test_failures++;
			return;
		}
	}
	CHECK(log_n == n, "the log holds %u accesses, the steps expect %u", log_n, n);
	for (unsigned i = n; i < log_n && i < MAX_LOG; i++)
		print_access("extra", &log_entries[i]);
}

static void check_memory(void)
{
	uint8_t ins[4] = { 0 };
	const uint8_t want[4] = { SEED_PIO_B, SEED_PIO_B + 1, SEED_PIO_B, SEED_PIO_B + 1 };

	CHECK(mem_read(&vm.mem, INS_ADDR, ins, sizeof(ins)) == 0, "mem_read");
	CHECK(!memcmp(ins, want, sizeof(want)),
	      "rep insw stored %02x %02x %02x %02x, expected %02x %02x %02x %02x",
	      ins[0], ins[1], ins[2], ins[3], want[0], want[1], want[2], want[3]);
}

int main(void)
{
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	require_kvm();
	rcu_register_thread();
	sem_init(&done_sem, 0, 0);
	ret = vm_create(&vm, GUEST_RAM);
	if (ret) {
		printf("FAIL: vm_create: %s\n", strerror(-ret));
		return 1;
	}
	vm.shutdown.notify = done_notify;
	ret = write_guest();
	CHECK(ret == 0, "writing the guest: %s", strerror(-ret));
	if (!ret)
		ret = register_devices();
	if (!ret)
		ret = run_guest();
	if (!ret) {
		CHECK(vm.shutdown.status == 0 && strstr(vm.shutdown.reason, "done port"),
		      "the VM stopped with status %d: %s", vm.shutdown.status, vm.shutdown.reason);
		check_log();
		check_memory();
	} else {
		test_failures++;
		if (atomic_load(&vm.shutdown.requested))
			printf("the VM stopped with: %s\n", vm.shutdown.reason);
		for (unsigned i = 0; i < log_n && i < MAX_LOG; i++)
			print_access("logged", &log_entries[i]);
	}
	rcu_barrier();
	vm_destroy(&vm);
	sem_destroy(&done_sem);
	rcu_unregister_thread();
	if (test_failures) {
		printf("%d check(s) failed\n", test_failures);
		return 1;
	}
	printf("PASS: %zu steps: PIO and MMIO exits reached the right device, offset, size and value\n",
	       ARRAY_SIZE(steps));
	return 0;
}
