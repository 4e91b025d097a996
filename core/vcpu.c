/*
 * vCPU setup and run loop (see vcpu.h). Model: KVM selftests and kvmtool's
 * kvm-cpu.c, with exits delegated to small handlers.
 *
 * Stopping: vcpu_stop sets `stop`, sets run->immediate_exit and sends
 * SIGUSR1, so a vCPU inside KVM_RUN returns -EINTR and one about to enter
 * returns at once; the loop then sees `stop`.
 */
#include "core/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "core/boot.h"
#include "core/cpuid.h"
#include "core/util.h"
#include "core/vm.h"
#include "rcu/rcu.h"

#define VCPU_KICK_SIGNAL SIGUSR1

#define CR0_PE 0x1ULL
#define CR0_MP 0x2ULL
#define CR0_ET 0x10ULL
#define CR0_NE 0x20ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

#define MSR_IA32_TSC 0x10
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_KERNEL_GS_BASE 0xc0000102

#define MISC_ENABLE_FAST_STRING 0x1ULL
#define MTRR_ENABLE_WRITEBACK 0x806ULL	/* MTRRs on, default type write-back */

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

/* No SA_RESTART: the signal must make KVM_RUN return -EINTR. */
static void vcpu_install_kick_handler(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL);
}

static unsigned long long vcpu_rip(struct vcpu *v)
{
	struct kvm_regs regs;

	return __vm_ioctl(v->fd, KVM_GET_REGS, &regs) ? 0 : regs.rip;
}

static int vcpu_set_cpuid(struct vcpu *v, unsigned n_vcpus)
{
	const struct kvm_cpuid2 *src = v->vm->cpuid;
	size_t size = sizeof(*src) + src->nent * sizeof(src->entries[0]);
	struct kvm_cpuid2 *c = malloc(size);
	int ret;

	if (!c)
		return -ENOMEM;
	memcpy(c, src, size);
	cpuid_fixup(c, v->id, n_vcpus);
	ret = vm_ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	return ret;
}

static int vcpu_set_msrs(struct vcpu *v)
{
	static const struct kvm_msr_entry init[] = {
		{ .index = MSR_IA32_SYSENTER_CS }, { .index = MSR_IA32_SYSENTER_ESP },
		{ .index = MSR_IA32_SYSENTER_EIP }, { .index = MSR_STAR },
		{ .index = MSR_LSTAR }, { .index = MSR_CSTAR },
		{ .index = MSR_SYSCALL_MASK }, { .index = MSR_KERNEL_GS_BASE },
		{ .index = MSR_IA32_TSC },
		{ .index = MSR_IA32_MISC_ENABLE, .data = MISC_ENABLE_FAST_STRING },
		{ .index = MSR_MTRR_DEF_TYPE, .data = MTRR_ENABLE_WRITEBACK },
	};
	struct kvm_msrs *msrs = calloc(1, sizeof(*msrs) + sizeof(init));
	int ret;

	if (!msrs)
		return -ENOMEM;
	msrs->nmsrs = ARRAY_SIZE(init);
	memcpy(msrs->entries, init, sizeof(init));
	ret = vm_ioctl(v->fd, KVM_SET_MSRS, msrs);
	free(msrs);
	if (ret >= 0 && ret < (int)ARRAY_SIZE(init)) {
		log_msg("vCPU %u: KVM refused MSR 0x%x", v->id, init[ret].index);
		return -EINVAL;
	}
	return ret < 0 ? ret : 0;
}

static int vcpu_set_fpu(struct vcpu *v)
{
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };

	return vm_ioctl(v->fd, KVM_SET_FPU, &fpu);
}

static struct kvm_segment vcpu_segment(uint16_t sel, uint8_t type, bool code64)
{
	return (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .s = 1, .db = !code64, .l = code64, .g = 1,
	};
}

static void vcpu_boot_sregs(struct kvm_sregs *s, const struct boot_setup *boot)
{
	struct kvm_segment data = vcpu_segment(BOOT_SEL_DATA, 3, false);

	s->cs = boot->long_mode ? vcpu_segment(BOOT_SEL_CODE64, 11, true)
				: vcpu_segment(BOOT_SEL_CODE32, 11, false);
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->tr = (struct kvm_segment){ .limit = 0x67, .selector = BOOT_SEL_TSS, .type = 11,
				      .present = 1 };
	s->gdt.base = BOOT_GDT_ADDR;
	s->gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
	s->cr0 = CR0_PE | CR0_ET | (boot->long_mode ? CR0_MP | CR0_NE | CR0_PG : 0);
	s->cr3 = boot->long_mode ? BOOT_PML4_ADDR : 0;
	s->cr4 = boot->long_mode ? CR4_PAE : 0;
	s->efer = boot->long_mode ? EFER_LME | EFER_LMA : 0;
}

static int vcpu_set_boot_state(struct vcpu *v, const struct boot_setup *boot)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = 0x2, .rip = boot->entry };
	int ret = vm_ioctl(v->fd, KVM_GET_SREGS, &sregs);

	if (ret)
		return ret;
	vcpu_boot_sregs(&sregs, boot);
	ret = vm_ioctl(v->fd, KVM_SET_SREGS, &sregs);
	if (boot->long_mode)
		regs.rsi = boot->arg;
	else
		regs.rbx = boot->arg;
	return ret ? ret : vm_ioctl(v->fd, KVM_SET_REGS, &regs);
}

int vcpu_create(struct vcpu *v, struct vm *vm, unsigned id, unsigned n_vcpus,
		const struct boot_setup *boot)
{
	int ret;

	*v = (struct vcpu){ .id = id, .vm = vm };
	ret = v->fd = vm_ioctl(vm->fd, KVM_CREATE_VCPU, (void *)(uintptr_t)id);
	if (ret < 0)
		return ret;
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		ret = -errno;
		close(v->fd);
		return ret;
	}
	ret = vcpu_set_cpuid(v, n_vcpus);
	if (!ret)
		ret = vcpu_set_msrs(v);
	if (!ret)
		ret = vcpu_set_fpu(v);
	if (!ret && id == 0)
		ret = vcpu_set_boot_state(v, boot);
	if (ret) {
		munmap(v->run, vm->run_size);
		close(v->fd);
	}
	return ret;
}

static void vcpu_handle_pio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (run->io.direction == KVM_EXIT_IO_OUT)
			bus_write(&v->vm->pio, run->io.port, data, run->io.size);
		else
			bus_read(&v->vm->pio, run->io.port, data, run->io.size);
	}
}

static void vcpu_handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned len = run->mmio.len <= sizeof(run->mmio.data) ? run->mmio.len : sizeof(run->mmio.data);

	if (run->mmio.is_write)
		bus_write(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
	else
		bus_read(&v->vm->mmio, run->mmio.phys_addr, run->mmio.data, len);
}

static void vcpu_handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_RESET:
		vm_shutdown_request(&v->vm->shutdown, 0, "guest reset (vCPU %u)", v->id);
		break;
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_shutdown_request(&v->vm->shutdown, 0, "guest powered off (vCPU %u)", v->id);
		break;
	default:
		vm_shutdown_request(&v->vm->shutdown, 1, "vCPU %u: system event %u",
				    v->id, v->run->system_event.type);
		break;
	}
}

/* Handles one exit; returns false when the vCPU must stop. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm_shutdown *sd = &v->vm->shutdown;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_pio(v);
		return true;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		/* No rip: on AMD, KVM has already reset the vCPU to 0xfff0. */
		vm_shutdown_request(sd, 1, "vCPU %u: triple fault (KVM_EXIT_SHUTDOWN)", v->id);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu_handle_system_event(v);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vm_shutdown_request(sd, 1, "vCPU %u: KVM internal error, suberror %u at rip 0x%llx",
				    v->id, run->internal.suberror, (unsigned long long)vcpu_rip(v));
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_shutdown_request(sd, 1, "vCPU %u: VM entry failed, hardware reason 0x%llx",
				    v->id, (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return false;
	default:
		vm_shutdown_request(sd, 1, "vCPU %u: unexpected KVM exit reason %u at rip 0x%llx",
				    v->id, run->exit_reason, (unsigned long long)vcpu_rip(v));
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	sigset_t kick;

	rcu_register_thread();
	sigemptyset(&kick);
	sigaddset(&kick, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &kick, NULL);
	while (!atomic_load_explicit(&v->stop, memory_order_acquire)) {
		int ret = __vm_ioctl(v->fd, KVM_RUN, NULL);

		if (ret == -EINTR || ret == -EAGAIN) {
			__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_RELAXED);
			continue;
		}
		if (ret < 0) {
			vm_shutdown_request(&v->vm->shutdown, 1, "vCPU %u: KVM_RUN: %s",
					    v->id, strerror(-ret));
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}
	rcu_unregister_thread();
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	int ret;

	pthread_once(&once, vcpu_install_kick_handler);
	ret = -pthread_create(&v->thread, NULL, vcpu_thread, v);
	if (!ret) {
		char name[16];

		snprintf(name, sizeof(name), "vcpu%u", v->id);
		pthread_setname_np(v->thread, name);
		v->started = true;
	}
	return ret;
}

void vcpu_stop(struct vcpu *v)
{
	/* Release: pairs with the acquire load at the top of the run loop. */
	atomic_store_explicit(&v->stop, true, memory_order_release);
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	if (v->started)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->started)
		pthread_join(v->thread, NULL);
	munmap(v->run, v->vm->run_size);
	close(v->fd);
}
