/*
 * Small helpers shared by every folder: container_of, logging, checked
 * arithmetic. Safe from any thread: logging writes whole lines with one
 * write(2) so lines from vCPU threads and IOThreads never interleave.
 */
#ifndef CORE_UTIL_H
#define CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((__typeof__(x))(a) - 1))

#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)

/* Prints "vmm: <message>\n" to stderr in one write. */
void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Like log_msg, then exits with status 1. Only for vmm.c setup and for
 * host invariants that cannot be recovered. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Monotonic clock in nanoseconds. */
uint64_t clock_ns(void);

#endif
