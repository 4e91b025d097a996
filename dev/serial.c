/*
 * 16550A UART (see serial.h). Model: the register description in the
 * PC16550D data sheet; transmit is instantaneous, so the transmitter is
 * always empty and THRE interrupts fire as soon as they are enabled.
 *
 * Locking: every register field is guarded by `lock`, taken by vCPU threads
 * for register accesses and by the input thread in serial_receive. The IRQ
 * line is updated under the lock so level changes reach KVM in order.
 */
#include "dev/serial.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/bus.h"
#include "core/mutex.h"
#include "core/util.h"
#include "core/vm.h"
#include "rcu/rcu.h"

enum {
	REG_RBR_THR_DLL = 0, REG_IER_DLM = 1, REG_IIR_FCR = 2, REG_LCR = 3,
	REG_MCR = 4, REG_LSR = 5, REG_MSR = 6, REG_SCR = 7,
};

#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ON 0xc0
#define FCR_FIFO_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

#define SERIAL_RX_SIZE 4096

struct serial {
	struct bus_dev dev;
	struct rcu_head rcu;
	struct vm *vm;
	unsigned irq;
	int out_fd;
	void (*on_rx_space)(struct serial *s, void *arg);
	void *arg;
	struct mutex lock;
	/* Every field below is guarded by lock. (Clang's C mode cannot name a
	 * sibling field in GUARDED_BY; the REQUIRES(s->lock) on each function
	 * that touches them is what -Wthread-safety checks.) */
	uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
	bool thr_pending;	/* THRE interrupt not yet acknowledged */
	bool rx_was_full;	/* serial_receive returned short */
	int irq_level;
	unsigned rx_head, rx_count;
	uint8_t rx[SERIAL_RX_SIZE];
};

static uint8_t serial_iir(struct serial *s) REQUIRES(s->lock)
{
	uint8_t fifo = (s->fcr & FCR_FIFO_ENABLE) ? IIR_FIFO_ON : 0;

	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI | fifo;
	if ((s->ier & IER_THRI) && s->thr_pending)
		return IIR_THRI | fifo;
	return IIR_NONE | fifo;
}

static void serial_update_irq(struct serial *s) REQUIRES(s->lock)
{
	int level = !(serial_iir(s) & IIR_NONE);

	if (level != s->irq_level) {
		s->irq_level = level;
		vm_irq_line(s->vm, s->irq, level);
	}
}

/* Returns true if the buffer was full before and has room again. */
static bool serial_push_rx(struct serial *s, uint8_t byte) REQUIRES(s->lock)
{
	if (s->rx_count == SERIAL_RX_SIZE)
		return false;
	s->rx[(s->rx_head + s->rx_count++) % SERIAL_RX_SIZE] = byte;
	return true;
}

static uint8_t serial_pop_rx(struct serial *s) REQUIRES(s->lock)
{
	uint8_t byte;

	if (!s->rx_count)
		return 0;
	byte = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_SIZE;
	s->rx_count--;
	return byte;
}

static uint8_t serial_msr(struct serial *s) REQUIRES(s->lock)
{
	uint8_t m = s->mcr;

	if (!(m & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;
	/* Loopback wires the modem outputs back to the inputs; Linux's probe
	 * checks this. */
	return ((m & MCR_RTS) ? MSR_CTS : 0) | ((m & MCR_DTR) ? MSR_DSR : 0) |
	       ((m & MCR_OUT1) ? MSR_RI : 0) | ((m & MCR_OUT2) ? MSR_DCD : 0);
}

/* Writes one byte, waiting while the output is full: stdout may share a
 * non-blocking file description with stdin (a terminal), and a real UART
 * holds the sender back rather than dropping data. */
static void serial_output(struct serial *s, uint8_t byte) REQUIRES(s->lock)
{
	struct pollfd pfd = { .fd = s->out_fd, .events = POLLOUT };

	while (write(s->out_fd, &byte, 1) < 0) {
		if (errno == EAGAIN)
			poll(&pfd, 1, -1);
		else if (errno != EINTR) {
			s->out_fd = -1;	/* output closed: keep the guest running */
			return;
		}
	}
}

static void serial_transmit(struct serial *s, uint8_t byte) REQUIRES(s->lock)
{
	if (s->mcr & MCR_LOOP)
		serial_push_rx(s, byte);
	else if (s->out_fd >= 0)
		serial_output(s, byte);
	s->thr_pending = true;
}

static uint8_t serial_read_reg(struct serial *s, unsigned reg, bool *drained) REQUIRES(s->lock)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t v;

	switch (reg) {
	case REG_RBR_THR_DLL:
		if (dlab)
			return s->dll;
		v = serial_pop_rx(s);
		*drained = s->rx_was_full && s->rx_count == 0;
		return v;
	case REG_IER_DLM:
		return dlab ? s->dlm : s->ier;
	case REG_IIR_FCR:
		v = serial_iir(s);
		if ((v & 0x0f) == IIR_THRI)
			s->thr_pending = false;	/* reading IIR acknowledges THRE */
		return v;
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return LSR_THRE | LSR_TEMT | (s->rx_count ? LSR_DR : 0);
	case REG_MSR:
		return serial_msr(s);
	default:
		return s->scr;
	}
}

static void serial_write_reg(struct serial *s, unsigned reg, uint8_t v) REQUIRES(s->lock)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case REG_RBR_THR_DLL:
		if (dlab)
			s->dll = v;
		else
			serial_transmit(s, v);
		break;
	case REG_IER_DLM:
		if (dlab) {
			s->dlm = v;
			break;
		}
		/* Enabling THRE interrupts with an empty transmitter raises one. */
		if ((v & IER_THRI) && !(s->ier & IER_THRI))
			s->thr_pending = true;
		s->ier = v & 0x0f;
		break;
	case REG_IIR_FCR:
		s->fcr = v & ~FCR_CLEAR_RX;
		if (v & FCR_CLEAR_RX)
			s->rx_count = 0;
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & 0x1f;
		break;
	case REG_SCR:
		s->scr = v;
		break;
	default:
		break;	/* LSR and MSR are read-only */
	}
}

static void serial_read(struct bus_dev *dev, uint64_t offset, void *data, unsigned len)
{
	struct serial *s = container_of(dev, struct serial, dev);
	bool drained = false;

	mutex_lock(&s->lock);
	*(uint8_t *)data = serial_read_reg(s, (unsigned)offset, &drained);
	if (drained)
		s->rx_was_full = false;
	serial_update_irq(s);
	mutex_unlock(&s->lock);
	for (unsigned i = 1; i < len; i++)
		((uint8_t *)data)[i] = 0;
	if (drained && s->on_rx_space)
		s->on_rx_space(s, s->arg);
}

static void serial_write(struct bus_dev *dev, uint64_t offset, const void *data, unsigned len)
{
	struct serial *s = container_of(dev, struct serial, dev);

	mutex_lock(&s->lock);
	serial_write_reg(s, (unsigned)offset, *(const uint8_t *)data);
	serial_update_irq(s);
	mutex_unlock(&s->lock);
}

static const struct bus_dev_ops serial_ops = {
	.read = serial_read,
	.write = serial_write,
};

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	mutex_lock(&s->lock);
	while (n < len && serial_push_rx(s, buf[n]))
		n++;
	if (n < len)
		s->rx_was_full = true;
	serial_update_irq(s);
	mutex_unlock(&s->lock);
	return n;
}

int serial_create(struct serial **out, struct vm *vm, uint16_t base, unsigned irq, int out_fd,
		  void (*on_rx_space)(struct serial *s, void *arg), void *arg)
{
	struct serial *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->dev = (struct bus_dev){ .ops = &serial_ops, .name = "serial" };
	s->vm = vm;
	s->irq = irq;
	s->out_fd = out_fd;
	s->on_rx_space = on_rx_space;
	s->arg = arg;
	mutex_init(&s->lock);
	ret = bus_register(&vm->pio, base, 8, &s->dev);
	if (ret) {
		free(s);
		return ret;
	}
	*out = s;
	return 0;
}

static void serial_free_rcu(struct rcu_head *head)
{
	struct serial *s = container_of(head, struct serial, rcu);

	mutex_destroy(&s->lock);
	free(s);
}

void serial_destroy(struct serial *s)
{
	bus_unregister(&s->vm->pio, &s->dev);
	call_rcu(&s->rcu, serial_free_rcu);
}
