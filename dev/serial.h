/*
 * 16550A UART on port I/O, interrupt-driven in both directions.
 *
 * Threads: register accesses come from any vCPU thread; input comes from
 * the main thread (serial_receive). Both take the device's own lock; no
 * global lock.
 */
#ifndef DEV_SERIAL_H
#define DEV_SERIAL_H

#include <stddef.h>
#include <stdint.h>

struct bus;
struct vm;
struct serial;

#define SERIAL_COM1_BASE 0x3f8
#define SERIAL_COM1_IRQ 4

/* Registers a UART at base (8 ports) raising irq. Guest output goes to
 * out_fd (-1: discarded). on_rx_space, if set, is called from a vCPU thread
 * when the input buffer drains after serial_receive returned short. */
int serial_create(struct serial **out, struct vm *vm, uint16_t base, unsigned irq, int out_fd,
		  void (*on_rx_space)(struct serial *s, void *arg), void *arg);
/* Unregisters; frees after a grace period. */
void serial_destroy(struct serial *s);

/* Queues guest input; returns how many bytes fit (the rest must be offered
 * again after on_rx_space). Any thread. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

#endif
