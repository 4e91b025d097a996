/*
 * The test driver (tests/lib/virtio_guest.h) with its queues driven from
 * several threads at once, one thread per queue, as bench/blk -C does:
 * every thread allocates its buffers and (on first submit) its request
 * headers from the shared guest heap while the others do the same, writes
 * its own sectors of a raw file through its own queue and reads them back.
 * Overlapping allocations would make two threads share a buffer or a
 * header: data read back would not be the data written, a status byte
 * would be someone else's, or the ranges would overlap (all checked).
 *
 * Threads: the main thread builds and tears down the stack; THREADS
 * drivers (RCU-registered) each own queue t; the device runs on two
 * IOThreads. Exit 0 pass, 1 fail, 77 when io_uring is unavailable.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "core/util.h"
#include "rcu/rcu.h"
#include "tests/lib/blk_stack.h"

#define THREADS 4
#define REQS 300			/* per thread, each way */
#define SECTOR 512U
#define HDR_BYTES 32			/* what virtio_guest_blk_submit allocates */

struct range {
	uint64_t gpa, len;
};

struct driver {
	struct blk_stack *s;
	unsigned q;
	pthread_t thread;
	struct range got[3 * REQS];	/* every allocation: data, write hdr, read hdr */
	unsigned n_got;
};

static uint8_t pattern(unsigned q, unsigned i, unsigned off)
{
	return (uint8_t)(q * 61 + i * 7 + off + 1);
}

/* One request on its own fresh header (allocated by the submit). */
static void run(struct driver *d, uint32_t type, unsigned i, uint64_t gpa)
{
	struct virtio_guest_blk_req r = { .type = type, .sector = (uint64_t)d->q * REQS + i };
	int ret;

	virtio_guest_blk_data(&r, gpa, SECTOR);
	ret = virtio_guest_blk_run(&d->s->guest, d->q, &r, false);
	CHECK(ret == VIRTIO_GUEST_BLK_S_OK, "queue %u request %u: %d", d->q, i, ret);
	d->got[d->n_got++] = (struct range){ r.hdr, HDR_BYTES };
}

static void *driver_main(void *arg)
{
	struct driver *d = arg;
	struct virtio_guest *g = &d->s->guest;
	uint64_t data[REQS];
	unsigned i, k;

	rcu_register_thread();
	for (i = 0; i < REQS; i++) {
		uint8_t *p;

		data[i] = virtio_guest_alloc(g, SECTOR, SECTOR);
		p = virtio_guest_hva(g, data[i], SECTOR);
		CHECK(p != NULL, "guest heap exhausted");
		if (!p)
			break;
		d->got[d->n_got++] = (struct range){ data[i], SECTOR };
		for (k = 0; k < SECTOR; k++)
			p[k] = pattern(d->q, i, k);
		run(d, VIRTIO_GUEST_BLK_T_OUT, i, data[i]);
	}
	for (i = 0; i < REQS && !test_failures; i++) {
		uint8_t *p = virtio_guest_hva(g, data[i], SECTOR);

		memset(p, 0, SECTOR);
		run(d, VIRTIO_GUEST_BLK_T_IN, i, data[i]);
		for (k = 0; k < SECTOR && p[k] == pattern(d->q, i, k); k++)
			;
		CHECK(k == SECTOR, "queue %u sector %u: byte %u differs", d->q, i, k);
	}
	rcu_unregister_thread();
	return NULL;
}

static int range_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct range *)a)->gpa, y = ((const struct range *)b)->gpa;

	return x < y ? -1 : x > y;
}

/* No two allocations of any thread overlap. */
static void check_disjoint(struct driver *d)
{
	static struct range all[THREADS * 3 * REQS];
	unsigned n = 0, t, i;

	for (t = 0; t < THREADS; t++)
		for (i = 0; i < d[t].n_got; i++)
			all[n++] = d[t].got[i];
	qsort(all, n, sizeof(all[0]), range_cmp);
	for (i = 1; i < n; i++)
		CHECK(all[i].gpa >= all[i - 1].gpa + all[i - 1].len,
		      "allocations at %#llx and %#llx overlap", (unsigned long long)all[i - 1].gpa,
		      (unsigned long long)all[i].gpa);
	CHECK_U(n, THREADS * 3 * REQS);
}

/* A raw file (page cache) big enough for every thread's sectors. */
static void make_image(char *path)
{
	int fd = mkstemp(path);

	if (fd < 0 || ftruncate(fd, (off_t)THREADS * REQS * SECTOR)) {
		perror(path);
		exit(1);
	}
	close(fd);
}

int main(void)
{
	static struct blk_stack s;
	static struct driver d[THREADS];
	char path[] = "/var/tmp/vmm-test-vg-threads-XXXXXX";
	const char *why;
	unsigned t;
	int ret;

	rcu_register_thread();
	make_image(path);
	ret = blk_stack_create(&s, &(struct blk_stack_params){
		.path = path, .num_queues = THREADS, .n_iothreads = 2 });
	unlink(path);
	if (ret) {
		why = loop_unavailable_reason(ret);
		printf("%s: %s\n", why ? "SKIP" : "FAIL", why ? why : s.err);
		return why ? 77 : 1;
	}
	ret = virtio_guest_start(&s.guest, UINT64_MAX, THREADS, 256);
	CHECK(ret == 0, "virtio_guest_start: %d", ret);
	for (t = 0; t < THREADS && !ret; t++) {
		d[t] = (struct driver){ .s = &s, .q = t };
		CHECK(pthread_create(&d[t].thread, NULL, driver_main, &d[t]) == 0, "pthread_create");
	}
	for (t = 0; t < THREADS && !ret; t++)
		pthread_join(d[t].thread, NULL);
	if (!ret)
		check_disjoint(d);
	blk_stack_destroy(&s);
	rcu_unregister_thread();
	if (test_failures) {
		printf("%d checks failed\n", test_failures);
		return 1;
	}
	printf("all per-queue driver threads checks passed\n");
	return 0;
}
