/*
 * libFuzzer target for the virtio-blk data path: the whole stack (virtio-pci
 * transport, virtio-blk, virtqueues, a 1 MiB raw file on real io_uring) is
 * built once; each input restarts the device through the test driver, lays
 * its bytes into the rings and guest memory, kicks, and waits for the
 * device to answer everything or set NEEDS_RESET.
 *
 * Input: an 8-byte header (byte 0: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC,
 * bit 2 kick by MMIO exit; byte 1: avail idx; bytes 2-3: used_event; byte
 * 4: avail flags), the avail ring (16 le16 heads), the descriptor table (16
 * x 16 bytes), an area for indirect tables (4 KiB), then the data window
 * (64 KiB: request headers, payloads, status bytes); missing bytes are 0.
 * Descriptors are mapped so that the device may legitimately write only
 * into the data window: addresses with bit 63 set become addresses beyond
 * RAM; others land in the window (indirect ones, 16-byte aligned, in the
 * table area, whose entries are mapped the same way); lengths with bit 31
 * set are kept (and run past RAM), others are cut to the window's end.
 *
 * Checked: no crash or sanitizer report; the device answers or asks for a
 * reset within a bound (a hang aborts); every used entry names a head the
 * driver made available; after the reset, guest memory changed only
 * inside writable descriptors of the window: the descriptor table, avail
 * ring, indirect tables and the guard pages around them are untouched.
 *
 * Threads: libFuzzer's thread is the guest's vCPU; the device runs on one
 * IOThread, as in the vmm.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "dev/virtio.h"
#include "rcu/rcu.h"
#include "tests/lib/blk_stack.h"

#define FUZZ_QSIZE 16
#define FUZZ_HDR 8
#define FUZZ_TABLE 4096
#define FUZZ_WINDOW (64 * 1024)
#define FUZZ_GUARD 4096
#define FUZZ_RAM (16 * MiB)
#define FUZZ_WAIT_MS 5000

static struct blk_stack fuzz_stack;
static uint64_t fuzz_window, fuzz_table;	/* gpas, each between guard pages */
static uint8_t *fuzz_mem;			/* host view of guards, window, table */
static uint8_t fuzz_before[FUZZ_GUARD * 3 + FUZZ_WINDOW + FUZZ_TABLE];
static uint8_t fuzz_writable[FUZZ_WINDOW];	/* 1: some writable descriptor covers it */

static void fuzz_fail(int line, const char *what)
{
	log_msg("fuzz_virtio_blk.c:%d: %s", line, what);
	abort();
}

#define fuzz_assert(c) ((c) ? (void)0 : fuzz_fail(__LINE__, #c))

static void fuzz_setup(void)
{
	char path[] = "/tmp/fuzz-virtio-blk-XXXXXX";
	int fd = mkstemp(path);
	uint64_t base;

	fuzz_assert(fd >= 0 && ftruncate(fd, MiB) == 0);
	close(fd);
	rcu_register_thread();
	fuzz_assert(blk_stack_create(&fuzz_stack, &(struct blk_stack_params){
		.path = path, .queue_size = FUZZ_QSIZE, .ram = FUZZ_RAM }) == 0);
	unlink(path);
	base = virtio_guest_alloc(&fuzz_stack.guest, sizeof(fuzz_before), 4096);
	fuzz_mem = virtio_guest_hva(&fuzz_stack.guest, base, sizeof(fuzz_before));
	fuzz_assert(fuzz_mem != NULL);
	fuzz_window = base + FUZZ_GUARD;
	fuzz_table = fuzz_window + FUZZ_WINDOW + FUZZ_GUARD;
}

/* Maps a descriptor as the header comment says; marks writable bytes. */
static void fuzz_desc(struct virtio_guest_desc *d)
{
	uint64_t off;

	if (d->addr >> 63) {
		d->addr = FUZZ_RAM + (d->addr & ((1ULL << 40) - 1));
		return;
	}
	if (d->flags & VIRTIO_GUEST_DESC_F_INDIRECT) {
		off = d->addr % FUZZ_TABLE & ~15ULL;
		d->addr = fuzz_table + off;
		d->len = d->len >> 31 ? d->len : d->len % (FUZZ_TABLE - off + 1);
		return;
	}
	off = d->addr % FUZZ_WINDOW;
	d->addr = fuzz_window + off;
	if (d->len >> 31)
		return;
	d->len %= FUZZ_WINDOW - off + 1;
	if (d->flags & VIRTIO_GUEST_DESC_F_WRITE)
		memset(fuzz_writable + off, 1, d->len);
}

/* Copies min(len, size) bytes of the input at *pos into dst, zero-fills. */
static void fuzz_take(void *dst, size_t len, const uint8_t *data, size_t size, size_t *pos)
{
	size_t n = *pos < size ? size - *pos : 0;

	n = n < len ? n : len;
	memcpy(dst, data + *pos, n);
	memset((uint8_t *)dst + n, 0, len - n);
	*pos += len;
}

static void fuzz_lay(const uint8_t *data, size_t size)
{
	struct virtio_guest_queue *vq = &fuzz_stack.guest.q[0];
	struct virtio_guest_desc *t = (struct virtio_guest_desc *)(fuzz_mem + 2 * FUZZ_GUARD +
								   FUZZ_WINDOW);
	size_t pos = FUZZ_HDR;
	unsigned i;

	memset(fuzz_writable, 0, sizeof(fuzz_writable));
	fuzz_take(vq->a + 2, 2 * FUZZ_QSIZE, data, size, &pos);
	fuzz_take(vq->d, FUZZ_QSIZE * sizeof(*vq->d), data, size, &pos);
	fuzz_take(t, FUZZ_TABLE, data, size, &pos);
	fuzz_take(fuzz_mem + FUZZ_GUARD, FUZZ_WINDOW, data, size, &pos);
	for (i = 0; i < FUZZ_QSIZE; i++)
		fuzz_desc(&vq->d[i]);
	for (i = 0; i < FUZZ_TABLE / sizeof(*t); i++)
		fuzz_desc(&t[i]);
	memcpy(fuzz_before, fuzz_mem, sizeof(fuzz_before));
}

/* Waits until the device used every available chain or asked for a reset. */
static void fuzz_wait(uint16_t avail)
{
	struct virtio_guest *g = &fuzz_stack.guest;
	uint64_t deadline = clock_ns() + FUZZ_WAIT_MS * 1000000ULL;

	while (virtio_guest_used_idx(g, 0) != avail &&
	       !(virtio_guest_status(g) & VIRTIO_STATUS_NEEDS_RESET)) {
		if (clock_ns() > deadline) {
			log_msg("fuzz: device hung: used %u of %u", virtio_guest_used_idx(g, 0), avail);
			abort();
		}
		usleep(10);
	}
}

static void fuzz_check_used(uint16_t avail, uint16_t used)
{
	struct virtio_guest_queue *vq = &fuzz_stack.guest.q[0];
	unsigned i, j;

	fuzz_assert(used <= avail || avail > FUZZ_QSIZE);
	for (i = 0; i < used && i < FUZZ_QSIZE; i++) {
		uint32_t id;
		bool offered = false;

		memcpy(&id, vq->u + 4 + 8 * i, 4);
		for (j = 0; j < avail && j < FUZZ_QSIZE; j++)
			offered |= vq->a[2 + j] == id;
		fuzz_assert(offered);
	}
}

/* After the reset: writes only where a writable descriptor allowed them. */
static void fuzz_check_memory(const uint8_t *ring_before)
{
	struct virtio_guest_queue *vq = &fuzz_stack.guest.q[0];
	const uint8_t *w = fuzz_mem + FUZZ_GUARD, *wb = fuzz_before + FUZZ_GUARD;
	size_t used_end = (size_t)(vq->used - vq->desc) + 6 + 8 * FUZZ_QSIZE, i;
	const uint8_t *ring = (const uint8_t *)vq->d;

	fuzz_assert(!memcmp(fuzz_mem, fuzz_before, FUZZ_GUARD));
	fuzz_assert(!memcmp(fuzz_mem + FUZZ_GUARD + FUZZ_WINDOW,
			    fuzz_before + FUZZ_GUARD + FUZZ_WINDOW, 2 * FUZZ_GUARD + FUZZ_TABLE));
	for (i = 0; i < FUZZ_WINDOW; i++)
		fuzz_assert(w[i] == wb[i] || fuzz_writable[i]);
	fuzz_assert(!memcmp(ring, ring_before, (size_t)(vq->used - vq->desc)));
	for (i = used_end; i < 32 * KiB; i++)
		fuzz_assert(ring[i] == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t ring_before[32 * KiB];
	struct virtio_guest *g = &fuzz_stack.guest;
	uint8_t hdr[FUZZ_HDR];
	uint64_t features = UINT64_MAX;
	size_t pos = 0;
	uint16_t avail;

	if (!fuzz_mem)
		fuzz_setup();
	fuzz_take(hdr, FUZZ_HDR, data, size, &pos);
	if (!(hdr[0] & 1))
		features &= ~(1ULL << VIRTIO_RING_F_EVENT_IDX);
	if (!(hdr[0] & 2))
		features &= ~(1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	fuzz_assert(virtio_guest_start(g, features, 1, FUZZ_QSIZE) == 0);
	g->kick_by_exit = hdr[0] & 4;
	fuzz_lay(data, size);
	avail = hdr[1];
	virtio_guest_set_avail_flags(g, 0, hdr[4]);
	virtio_guest_set_used_event(g, 0, (uint16_t)(hdr[2] | hdr[3] << 8));
	__atomic_store_n(&g->q[0].a[1], avail, __ATOMIC_RELEASE);
	memcpy(ring_before, g->q[0].d, (size_t)(g->q[0].used - g->q[0].desc));
	virtio_guest_notify(g, 0);
	fuzz_wait(avail);
	fuzz_assert(virtio_guest_reset(g) == 0);
	fuzz_check_used(avail, virtio_guest_used_idx(g, 0));
	fuzz_check_memory(ring_before);
	return 0;
}
