/*
 * libFuzzer target for dev/virtq.c. The input is a queue configuration
 * (FUZZ_HDR bytes) followed by the contents of a small guest RAM, so the
 * fuzzer writes rings, descriptors and indirect tables directly. The
 * target runs the device side as an IOThread would: optionally disable
 * kicks, pop until empty or error, push every chain back, then
 * should_notify, enable kicks (serving again if work arrived) and
 * has_avail. Contract checked: errors are
 * only those virtq.h lists, every segment lies inside guest RAM and is
 * non-empty, gpa[] matches iov[], and n_out + n_in <= max. Guard pages
 * around RAM turn any access outside it into a crash.
 * Single-threaded, as libFuzzer runs it; the thread is RCU-registered.
 *
 * Header layout (little-endian):
 *   [0] log2 of the queue size (mod 11)
 *   [1] bit 0 EVENT_IDX, bit 1 INDIRECT_DESC, bit 2 kicks off while popping
 *   [2] e->max - 1 (mod FUZZ_MAX_SEGS)
 *   [3] bit 0: the RAM bytes go at the end of RAM instead of its start
 *   [4..5] desc / 16, [6..7] avail / 2, [8..9] used / 4 (mod RAM, may cross its end)
 *   [10..11] index the queue starts at (as if it had served that many chains)
 *   [12..15] used length pushed for each chain
 */
#include "core/mem.h"
#include "core/util.h"
#include "dev/virtq.h"
#include "rcu/rcu.h"
#include "tests/ram_guard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_RAM (64 * KiB)
#define FUZZ_HDR 16
#define FUZZ_MAX_SEGS 64

static struct mem_map fuzz_mem;
static struct mem_region fuzz_ram;

static void fuzz_assert(bool ok)
{
	if (!ok)
		abort();
}

static int fuzz_region(const struct mem_region *r, void *arg)
{
	fuzz_ram = *r;
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	rcu_register_thread();
	if (ram_guard_init(&fuzz_mem, FUZZ_RAM))
		abort();
	mem_for_each(&fuzz_mem, fuzz_region, NULL);
	fuzz_assert(fuzz_ram.size == FUZZ_RAM);
	return 0;
}

static uint64_t fuzz_le(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | p[n];
	return v;
}

static void fuzz_check_elem(const struct virtq *q, const struct virtq_elem *e)
{
	const uint8_t *lo = fuzz_ram.hva, *hi = fuzz_ram.hva + fuzz_ram.size;

	fuzz_assert(e->head < q->size);
	fuzz_assert(e->n_out + e->n_in <= e->max);
	for (unsigned i = 0; i < e->n_out + e->n_in; i++) {
		const uint8_t *b = e->iov[i].iov_base;

		fuzz_assert(e->iov[i].iov_len > 0);
		fuzz_assert(b >= lo && b < hi && e->iov[i].iov_len <= (size_t)(hi - b));
		fuzz_assert(e->gpa[i] == fuzz_ram.gpa + (uint64_t)(b - lo));
	}
}

/* Pops and pushes until the ring is empty or hostile. */
static void fuzz_serve(struct virtq *q, struct virtq_elem *e, uint32_t len)
{
	int ret = 1;

	/* A full ring holds `size` chains; the bound stops a queue whose used
	 * ring overlaps avail->idx from being fed by its own pushes. */
	for (unsigned i = 0; i < 4u * q->size && ret == 1; i++) {
		ret = virtq_pop(q, e);
		if (ret == 1) {
			fuzz_check_elem(q, e);
			virtq_push(q, e->head, len);
		}
	}
	fuzz_assert(ret >= 0 || ret == -EFAULT || ret == -ELOOP || ret == -EINVAL ||
		    ret == -E2BIG);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iovec iov[FUZZ_MAX_SEGS];
	uint64_t gpa[FUZZ_MAX_SEGS];
	struct virtq_elem e = { .iov = iov, .gpa = gpa };
	struct virtq_config cfg;
	struct virtq q;
	uint16_t start;
	size_t n;

	if (size < FUZZ_HDR)
		return 0;
	n = size - FUZZ_HDR < FUZZ_RAM ? size - FUZZ_HDR : FUZZ_RAM;
	memset(fuzz_ram.hva, 0, FUZZ_RAM);
	memcpy(fuzz_ram.hva + (data[3] & 1 ? FUZZ_RAM - n : 0), data + FUZZ_HDR, n);
	cfg = (struct virtq_config){
		.size = (uint16_t)(1u << (data[0] % 11)),
		.event_idx = data[1] & 1, .indirect = data[1] & 2,
		.desc = fuzz_le(data + 4, 2) * 16 % FUZZ_RAM,
		.avail = fuzz_le(data + 6, 2) * 2 % FUZZ_RAM,
		.used = fuzz_le(data + 8, 2) * 4 % FUZZ_RAM,
	};
	e.max = 1 + data[2] % FUZZ_MAX_SEGS;
	if (virtq_init(&q, &fuzz_mem, &cfg))
		return 0;
	start = (uint16_t)fuzz_le(data + 10, 2);
	q.last_avail = q.used_idx = q.signalled_used = start;
	if (data[1] & 4)
		virtq_set_kicks(&q, false);
	fuzz_serve(&q, &e, (uint32_t)fuzz_le(data + 12, 4));
	virtq_should_notify(&q);
	if (virtq_set_kicks(&q, true))
		fuzz_serve(&q, &e, 0);
	virtq_has_avail(&q);
	return 0;
}
