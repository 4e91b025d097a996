/*
 * vmm: boots a Linux guest described by a config file.
 *
 * Threads: the main thread parses the config, builds the VM in a fixed
 * order (vmm_build, undone in reverse by vmm_teardown) and then runs the
 * main loop: signals (signalfd), serial input from stdin, and the shutdown
 * hand-over from vCPU threads (a bottom half). Each vCPU and IOThread runs
 * on its own thread; none of them takes a global lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "core/acpi.h"
#include "core/boot.h"
#include "core/config.h"
#include "core/iothread.h"
#include "core/loop.h"
#include "core/util.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "dev/acpi_pm.h"
#include "dev/disk.h"
#include "dev/i8042.h"
#include "dev/pci.h"
#include "dev/pci_kvm.h"
#include "dev/serial.h"
#include "rcu/rcu.h"

#define VMM_VERSION "0.1.0"
#define ESCAPE_CHAR 0x01	/* Ctrl-A, then x quits, as in QEMU */

/* All of it is owned by the main thread. */
struct vmm {
	const struct vm_config *cfg;
	struct vm vm;
	struct vcpu vcpus[CONFIG_MAX_VCPUS];
	unsigned n_vcpus;
	struct iothread *iothreads[CONFIG_MAX_IOTHREADS];
	unsigned n_iothreads;
	struct serial *serial;
	struct i8042 *i8042;
	struct acpi_pm *acpi_pm;
	struct pci_kvm pci_kvm;
	struct pci_root *pci;
	struct disk *disks[CONFIG_MAX_DISKS];
	unsigned n_disks;
	bool stats;			/* --stats: disk counters on exit */
	struct loop *loop;
	struct loop_bh shutdown_bh;	/* scheduled by any thread via vm.shutdown */
	struct loop_bh rx_space_bh;	/* scheduled by vCPUs when serial input drains */
	struct loop_fd signal_watch;
	struct loop_fd stdin_watch;
	int signal_fd;
	int serial_out_fd;
	uint8_t pending[256];		/* stdin bytes the UART had no room for */
	size_t pending_len, pending_off;
	bool escape;			/* the last input byte was ESCAPE_CHAR */
	bool vm_created;
};

/* The terminal state to restore; global so atexit and fatal-signal
 * handlers can reach it. Written once by the main thread before vCPUs run. */
static struct termios saved_termios;
static int saved_stdin_flags = -1;
static volatile sig_atomic_t termios_saved;

/* Idempotent (teardown, atexit and fatal signals all call it). TCSADRAIN:
 * changing a serial console's settings under queued output can drop it. */
static void terminal_restore(void)
{
	if (termios_saved) {
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
		termios_saved = 0;
	}
	if (saved_stdin_flags >= 0) {
		fcntl(STDIN_FILENO, F_SETFL, saved_stdin_flags);
		saved_stdin_flags = -1;
	}
}

static void fatal_signal(int sig)
{
	terminal_restore();
	raise(sig);	/* SA_RESETHAND: the default action now */
}

static void terminal_raw(void)
{
	static const int fatal[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT };
	struct sigaction sa = { .sa_handler = fatal_signal, .sa_flags = SA_RESETHAND };
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_termios))
		return;
	termios_saved = 1;
	atexit(terminal_restore);
	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < ARRAY_SIZE(fatal); i++)
		sigaction(fatal[i], &sa, NULL);
	raw = saved_termios;
	cfmakeraw(&raw);
	tcsetattr(STDIN_FILENO, TCSANOW, &raw);
}

/* Offers pending input to the UART; false while it has no room. */
static bool vmm_flush_pending(struct vmm *v)
{
	while (v->pending_off < v->pending_len) {
		size_t n = serial_receive(v->serial, v->pending + v->pending_off,
					  v->pending_len - v->pending_off);

		if (n == 0)
			return false;
		v->pending_off += n;
	}
	v->pending_len = v->pending_off = 0;
	return true;
}

/* Handles the Ctrl-A escape on a terminal; returns the bytes to pass on. */
static size_t vmm_filter_escape(struct vmm *v, uint8_t *buf, size_t n)
{
	size_t out = 0;

	if (!termios_saved)
		return n;
	for (size_t i = 0; i < n; i++) {
		if (v->escape) {
			v->escape = false;
			if (buf[i] == 'x') {
				vm_shutdown_request(&v->vm.shutdown, 0, "stopped from the console (Ctrl-A x)");
				return out;
			}
			if (buf[i] != ESCAPE_CHAR)
				continue;
		} else if (buf[i] == ESCAPE_CHAR) {
			v->escape = true;
			continue;
		}
		buf[out++] = buf[i];
	}
	return out;
}

static void vmm_stdin_ready(struct loop_fd *w, uint32_t revents)
{
	struct vmm *v = container_of(w, struct vmm, stdin_watch);

	while (vmm_flush_pending(v)) {
		ssize_t n = read(STDIN_FILENO, v->pending, sizeof(v->pending));

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0) {
			/* End of input: the guest keeps running without it. */
			loop_fd_del(v->loop, w);
			return;
		}
		v->pending_len = vmm_filter_escape(v, v->pending, (size_t)n);
	}
	/* The UART is full: stop reading until the guest drains it. */
	loop_fd_del(v->loop, w);
}

static void vmm_rx_space(struct loop_bh *bh)
{
	struct vmm *v = container_of(bh, struct vmm, rx_space_bh);

	if (vmm_flush_pending(v) && !v->stdin_watch.loop)
		loop_fd_add(v->loop, &v->stdin_watch);
}

static void vmm_serial_rx_space(struct serial *s, void *arg)
{
	struct vmm *v = arg;

	loop_bh_schedule(v->loop, &v->rx_space_bh);
}

static void vmm_signal(struct loop_fd *w, uint32_t revents)
{
	struct vmm *v = container_of(w, struct vmm, signal_watch);
	struct signalfd_siginfo si;

	while (read(v->signal_fd, &si, sizeof(si)) == sizeof(si))
		vm_shutdown_request(&v->vm.shutdown, 128 + (int)si.ssi_signo, "stopped by %s",
				    strsignal((int)si.ssi_signo));
}

static void vmm_shutdown_bh(struct loop_bh *bh)
{
	struct vmm *v = container_of(bh, struct vmm, shutdown_bh);

	loop_stop(v->loop);
}

static void vmm_shutdown_notify(struct vm_shutdown *sd)
{
	struct vmm *v = container_of(sd, struct vmm, vm.shutdown);

	loop_bh_schedule(v->loop, &v->shutdown_bh);
}

/* SIGINT/SIGTERM/SIGHUP are blocked in every thread and read from a
 * signalfd by the main loop; a closed output pipe is not fatal. */
static int vmm_setup_signals(struct vmm *v)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	v->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (v->signal_fd < 0)
		return -errno;
	loop_fd_init(&v->signal_watch, v->signal_fd, POLLIN, vmm_signal);
	return loop_fd_add(v->loop, &v->signal_watch);
}

static int vmm_open_serial_out(struct vmm *v)
{
	const struct vm_config *cfg = v->cfg;

	switch (cfg->serial_output) {
	case SERIAL_OUT_STDIO:
		v->serial_out_fd = STDOUT_FILENO;
		return 0;
	case SERIAL_OUT_NONE:
		v->serial_out_fd = -1;
		return 0;
	default:
		v->serial_out_fd = open(cfg->serial_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (v->serial_out_fd < 0) {
			log_msg("%s: [serial] output: cannot open %s: %s", cfg->path,
				cfg->serial_path, strerror(errno));
			return -errno;
		}
		return 0;
	}
}

static int vmm_write_acpi(struct vmm *v)
{
	const struct acpi_params p = {
		.n_cpus = v->cfg->vcpus,
		.lapic_addr = 0xfee00000,
		.ioapic_addr = 0xfec00000,
		.ioapic_id = 0,	/* what KVM's IOAPIC reports after reset */
		.sleep_port = ACPI_PM_SLEEP_PORT,
		.reset_port = ACPI_PM_RESET_PORT,
		.reset_value = ACPI_PM_RESET_VALUE,
		.pci = true,
	};
	void *buf = mem_translate(&v->vm.mem, BOOT_ACPI_ADDR, BOOT_ACPI_SIZE);
	int ret = buf ? acpi_build(buf, BOOT_ACPI_SIZE, BOOT_ACPI_ADDR, &p) : -EFAULT;

	if (ret < 0)
		log_msg("building ACPI tables: %s", strerror(-ret));
	return ret < 0 ? ret : 0;
}

static int vmm_create_devices(struct vmm *v)
{
	int ret = vmm_open_serial_out(v);

	if (!ret)
		ret = serial_create(&v->serial, &v->vm, SERIAL_COM1_BASE, SERIAL_COM1_IRQ,
				    v->serial_out_fd, vmm_serial_rx_space, v);
	if (!ret)
		ret = i8042_create(&v->i8042, &v->vm);
	if (!ret)
		ret = acpi_pm_create(&v->acpi_pm, &v->vm);
	if (ret)
		log_msg("creating devices: %s", strerror(-ret));
	return ret;
}

static int vmm_create_vcpus(struct vmm *v, const struct boot_setup *boot)
{
	for (unsigned i = 0; i < v->cfg->vcpus; i++) {
		int ret = vcpu_create(&v->vcpus[i], &v->vm, i, v->cfg->vcpus, boot);

		if (ret) {
			log_msg("creating vCPU %u: %s", i, strerror(-ret));
			return ret;
		}
		v->n_vcpus++;
	}
	return 0;
}

static int vmm_start_iothreads(struct vmm *v)
{
	for (unsigned i = 0; i < v->cfg->n_iothreads; i++) {
		int ret = iothread_start(&v->cfg->iothreads[i], &v->iothreads[i]);

		if (ret) {
			log_msg("%s: [iothread.%s]: cannot start: %s", v->cfg->path,
				v->cfg->iothreads[i].name, strerror(-ret));
			return ret;
		}
		v->n_iothreads++;
	}
	return 0;
}

static int vmm_create_pci(struct vmm *v)
{
	int ret;

	pci_kvm_init(&v->pci_kvm, &v->vm);
	ret = pci_root_create(&v->pci, &v->vm.pio, &v->vm.mmio, &v->pci_kvm.platform);
	if (ret)
		log_msg("creating the PCI root: %s", strerror(-ret));
	return ret;
}

static int vmm_create_disks(struct vmm *v)
{
	for (unsigned i = 0; i < v->cfg->n_disks; i++) {
		const struct disk_params p = {
			.cfg = &v->cfg->disks[i], .config_path = v->cfg->path,
			.vcpus = v->cfg->vcpus, .iothreads = v->iothreads,
			.mem = &v->vm.mem, .root = v->pci,
		};
		char err[PATH_MAX + 256];
		int ret = disk_create(&v->disks[i], &p, err, sizeof(err));

		if (ret) {
			log_msg("%s", err);
			return ret;
		}
		v->n_disks++;
	}
	return 0;
}

static int vmm_watch_stdin(struct vmm *v)
{
	if (v->cfg->serial_output != SERIAL_OUT_STDIO)
		return 0;
	saved_stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
	if (saved_stdin_flags < 0)
		return 0;	/* no stdin at all */
	terminal_raw();
	fcntl(STDIN_FILENO, F_SETFL, saved_stdin_flags | O_NONBLOCK);
	loop_fd_init(&v->stdin_watch, STDIN_FILENO, POLLIN, vmm_stdin_ready);
	/* stdin may be a file or /dev/null, which io_uring cannot poll: then
	 * the guest just gets no input. */
	if (loop_fd_add(v->loop, &v->stdin_watch))
		log_msg("stdin cannot be polled; serial input disabled");
	return 0;
}

static int vmm_build(struct vmm *v)
{
	const struct loop_params lp = { .name = "main" };
	struct boot_setup boot;
	char err[512];
	int ret;

	ret = loop_new(&lp, &v->loop);
	if (ret) {
		const char *why = loop_unavailable_reason(ret);

		log_msg("%s", why ? why : strerror(-ret));
		return ret;
	}
	loop_bh_init(&v->shutdown_bh, vmm_shutdown_bh);
	loop_bh_init(&v->rx_space_bh, vmm_rx_space);
	ret = vmm_setup_signals(v);
	if (ret)
		return ret;
	ret = vm_create(&v->vm, v->cfg->memory);
	if (ret)
		return ret;
	v->vm_created = true;
	v->vm.shutdown.notify = vmm_shutdown_notify;
	ret = vmm_write_acpi(v);
	if (!ret)
		ret = boot_write_reset_vector(&v->vm.mem, ACPI_PM_RESET_PORT, ACPI_PM_RESET_VALUE);
	if (!ret) {
		ret = boot_load(&v->vm.mem, v->cfg, BOOT_ACPI_ADDR, &boot, err, sizeof(err));
		if (ret)
			log_msg("%s", err);
	}
	if (!ret)
		ret = vmm_create_devices(v);
	if (!ret)
		ret = vmm_create_pci(v);
	if (!ret)
		ret = vmm_create_vcpus(v, &boot);
	if (!ret)
		ret = vmm_start_iothreads(v);
	if (!ret)
		ret = vmm_create_disks(v);
	if (!ret)
		ret = vmm_watch_stdin(v);
	return ret;
}

static void vmm_teardown(struct vmm *v)
{
	for (unsigned i = 0; i < v->n_vcpus; i++)
		vcpu_stop(&v->vcpus[i]);
	for (unsigned i = 0; i < v->n_vcpus; i++)
		vcpu_destroy(&v->vcpus[i]);
	for (unsigned i = 0; i < v->n_disks; i++)
		disk_destroy(v->disks[i], v->stats ? stderr : NULL);
	for (unsigned i = 0; i < v->n_iothreads; i++)
		iothread_stop(v->iothreads[i]);
	if (v->pci)
		pci_root_destroy(v->pci);
	if (v->stdin_watch.loop)
		loop_fd_del(v->loop, &v->stdin_watch);
	if (v->acpi_pm)
		acpi_pm_destroy(v->acpi_pm);
	if (v->i8042)
		i8042_destroy(v->i8042);
	if (v->serial)
		serial_destroy(v->serial);
	if (v->serial_out_fd > STDERR_FILENO)
		close(v->serial_out_fd);
	rcu_barrier();	/* device frees queued by *_destroy */
	if (v->vm_created)
		vm_destroy(&v->vm);
	if (v->signal_watch.loop)
		loop_fd_del(v->loop, &v->signal_watch);
	if (v->signal_fd > 0)
		close(v->signal_fd);
	if (v->loop)
		loop_free(v->loop);
	terminal_restore();
}

static int vmm_run(const struct vm_config *cfg, bool stats)
{
	static struct vmm v;	/* large (vCPU array): keep it off the stack */
	int ret;

	v = (struct vmm){ .cfg = cfg, .signal_fd = -1, .serial_out_fd = -1, .stats = stats };
	rcu_register_thread();
	ret = vmm_build(&v);
	for (unsigned i = 0; !ret && i < v.n_vcpus; i++) {
		ret = vcpu_start(&v.vcpus[i]);
		if (ret)
			log_msg("starting vCPU %u: %s", i, strerror(-ret));
	}
	if (!ret)
		ret = loop_run(v.loop);
	vmm_teardown(&v);
	rcu_unregister_thread();
	if (ret)
		return 1;
	if (atomic_load_explicit(&v.vm.shutdown.requested, memory_order_acquire)) {
		log_msg("%s", v.vm.shutdown.reason);
		return v.vm.shutdown.status;
	}
	return 1;
}

/* Opens each disk image the way the VM would, so --check and a failed
 * start name the config line. */
static int vmm_check_disks(const struct vm_config *cfg, char *err, size_t errlen)
{
	for (unsigned i = 0; i < cfg->n_disks; i++) {
		const struct disk_config *d = &cfg->disks[i];
		char why[512];
		int ret = disk_check(d, why, sizeof(why));

		if (ret) {
			snprintf(err, errlen, "%s:%u: disk.%s.path: %s", cfg->path,
				 d->line.path ? d->line.path : d->line.disk, d->name, why);
			return ret;
		}
	}
	return 0;
}

/* Host facts a config depends on, checked before any KVM call. */
static int vmm_check_host(const struct vm_config *cfg, char *err, size_t errlen)
{
	for (unsigned i = 0; i < cfg->n_iothreads; i++) {
		const struct iothread_config *t = &cfg->iothreads[i];
		unsigned bad;

		if (iothread_check_cpus(t, &bad)) {
			snprintf(err, errlen, "%s:%u: iothread.%s.cpus: expected CPUs online on this "
				 "host (/sys/devices/system/cpu/online), found %u",
				 cfg->path, t->cpus_line, t->name, bad);
			return -EINVAL;
		}
	}
	return vmm_check_disks(cfg, err, errlen);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmm CONFIG          boot the VM described by CONFIG\n"
		   "       vmm --stats CONFIG  the same, then print each disk queue's counters\n"
		   "       vmm --check CONFIG  validate CONFIG (its kernel, initrd and disk images) only\n"
		   "       vmm --help | --version\n"
		   "The config format is documented in docs/config.md.\n"
		   "On a terminal, Ctrl-A x stops the VM; Ctrl-A Ctrl-A sends Ctrl-A.\n");
}

int main(int argc, char **argv)
{
	static struct vm_config cfg;
	bool check = false, stats = false;
	const char *path;
	char err[2 * PATH_MAX + 1024];

	if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "--version")) {
		printf("vmm %s\n", VMM_VERSION);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--check"))
		check = true;
	else if (argc == 3 && !strcmp(argv[1], "--stats"))
		stats = true;
	else if (argc != 2 || argv[1][0] == '-') {
		usage(stderr);
		return 2;
	}
	path = argv[argc - 1];
	if (config_load(path, &cfg, err, sizeof(err)) || vmm_check_host(&cfg, err, sizeof(err)) ||
	    boot_check(&cfg, err, sizeof(err))) {
		log_msg("%s", err);
		return 1;
	}
	if (check) {
		printf("%s: ok\n", path);
		return 0;
	}
	return vmm_run(&cfg, stats);
}
