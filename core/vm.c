/*
 * KVM VM setup (see vm.h). Model: KVM selftests' checked ioctl wrappers and
 * kvmtool's kvm__init, unwound with one label per resource.
 *
 * The GSI routing table (vm->routes) is owned by this file: the irqchip
 * entries written at create, then MSI routes added, changed and removed
 * from any thread under routes.lock. KVM only replaces whole tables, so
 * each change rewrites it; an add or set that the kernel refuses is undone
 * in our copy, so the copy stays what the kernel has. irqfds and
 * ioeventfds are plain ioctls on the VM fd, which KVM serialises itself.
 */
#include "core/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "core/util.h"

#define VM_TSS_ADDR 0xfffbd000
#define VM_IDENTITY_MAP_ADDR 0xfffbc000
#define VM_MAX_CPUID_ENTRIES 256

int __vm_ioctl(int fd, unsigned long req, void *arg)
{
	int ret;

	do
		ret = ioctl(fd, req, arg);
	while (ret < 0 && errno == EINTR && req != KVM_RUN);
	return ret < 0 ? -errno : ret;
}

int vm_ioctl_checked(int fd, unsigned long req, void *arg, const char *name)
{
	int ret = __vm_ioctl(fd, req, arg);

	if (ret < 0)
		log_msg("%s failed: %s", name, strerror(-ret));
	return ret;
}

static int vm_open_kvm(struct vm *vm)
{
	int ret;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		ret = -errno;
		log_msg("cannot open /dev/kvm: %s", strerror(errno));
		return ret;
	}
	ret = vm_ioctl(vm->kvm_fd, KVM_GET_API_VERSION, NULL);
	if (ret >= 0 && ret != KVM_API_VERSION) {
		log_msg("KVM API version %d, expected %d", ret, KVM_API_VERSION);
		ret = -ENOTSUP;
	}
	if (ret >= 0)
		ret = vm_ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (ret < 0) {
		close(vm->kvm_fd);
		return ret;
	}
	vm->run_size = (size_t)ret;
	return 0;
}

static int vm_get_cpuid(struct vm *vm)
{
	vm->cpuid = calloc(1, sizeof(*vm->cpuid) +
			      VM_MAX_CPUID_ENTRIES * sizeof(vm->cpuid->entries[0]));
	if (!vm->cpuid)
		return -ENOMEM;
	vm->cpuid->nent = VM_MAX_CPUID_ENTRIES;
	return vm_ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, vm->cpuid);
}

#define VM_IOAPIC_PINS 24
#define VM_PIC_IRQS 16
/* MSI routes take the GSIs right above the IOAPIC pins, one bit each in
 * routes.msi_used. */
#define VM_MSI_GSI_BASE VM_IOAPIC_PINS
#define VM_MSI_GSIS (8 * sizeof(((struct vm_gsi_routes *)0)->msi_used))
#define VM_ROUTES_INITIAL (VM_IOAPIC_PINS + VM_PIC_IRQS + 16)

static struct kvm_irq_routing_entry vm_route(unsigned gsi, unsigned chip, unsigned pin)
{
	return (struct kvm_irq_routing_entry){
		.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
		.u.irqchip = { .irqchip = chip, .pin = pin },
	};
}

static struct kvm_irq_routing_entry vm_msi_entry(unsigned gsi, uint64_t addr, uint32_t data)
{
	return (struct kvm_irq_routing_entry){
		.gsi = gsi, .type = KVM_IRQ_ROUTING_MSI,
		.u.msi = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
			   .data = data },
	};
}

/* Room for one more entry; the old table stays valid on -ENOMEM. */
static int vm_routes_reserve(struct vm *vm) REQUIRES(&vm->routes.lock)
{
	struct vm_gsi_routes *rt = &vm->routes;
	struct kvm_irq_routing *t;
	unsigned cap = rt->cap ? rt->cap * 2 : VM_ROUTES_INITIAL;

	if (rt->table && rt->table->nr < rt->cap)
		return 0;
	t = realloc(rt->table, sizeof(*t) + cap * sizeof(t->entries[0]));
	if (!t)
		return -ENOMEM;
	if (!rt->table)
		*t = (struct kvm_irq_routing){ .nr = 0 };
	rt->table = t;
	rt->cap = cap;
	return 0;
}

static int vm_routes_commit(struct vm *vm) REQUIRES(&vm->routes.lock)
{
	return vm_ioctl(vm->fd, KVM_SET_GSI_ROUTING, vm->routes.table);
}

static bool vm_msi_gsi_used(struct vm *vm, unsigned gsi) REQUIRES(&vm->routes.lock)
{
	const struct vm_gsi_routes *rt = &vm->routes;
	unsigned i = gsi - VM_MSI_GSI_BASE;

	return gsi >= VM_MSI_GSI_BASE && i < VM_MSI_GSIS && (rt->msi_used[i / 64] >> (i % 64) & 1);
}

static void vm_msi_gsi_mark(struct vm *vm, unsigned gsi, bool used) REQUIRES(&vm->routes.lock)
{
	struct vm_gsi_routes *rt = &vm->routes;
	unsigned i = gsi - VM_MSI_GSI_BASE;
	uint64_t bit = 1ULL << (i % 64);

	rt->msi_used[i / 64] = used ? rt->msi_used[i / 64] | bit : rt->msi_used[i / 64] & ~bit;
}

/* The table entry of an MSI GSI in use, or NULL. */
static struct kvm_irq_routing_entry *vm_msi_find(struct vm *vm, unsigned gsi)
	REQUIRES(&vm->routes.lock)
{
	struct kvm_irq_routing *t = vm->routes.table;

	if (!vm_msi_gsi_used(vm, gsi))
		return NULL;
	for (unsigned i = 0; i < t->nr; i++)
		if (t->entries[i].gsi == gsi)
			return &t->entries[i];
	return NULL;
}

/* KVM's default routing sends GSI 0 (the PIT) to IOAPIC pin 0; a PC wires
 * it to pin 2, which is what the MADT's IRQ0 -> GSI 2 override tells the
 * guest. Every other ISA IRQ keeps its PIC line and IOAPIC pin. The table
 * is kept in vm->routes, where MSI routes are appended. */
static int vm_set_irq_routing(struct vm *vm)
{
	struct kvm_irq_routing *r;
	int ret;

	mutex_lock(&vm->routes.lock);
	ret = vm_routes_reserve(vm);
	r = vm->routes.table;
	for (unsigned gsi = 0; !ret && gsi < VM_PIC_IRQS; gsi++)
		if (gsi != 2)
			r->entries[r->nr++] = vm_route(gsi, gsi < 8 ? KVM_IRQCHIP_PIC_MASTER
								   : KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
	for (unsigned gsi = 0; !ret && gsi < VM_IOAPIC_PINS; gsi++)
		if (gsi != 2)
			r->entries[r->nr++] = vm_route(gsi, KVM_IRQCHIP_IOAPIC, gsi ? gsi : 2);
	if (!ret)
		ret = vm_routes_commit(vm);
	mutex_unlock(&vm->routes.lock);
	return ret;
}

static void vm_routes_destroy(struct vm_gsi_routes *rt)
{
	free(rt->table);
	mutex_destroy(&rt->lock);
}

static int vm_create_irqchip(struct vm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t identity = VM_IDENTITY_MAP_ADDR;
	int ret;

	ret = vm_ioctl(vm->fd, KVM_SET_TSS_ADDR, (void *)(uintptr_t)VM_TSS_ADDR);
	/* Only VMX uses the identity map; other vendors reject it harmlessly. */
	if (!ret)
		__vm_ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &identity);
	if (!ret)
		ret = vm_ioctl(vm->fd, KVM_CREATE_IRQCHIP, NULL);
	if (!ret)
		ret = vm_set_irq_routing(vm);
	if (!ret)
		ret = vm_ioctl(vm->fd, KVM_CREATE_PIT2, &pit);
	return ret;
}

static int vm_add_slot(const struct mem_region *r, void *arg)
{
	struct vm *vm = arg;
	struct kvm_userspace_memory_region slot = {
		.slot = r->slot,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	return vm_ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &slot);
}

int vm_create(struct vm *vm, uint64_t memory)
{
	int ret;

	*vm = (struct vm){ .kvm_fd = -1, .fd = -1 };
	mutex_init(&vm->routes.lock);
	ret = vm_open_kvm(vm);
	if (ret)
		goto err_routes;
	ret = vm_get_cpuid(vm);
	if (ret < 0)
		goto err_kvm;
	ret = vm->fd = vm_ioctl(vm->kvm_fd, KVM_CREATE_VM, NULL);
	if (ret < 0)
		goto err_kvm;
	ret = vm_create_irqchip(vm);
	if (ret)
		goto err_vm;
	ret = mem_init(&vm->mem, memory);
	if (ret) {
		log_msg("cannot map %llu bytes of guest RAM: %s",
			(unsigned long long)memory, strerror(-ret));
		goto err_vm;
	}
	ret = mem_for_each(&vm->mem, vm_add_slot, vm);
	if (ret)
		goto err_mem;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	return 0;
err_mem:
	mem_destroy(&vm->mem);
err_vm:
	close(vm->fd);
err_kvm:
	free(vm->cpuid);
	close(vm->kvm_fd);
err_routes:
	vm_routes_destroy(&vm->routes);
	return ret;
}

void vm_destroy(struct vm *vm)
{
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	close(vm->fd);
	vm_routes_destroy(&vm->routes);
	mem_destroy(&vm->mem);
	free(vm->cpuid);
	close(vm->kvm_fd);
}

int vm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };

	return vm_ioctl(vm->fd, KVM_IRQ_LINE, &irq);
}

int vm_msi_route_add(struct vm *vm, uint64_t addr, uint32_t data, unsigned *gsi)
{
	unsigned g = VM_MSI_GSI_BASE;
	int ret;

	mutex_lock(&vm->routes.lock);
	while (g < VM_MSI_GSI_BASE + VM_MSI_GSIS && vm_msi_gsi_used(vm, g))
		g++;
	ret = g < VM_MSI_GSI_BASE + VM_MSI_GSIS ? vm_routes_reserve(vm) : -ENOSPC;
	if (!ret) {
		vm->routes.table->entries[vm->routes.table->nr++] = vm_msi_entry(g, addr, data);
		ret = vm_routes_commit(vm);
		if (ret)
			vm->routes.table->nr--;
	}
	if (!ret) {
		vm_msi_gsi_mark(vm, g, true);
		*gsi = g;
	}
	mutex_unlock(&vm->routes.lock);
	return ret;
}

int vm_msi_route_set(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	struct kvm_irq_routing_entry *e, old;
	int ret = -EINVAL;

	mutex_lock(&vm->routes.lock);
	e = vm_msi_find(vm, gsi);
	if (e) {
		old = *e;
		*e = vm_msi_entry(gsi, addr, data);
		ret = vm_routes_commit(vm);
		if (ret)
			*e = old;
	}
	mutex_unlock(&vm->routes.lock);
	return ret;
}

/* Moving the last entry into the hole keeps the table dense; KVM does not
 * care about order. A failed commit leaves a stale route in the kernel,
 * which the next successful commit replaces. */
void vm_msi_route_del(struct vm *vm, unsigned gsi)
{
	struct kvm_irq_routing_entry *e;

	mutex_lock(&vm->routes.lock);
	e = vm_msi_find(vm, gsi);
	if (e) {
		*e = vm->routes.table->entries[--vm->routes.table->nr];
		vm_msi_gsi_mark(vm, gsi, false);
		vm_routes_commit(vm);
	}
	mutex_unlock(&vm->routes.lock);
}

int vm_irqfd(struct vm *vm, int fd, unsigned gsi, bool assign)
{
	struct kvm_irqfd irqfd = {
		.fd = (uint32_t)fd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN,
	};

	return vm_ioctl(vm->fd, KVM_IRQFD, &irqfd);
}

int vm_ioeventfd(struct vm *vm, uint64_t addr, unsigned len, int fd, bool assign)
{
	struct kvm_ioeventfd io = {
		.addr = addr, .len = len, .fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	return vm_ioctl(vm->fd, KVM_IOEVENTFD, &io);
}

void vm_shutdown_request(struct vm_shutdown *sd, int status, const char *fmt, ...)
{
	va_list ap;

	if (atomic_flag_test_and_set(&sd->claimed))
		return;
	sd->status = status;
	va_start(ap, fmt);
	vsnprintf(sd->reason, sizeof(sd->reason), fmt, ap);
	va_end(ap);
	/* Release: status and reason are visible to whoever sees `requested`
	 * (pairs with the acquire load in the main loop's shutdown handler). */
	atomic_store_explicit(&sd->requested, true, memory_order_release);
	if (sd->notify)
		sd->notify(sd);
}
