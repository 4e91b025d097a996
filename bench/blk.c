/*
 * bench/blk.c: the virtio-blk data plane without a guest. The test driver
 * (tests/lib/virtio_guest.h) plays a Linux guest on the main thread: it
 * keeps every queue busy at a fixed depth with random reads or writes of
 * one block each, as Linux's virtio-blk would send them (header, data and
 * status in one indirect descriptor when negotiated), kicks once per batch
 * of resubmissions and sleeps on the queues' interrupts (irqfds) when
 * nothing has completed. The device runs exactly as in the vmm: one
 * IOThread per [iothread], virtio-pci doorbells as ioeventfds, the block
 * backend on the IOThread's io_uring.
 *
 * Reported, over the measured period (after a warm-up):
 *   iops                 completed requests per second
 *   p50_us, p99_us       submit-to-completion latency seen by the driver
 *   vmm_cpu_us_per_req   CPU time of every thread but the driver's (the
 *                        IOThreads, io_uring's io-wq workers, RCU), from
 *                        getrusage(RUSAGE_SELF) minus the driver thread's
 *                        RUSAGE_THREAD: what the vmm spends per request
 *   driver_cpu_us_per_req  the driver's own CPU (a guest's, not ours)
 *
 *   blk [-f FILE [-c] | -n BYTES] [-w] [-q QUEUES] [-t IOTHREADS] [-d DEPTH]
 *       [-b BLOCK] [-s SECONDS | -r REQUESTS] [-p POLL_NS] [-i]
 *
 * -c opens FILE with cache = none (O_DIRECT); -n uses format = null; -r
 * runs a fixed number of requests with no warm-up; -i runs the device's
 * loops on the driver's thread instead of IOThreads (for callgrind: the
 * device's share is what runs inside loop_run_once). One
 * line of key=value pairs goes to stdout. Exit 0, 1 on an error or a
 * request that failed, 77 when io_uring is unavailable.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/util.h"
#include "rcu/rcu.h"
#include "tests/lib/blk_stack.h"

#define BENCH_QSIZE 256
#define BENCH_HIST_NS 100		/* histogram bucket */
#define BENCH_HIST_N 1000000		/* up to 100 ms; slower ones land in the last */
#define BENCH_WARMUP_NS 500000000ULL

struct bench_opts {
	const char *path;
	uint64_t null_size;
	bool write, direct;
	unsigned queues, iothreads, depth, bs;
	double seconds;
	uint64_t requests;		/* 0: run for `seconds` */
	uint64_t poll_ns;
	bool inline_loops;
};

struct bench_slot {
	struct virtio_guest_blk_req r;
	uint64_t t0;
	unsigned q;
};

struct bench {
	struct blk_stack s;
	struct bench_opts o;
	struct bench_slot *slots;	/* queues x depth */
	uint64_t blocks, rng;
	bool indirect, measuring, stopping;
	uint64_t done, errors, inflight;
	uint32_t *hist;
	struct rusage self0, main0, self1, main1;
	uint64_t t_start, t_end;
};

static uint64_t bench_rand(struct bench *b)
{
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	return b->rng;
}

static void bench_usage(void)
{
	fprintf(stderr, "usage: blk [-f FILE [-c] | -n BYTES] [-w] [-q QUEUES] [-t IOTHREADS] "
			"[-d DEPTH] [-b BLOCK] [-s SECONDS | -r REQUESTS] [-p POLL_NS] [-i]\n");
	exit(2);
}

static void bench_parse(struct bench_opts *o, int argc, char **argv)
{
	int c;

	*o = (struct bench_opts){ .queues = 1, .iothreads = 1, .depth = 16, .bs = 4096,
				  .seconds = 5 };
	while ((c = getopt(argc, argv, "f:cn:wq:t:d:b:s:r:p:i")) != -1) {
		switch (c) {
		case 'f': o->path = optarg; break;
		case 'c': o->direct = true; break;
		case 'n': o->null_size = strtoull(optarg, NULL, 0); break;
		case 'w': o->write = true; break;
		case 'q': o->queues = (unsigned)atoi(optarg); break;
		case 't': o->iothreads = (unsigned)atoi(optarg); break;
		case 'd': o->depth = (unsigned)atoi(optarg); break;
		case 'b': o->bs = (unsigned)atoi(optarg); break;
		case 's': o->seconds = atof(optarg); break;
		case 'r': o->requests = strtoull(optarg, NULL, 0); break;
		case 'p': o->poll_ns = strtoull(optarg, NULL, 0); break;
		case 'i': o->inline_loops = true; break;
		default: bench_usage();
		}
	}
	if (!o->path == !o->null_size || !o->queues || o->queues > VIRTIO_GUEST_MAX_QUEUES ||
	    !o->iothreads || o->iothreads > o->queues || !o->depth ||
	    o->depth > BENCH_QSIZE / 2 || o->bs % 512 || !o->bs)
		bench_usage();
}

static void bench_setup(struct bench *b)
{
	struct blk_stack_params p = {
		.path = b->o.path, .null_size = b->o.null_size, .direct = b->o.direct,
		.num_queues = b->o.queues, .n_iothreads = b->o.iothreads,
		.queue_size = BENCH_QSIZE, .poll_max_ns = b->o.poll_ns,
		.inline_loops = b->o.inline_loops,
	};
	int ret = blk_stack_create(&b->s, &p);

	if (ret) {
		const char *why = loop_unavailable_reason(ret);

		fprintf(stderr, "%s: %s\n", why ? "SKIP" : "blk", why ? why : b->s.err);
		exit(why ? 77 : 1);
	}
	ret = virtio_guest_start(&b->s.guest, UINT64_MAX, b->o.queues, BENCH_QSIZE);
	if (ret) {
		fprintf(stderr, "blk: virtio_guest_start: %s\n", strerror(-ret));
		exit(1);
	}
	b->indirect = b->s.guest.features >> VIRTIO_RING_F_INDIRECT_DESC & 1;
	b->blocks = block_size(b->s.blk) / b->o.bs;
	b->rng = 0x9e3779b97f4a7c15ULL;
	b->hist = calloc(BENCH_HIST_N, sizeof(*b->hist));
	b->slots = calloc((size_t)b->o.queues * b->o.depth, sizeof(*b->slots));
	if (!b->hist || !b->slots || !b->blocks) {
		fprintf(stderr, "blk: out of memory or an empty disk\n");
		exit(1);
	}
}

static void bench_slots(struct bench *b)
{
	unsigned i, n = b->o.queues * b->o.depth;

	for (i = 0; i < n; i++) {
		struct bench_slot *sl = &b->slots[i];
		uint64_t gpa = virtio_guest_alloc(&b->s.guest, b->o.bs, 4096);
		uint8_t *p = gpa ? virtio_guest_hva(&b->s.guest, gpa, b->o.bs) : NULL;

		if (!p) {
			fprintf(stderr, "blk: guest RAM too small for %u buffers\n", n);
			exit(1);
		}
		memset(p, (int)i, b->o.bs);
		sl->q = i / b->o.depth;
		sl->r = (struct virtio_guest_blk_req){
			.type = b->o.write ? VIRTIO_GUEST_BLK_T_OUT : VIRTIO_GUEST_BLK_T_IN };
		virtio_guest_blk_data(&sl->r, gpa, b->o.bs);
	}
}

static void bench_submit(struct bench *b, struct bench_slot *sl)
{
	sl->r.sector = bench_rand(b) % b->blocks * (b->o.bs / 512);
	sl->t0 = clock_ns();
	if (virtio_guest_blk_submit(&b->s.guest, sl->q, &sl->r, b->indirect, sl) < 0) {
		fprintf(stderr, "blk: queue %u is full\n", sl->q);
		exit(1);
	}
	b->inflight++;
}

static void bench_complete(struct bench *b, struct bench_slot *sl, uint64_t now)
{
	uint64_t bucket = (now - sl->t0) / BENCH_HIST_NS;

	b->inflight--;
	if (virtio_guest_blk_status(&b->s.guest, &sl->r) != VIRTIO_GUEST_BLK_S_OK)
		b->errors++;
	if (!b->measuring)
		return;
	b->done++;
	b->hist[bucket < BENCH_HIST_N ? bucket : BENCH_HIST_N - 1]++;
}

/* Takes queue q's completions, resubmits and kicks once. */
static bool bench_poll_queue(struct bench *b, unsigned q)
{
	uint64_t now = clock_ns();
	bool any = false;
	uint32_t len;
	void *c;
	int ret;

	while ((ret = virtio_guest_get(&b->s.guest, q, &len, &c)) == 1) {
		bench_complete(b, c, now);
		any = true;
		if (!b->stopping)
			bench_submit(b, c);
	}
	if (ret < 0) {
		fprintf(stderr, "blk: queue %u: the device used a head not in flight\n", q);
		exit(1);
	}
	if (any && !b->stopping)
		virtio_guest_kick(&b->s.guest, q);
	return any;
}

/* Sleeps until a queue interrupts; a silent device is a failure. */
static void bench_wait(struct bench *b)
{
	struct pollfd p[VIRTIO_GUEST_MAX_QUEUES];
	uint64_t v;
	unsigned q;

	if (b->o.inline_loops) {
		blk_stack_pump(&b->s, b->o.iothreads == 1);
		return;
	}
	for (q = 0; q < b->o.queues; q++)
		p[q] = (struct pollfd){ .fd = virtio_guest_irq_fd(&b->s.guest, b->s.guest.q[q].vector),
					.events = POLLIN };
	if (poll(p, b->o.queues, VIRTIO_GUEST_TIMEOUT_MS) <= 0) {
		fprintf(stderr, "blk: no interrupt for %d ms with %llu requests in flight\n",
			VIRTIO_GUEST_TIMEOUT_MS, (unsigned long long)b->inflight);
		exit(1);
	}
	for (q = 0; q < b->o.queues; q++)
		if (p[q].revents & POLLIN && read(p[q].fd, &v, sizeof(v)) != sizeof(v))
			exit(1);
}

static void bench_measure(struct bench *b, bool start)
{
	if (start) {
		getrusage(RUSAGE_SELF, &b->self0);
		getrusage(RUSAGE_THREAD, &b->main0);
		b->t_start = clock_ns();
		b->measuring = true;
		return;
	}
	getrusage(RUSAGE_SELF, &b->self1);
	getrusage(RUSAGE_THREAD, &b->main1);
	b->t_end = clock_ns();
	b->measuring = false;
	b->stopping = true;
}

/* Warm-up, then the measured period; then no more submissions. */
static void bench_phase(struct bench *b, uint64_t t0)
{
	uint64_t now;

	if (b->stopping)
		return;
	if (b->o.requests) {
		if (b->done >= b->o.requests)
			bench_measure(b, false);
		return;
	}
	now = clock_ns();
	if (!b->measuring && now - t0 >= BENCH_WARMUP_NS)
		bench_measure(b, true);
	else if (b->measuring && now - b->t_start >= (uint64_t)(b->o.seconds * 1e9))
		bench_measure(b, false);
}

static void bench_run(struct bench *b)
{
	uint64_t t0 = clock_ns();
	unsigned i, q;
	bool any;

	for (i = 0; i < b->o.queues * b->o.depth; i++)
		bench_submit(b, &b->slots[i]);
	for (q = 0; q < b->o.queues; q++)
		virtio_guest_kick(&b->s.guest, q);
	if (b->o.requests)
		bench_measure(b, true);
	while (b->inflight) {
		bench_phase(b, t0);
		for (any = false, q = 0; q < b->o.queues; q++)
			any |= bench_poll_queue(b, q);
		if (!any)
			bench_wait(b);
	}
}

/* The latency below which pct percent of the requests completed, in µs. */
static double bench_pct(const struct bench *b, double pct)
{
	uint64_t want = (uint64_t)(b->done * pct / 100.0), seen = 0;
	unsigned i;

	for (i = 0; i < BENCH_HIST_N; i++) {
		seen += b->hist[i];
		if (seen > want)
			break;
	}
	return (i + 0.5) * BENCH_HIST_NS / 1000.0;
}

static double bench_cpu_us(const struct rusage *a, const struct rusage *z)
{
	return (z->ru_utime.tv_sec - a->ru_utime.tv_sec + z->ru_stime.tv_sec - a->ru_stime.tv_sec) *
		       1e6 +
	       (z->ru_utime.tv_usec - a->ru_utime.tv_usec + z->ru_stime.tv_usec -
		a->ru_stime.tv_usec);
}

static void bench_report(const struct bench *b)
{
	double secs = (b->t_end - b->t_start) / 1e9, n = b->done ? (double)b->done : 1;
	double driver = bench_cpu_us(&b->main0, &b->main1);
	double vmm = bench_cpu_us(&b->self0, &b->self1) - driver;

	printf("blk backend=%s cache=%s rw=%s queues=%u iothreads=%u depth=%u bs=%u "
	       "requests=%llu seconds=%.3f iops=%.0f p50_us=%.1f p99_us=%.1f "
	       "vmm_cpu_us_per_req=%.3f driver_cpu_us_per_req=%.3f vmm_cpu_pct=%.1f errors=%llu\n",
	       b->o.path ? "raw" : "null", b->o.direct ? "none" : "writeback",
	       b->o.write ? "randwrite" : "randread", b->o.queues, b->o.iothreads, b->o.depth,
	       b->o.bs, (unsigned long long)b->done, secs, b->done / secs, bench_pct(b, 50),
	       bench_pct(b, 99), vmm / n, driver / n, vmm / 1e4 / secs,
	       (unsigned long long)b->errors);
}

int main(int argc, char **argv)
{
	static struct bench b;

	bench_parse(&b.o, argc, argv);
	rcu_register_thread();
	bench_setup(&b);
	bench_slots(&b);
	bench_run(&b);
	bench_report(&b);
	blk_stack_destroy(&b.s);
	free(b.hist);
	free(b.slots);
	rcu_unregister_thread();
	return b.errors ? 1 : 0;
}
