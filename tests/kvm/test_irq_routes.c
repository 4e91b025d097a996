/*
 * Interrupt and doorbell plumbing on /dev/kvm: MSI GSI routes (add, set,
 * del, reuse, exhaustion), irqfds (KVM consumes the eventfd's count while
 * one is assigned), the PCI platform of dev/pci_kvm.c under a real MSI-X
 * capability, and ioeventfds: a tiny 32-bit guest writes three MMIO
 * addresses, two of which have ioeventfds (4 bytes wide, and any width);
 * those writes must signal their eventfds and never reach the MMIO bus,
 * while a 2-byte write where only a 4-byte ioeventfd sits must exit.
 *
 * Threads: main builds and checks; vCPU 0 runs the guest and the bus
 * handlers (the log is read after vcpu_destroy joined it).
 * Exit 0 pass, 1 fail, 77 when /dev/kvm is missing or cannot make a VM.
 */
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "tests/check.h"
#include "core/boot.h"
#include "core/bus.h"
#include "core/util.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "dev/msix.h"
#include "dev/pci_kvm.h"
#include "rcu/rcu.h"

#define GUEST_RAM (16 * MiB)
#define CODE_ADDR 0x2000
#define DOOR 0xd0000000ULL	/* 3 pages: ioeventfd len 4, len 0, len 4 */
#define DONE_PORT 0x2ff
#define MSI_ADDR 0xfee00000ULL
#define MSI_GSIS 256		/* 8 * sizeof(vm_gsi_routes.msi_used) */

static struct vm vm;
static sem_t done_sem;
static unsigned mmio_writes;
static uint64_t mmio_last_off;
static unsigned mmio_last_len;

static void mmio_write(struct bus_dev *dev, uint64_t off, const void *data, unsigned len)
{
	mmio_writes++;
	mmio_last_off = off;
	mmio_last_len = len;
}

static void done_write(struct bus_dev *dev, uint64_t off, const void *data, unsigned len)
{
	vm_shutdown_request(&vm.shutdown, 0, "guest done");
}

static void no_read(struct bus_dev *dev, uint64_t off, void *data, unsigned len)
{
	memset(data, 0xff, len);
}

static void done_notify(struct vm_shutdown *sd)
{
	sem_post(&done_sem);
}

static const struct bus_dev_ops mmio_ops = { .read = no_read, .write = mmio_write };
static const struct bus_dev_ops done_ops = { .read = no_read, .write = done_write };
static struct bus_dev mmio_dev = { &mmio_ops, "doorbells" };
static struct bus_dev done_dev = { &done_ops, "done" };

static const uint8_t guest[] = {
	0xc7, 0x05, 0x00, 0x00, 0x00, 0xd0, 0x44, 0x33, 0x22, 0x11,	/* movl $0x11223344, DOOR */
	0xc6, 0x05, 0x00, 0x10, 0x00, 0xd0, 0x5a,			/* movb $0x5a, DOOR + 0x1000 */
	0x66, 0xc7, 0x05, 0x00, 0x20, 0x00, 0xd0, 0x34, 0x12,		/* movw $0x1234, DOOR + 0x2000 */
	0x66, 0xba, 0xff, 0x02,						/* mov $DONE_PORT, %dx */
	0xb0, 0x01,							/* mov $1, %al */
	0xee,								/* out %al, %dx */
	0xf4,								/* 1: hlt */
	0xeb, 0xfd,							/* jmp 1b */
};

static uint64_t efd_count(int fd)
{
	uint64_t n = 0;

	return read(fd, &n, sizeof(n)) == sizeof(n) ? n : 0;
}

static void efd_signal(int fd)
{
	const uint64_t one = 1;

	CHECK(write(fd, &one, sizeof(one)) == sizeof(one), "eventfd write: %s", strerror(errno));
}

static void test_routes(void)
{
	unsigned g[3], extra = 0, gsi, all[MSI_GSIS];
	int ret;

	for (unsigned i = 0; i < 3; i++) {
		CHECK_I(vm_msi_route_add(&vm, MSI_ADDR, 0x40 + i, &g[i]), 0);
		CHECK_U(g[i], 24 + i);
	}
	CHECK_I(vm_msi_route_set(&vm, g[1], MSI_ADDR | 0x1000, 0x51), 0);
	CHECK_I(vm_msi_route_set(&vm, 5, MSI_ADDR, 0x51), -EINVAL);	/* an IOAPIC pin */
	CHECK_I(vm_msi_route_set(&vm, 27, MSI_ADDR, 0x51), -EINVAL);	/* not handed out */
	CHECK_I(vm_msi_route_set(&vm, ~0u, MSI_ADDR, 0x51), -EINVAL);
	vm_msi_route_del(&vm, g[1]);
	vm_msi_route_del(&vm, g[1]);
	CHECK_I(vm_msi_route_set(&vm, g[1], MSI_ADDR, 0x51), -EINVAL);
	CHECK_I(vm_msi_route_add(&vm, MSI_ADDR, 0x60, &gsi), 0);
	CHECK_U(gsi, g[1]);
	while ((ret = vm_msi_route_add(&vm, MSI_ADDR, 0x70, &all[extra])) == 0 && extra < MSI_GSIS)
		extra++;
	CHECK_I(ret, -ENOSPC);
	CHECK_U(extra, MSI_GSIS - 3);
	for (unsigned i = 0; i < extra; i++)
		vm_msi_route_del(&vm, all[i]);
	vm_msi_route_del(&vm, g[0]);
	vm_msi_route_del(&vm, g[1]);
	vm_msi_route_del(&vm, g[2]);
	CHECK_I(vm_msi_route_add(&vm, MSI_ADDR, 0x40, &gsi), 0);
	CHECK_U(gsi, 24);
	vm_msi_route_del(&vm, gsi);
}

/* KVM's irqfd reads the eventfd as it injects, so a count that stays
 * means nothing is listening. */
static void test_irqfd(void)
{
	int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	unsigned gsi;

	CHECK_I(vm_msi_route_add(&vm, MSI_ADDR, 0x41, &gsi), 0);
	CHECK_I(vm_irqfd(&vm, fd, gsi, true), 0);
	CHECK_I(vm_irqfd(&vm, fd, gsi, true), -EBUSY);
	efd_signal(fd);
	CHECK_U(efd_count(fd), 0);
	CHECK_I(vm_irqfd(&vm, fd, gsi, false), 0);
	efd_signal(fd);
	CHECK_U(efd_count(fd), 1);
	vm_msi_route_del(&vm, gsi);
	close(fd);
}

static void noop_bar(struct pci_dev *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
}

static const struct pci_dev_ops fn_ops = { .bar_read = noop_bar };

static void msix_ctrl_write(struct pci_dev *d, struct msix *m, uint8_t hi)
{
	d->cfg[m->cap + 3] = hi;
	msix_config_written(m, m->cap + 2, 2);
}

/* MSI-X on the KVM platform: opening a vector routes it (handle = GSI + 1)
 * and KVM takes its eventfd; disabling MSI-X frees the GSI. */
static void test_pci_kvm(void)
{
	static struct pci_dev d;
	struct pci_kvm pk;
	struct msix m;
	const uint32_t msg[4] = { (uint32_t)MSI_ADDR, 0, 0x42, 0 };
	unsigned gsi;

	pci_kvm_init(&pk, &vm);
	pci_dev_init(&d, &fn_ops, "pci-kvm-test", 0x1af4, 0x1042, 0x010000, 1, 0x1af4, 2);
	CHECK_I(msix_init(&m, &d, 2, 1, 0), 0);
	d.platform = &pk.platform;
	mutex_lock(&d.lock);
	msix_ctrl_write(&d, &m, 0x80);
	msix_table_write(&m, 0, msg, 8);
	msix_table_write(&m, 8, &msg[2], 8);
	mutex_unlock(&d.lock);
	CHECK_U(m.vec[0].handle, 24 + 1);
	msix_notify(&m, 0);
	CHECK_U(efd_count(m.vec[0].fd), 0);
	mutex_lock(&d.lock);
	msix_table_write(&m, 8, &msg[3], 4);		/* new data, same route */
	mutex_unlock(&d.lock);
	CHECK_U(m.vec[0].handle, 24 + 1);
	mutex_lock(&d.lock);
	msix_ctrl_write(&d, &m, 0);
	mutex_unlock(&d.lock);
	CHECK_U(m.vec[0].handle, 0);
	CHECK_I(vm_msi_route_add(&vm, MSI_ADDR, 0x40, &gsi), 0);
	CHECK_U(gsi, 24);
	vm_msi_route_del(&vm, gsi);
	msix_destroy(&m);
}

/* Runs vCPU 0 until the guest writes the done port (at most 10 s). */
static int run_guest(void)
{
	const struct boot_setup boot = { .long_mode = false, .entry = CODE_ADDR };
	struct timespec ts;
	struct vcpu v;
	int ret = vcpu_create(&v, &vm, 0, 1, &boot);

	if (ret)
		return ret;
	ret = vcpu_start(&v);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	while (!ret && (ret = sem_timedwait(&done_sem, &ts)) && errno == EINTR)
		;
	vcpu_stop(&v);
	vcpu_destroy(&v);
	return ret ? -ETIMEDOUT : 0;
}

static void test_ioeventfd(void)
{
	int fd[3];
	const unsigned len[3] = { 4, 0, 4 };
	int ret;

	CHECK_I(mem_write(&vm.mem, CODE_ADDR, guest, sizeof(guest)), 0);
	CHECK_I(bus_register(&vm.mmio, DOOR, 0x3000, &mmio_dev), 0);
	CHECK_I(bus_register(&vm.pio, DONE_PORT, 1, &done_dev), 0);
	for (unsigned i = 0; i < 3; i++) {
		fd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		CHECK_I(vm_ioeventfd(&vm, DOOR + 0x1000 * i, len[i], fd[i], true), 0);
	}
	CHECK_I(vm_ioeventfd(&vm, DOOR, 4, fd[0], true), -EEXIST);
	ret = run_guest();
	CHECK(ret == 0, "the guest did not finish: %s", strerror(-ret));
	CHECK_U(efd_count(fd[0]), 1);
	CHECK_U(efd_count(fd[1]), 1);
	CHECK_U(efd_count(fd[2]), 0);
	CHECK_U(mmio_writes, 1);
	CHECK_U(mmio_last_off, 0x2000);
	CHECK_U(mmio_last_len, 2);
	for (unsigned i = 0; i < 3; i++) {
		CHECK_I(vm_ioeventfd(&vm, DOOR + 0x1000 * i, len[i], fd[i], false), 0);
		CHECK_I(vm_ioeventfd(&vm, DOOR + 0x1000 * i, len[i], fd[i], false), -ENOENT);
		close(fd[i]);
	}
}

int main(void)
{
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	rcu_register_thread();
	sem_init(&done_sem, 0, 0);
	ret = vm_create(&vm, GUEST_RAM);
	if (ret) {
		printf("SKIP: vm_create: %s\n", strerror(-ret));
		return 77;
	}
	vm.shutdown.notify = done_notify;
	test_routes();
	test_irqfd();
	test_pci_kvm();
	test_ioeventfd();
	rcu_barrier();
	vm_destroy(&vm);
	rcu_unregister_thread();
	if (test_failures) {
		printf("%d check(s) failed\n", test_failures);
		return 1;
	}
	printf("PASS: MSI routes, irqfds, MSI-X on KVM and ioeventfds\n");
	return 0;
}
