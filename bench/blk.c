/*
 * bench/blk.c: the virtio-blk data plane without a guest. The test driver
 * (tests/lib/virtio_guest.h) plays a Linux guest: it keeps every queue
 * busy at a fixed depth with random reads or writes of one block each, as
 * Linux's virtio-blk would send them (header, data and status in one
 * indirect descriptor when negotiated), and kicks once per batch of
 * resubmissions. The device runs exactly as in the vmm: one IOThread per
 * [iothread], queue i on IOThread i % IOTHREADS, virtio-pci doorbells as
 * ioeventfds, interrupts as irqfds, the block backend on the IOThread's
 * io_uring.
 *
 * Where the driver runs:
 *   default  one driver on the main thread for every queue (one vCPU
 *            thread of its own); it sleeps on the queues' irqfds when
 *            nothing has completed, so every batch wakes an IOThread and
 *            is woken back.
 *   -C       colocated: one driver per IOThread, running in that IOThread
 *            as callbacks on its loop (each of its queues' irqfds is a
 *            watch there) and driving only the queues that IOThread
 *            serves, like a vCPU pinned next to its queue's IOThread. The
 *            device path is unchanged (kicks still go through the
 *            ioeventfds, interrupts through the irqfds); only the thread
 *            hop is gone, so IOTHREADS 1 vs 2 shows how the device path
 *            scales with IOThreads when each is CPU-bound. IOThread i is
 *            pinned to CPU FIRST_CPU + i (-P, default 0) when that many
 *            CPUs are online. The main thread only keeps time.
 *
 * Reported, over the measured period (after a warm-up):
 *   iops                 completed requests per second
 *   p50_us, p99_us       submit-to-completion latency seen by the driver
 *   vmm_cpu_us_per_req   CPU time of every thread but the driver's (the
 *                        IOThreads, io_uring's io-wq workers, RCU), from
 *                        getrusage(RUSAGE_SELF) minus the main thread's
 *                        RUSAGE_THREAD and, colocated, minus the time in
 *                        the driver's callbacks: what the vmm spends per
 *                        request
 *   driver_cpu_us_per_req  the driver's own CPU (a guest's, not ours):
 *                        the main thread's, or colocated the thread CPU
 *                        clock around one callback in BENCH_CPU_EVERY,
 *                        less the clock's own cost, scaled to all of them
 *                        (a read of CLOCK_THREAD_CPUTIME_ID is a 0.66 us
 *                        syscall here; the wall clock is cheap but counts
 *                        preemptions)
 *   vmm_cpu_pct, driver_cpu_pct  the same as percent of one CPU
 *   kicks_per_req, irqs_per_req  the device's notifications handled and
 *                        interrupts sent (its counters), per request
 *   sleeps_per_req       voluntary context switches of the whole process
 *                        per request: a thread slept, another woke it
 *   preempt_per_s        involuntary ones per second: other load took
 *                        the CPU
 *
 *   blk [-f FILE [-F raw|qcow2] [-c] | -n BYTES] [-w] [-q QUEUES] [-t IOTHREADS] [-d DEPTH]
 *       [-b BLOCK] [-s SECONDS | -r REQUESTS] [-p POLL_NS] [-i | -C [-P FIRST_CPU]]
 *
 * -F gives FILE's format (raw by default); -c opens FILE with cache = none (O_DIRECT); -n uses format = null; -r
 * runs a fixed number of requests with no warm-up; -i runs the device's
 * loops on the driver's thread instead of IOThreads (for callgrind: the
 * device's share is what runs inside loop_run_once); -C (above) goes with
 * neither -i nor -r, -P only with -C. One line of key=value pairs goes to stdout. Exit 0,
 * 1 on an error or a request that failed, 77 when io_uring is unavailable.
 */
#include <errno.h>
#include <poll.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"
#include "rcu/rcu.h"
#include "tests/lib/blk_stack.h"

#define BENCH_QSIZE 256
#define BENCH_HIST_NS 100		/* histogram bucket */
#define BENCH_HIST_N 1000000		/* up to 100 ms; slower ones land in the last */
#define BENCH_WARMUP_NS 500000000ULL
#define BENCH_CPU_EVERY 16		/* colocated: callbacks per driver CPU sample */

enum bench_phase { BENCH_WARMUP, BENCH_MEASURE, BENCH_STOP };

struct bench_opts {
	const char *path;
	enum block_format format;	/* of path */
	uint64_t null_size;
	bool write, direct;
	unsigned queues, iothreads, depth, bs;
	double seconds;
	uint64_t requests;		/* 0: run for `seconds` */
	uint64_t poll_ns;
	bool inline_loops, colocated;
	unsigned first_cpu;
};

struct bench_slot {
	struct virtio_guest_blk_req r;
	uint64_t t0;
	unsigned q;
} __attribute__((aligned(64)));

struct bench_drv;

/* Queue q's interrupt, watched on the driver's IOThread (colocated). */
struct bench_irq {
	struct loop_fd w;
	struct bench_drv *d;
	unsigned q;
};

/*
 * One guest driver, for queues id, id + step, ... Only its own thread
 * touches it: the main thread, or colocated its IOThread from the start BH
 * until it posts `finished` (the main thread reads it after that).
 */
struct bench_drv {
	struct bench *b;
	unsigned id, step;
	uint64_t rng, done, errors, inflight;
	/* Colocated, while measuring: callbacks, those sampled, their CPU
	 * time; and what a clock read costs (the minimum of a few pairs). */
	uint64_t callbacks, samples, sampled_ns, clock_cost_ns;
	uint32_t *hist;
	struct loop *loop;		/* colocated: its IOThread's */
	struct loop_bh start_bh;
	unsigned n_irq;
	struct bench_irq irq[VIRTIO_GUEST_MAX_QUEUES];
} __attribute__((aligned(64)));

struct bench {
	struct blk_stack s;
	struct bench_opts o;
	struct bench_slot *slots;	/* queues x depth */
	uint64_t blocks;
	bool indirect;
	atomic_int phase;		/* enum bench_phase; set by whoever keeps time */
	unsigned n_drv;
	struct bench_drv drv[VIRTIO_GUEST_MAX_QUEUES];
	sem_t finished;			/* colocated: one post per drained driver */
	struct rusage self0, main0, self1, main1;
	struct virtio_blk_stats st0, st1;	/* kicks and interrupts, all queues */
	uint64_t t_start, t_end;
};

static uint64_t bench_rand(struct bench_drv *d)
{
	d->rng ^= d->rng << 13;
	d->rng ^= d->rng >> 7;
	d->rng ^= d->rng << 17;
	return d->rng;
}

static enum bench_phase bench_phase_now(struct bench *b)
{
	return atomic_load_explicit(&b->phase, memory_order_relaxed);
}

static void bench_usage(void)
{
	fprintf(stderr, "usage: blk [-f FILE [-F FORMAT] [-c] | -n BYTES] [-w] [-q QUEUES] [-t IOTHREADS] "
			"[-d DEPTH] [-b BLOCK] [-s SECONDS | -r REQUESTS] [-p POLL_NS] "
			"[-i | -C [-P FIRST_CPU]]\n");
	exit(2);
}

static void bench_parse(struct bench_opts *o, int argc, char **argv)
{
	int c;

	*o = (struct bench_opts){ .queues = 1, .iothreads = 1, .depth = 16, .bs = 4096,
				  .seconds = 5 };
	while ((c = getopt(argc, argv, "f:F:cn:wq:t:d:b:s:r:p:iCP:")) != -1) {
		switch (c) {
		case 'f': o->path = optarg; break;
		case 'F':
			if (strcmp(optarg, "raw") && strcmp(optarg, "qcow2"))
				bench_usage();
			o->format = strcmp(optarg, "raw") ? BLOCK_FORMAT_QCOW2 : BLOCK_FORMAT_RAW;
			break;
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
		case 'C': o->colocated = true; break;
		case 'P': o->first_cpu = (unsigned)atoi(optarg); break;
		default: bench_usage();
		}
	}
	if (!o->path == !o->null_size || !o->queues || o->queues > VIRTIO_GUEST_MAX_QUEUES ||
	    !o->iothreads || o->iothreads > o->queues || !o->depth ||
	    o->depth > BENCH_QSIZE / 2 || o->bs % 512 || !o->bs ||
	    (o->colocated && (o->inline_loops || o->requests)) || (!o->colocated && o->first_cpu))
		bench_usage();
}

/* Colocated IOThreads are pinned when there are CPUs for them all. */
static bool bench_pinned(const struct bench_opts *o)
{
	return o->colocated &&
	       o->first_cpu + o->iothreads <= (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
}

static void bench_setup(struct bench *b)
{
	struct blk_stack_params p = {
		.path = b->o.path, .format = b->o.format, .null_size = b->o.null_size, .direct = b->o.direct,
		.num_queues = b->o.queues, .n_iothreads = b->o.iothreads,
		.queue_size = BENCH_QSIZE, .poll_max_ns = b->o.poll_ns,
		.inline_loops = b->o.inline_loops,
		.pin_iothreads = bench_pinned(&b->o), .pin_first_cpu = b->o.first_cpu,
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
	if (posix_memalign((void **)&b->slots, 64,
			   (size_t)b->o.queues * b->o.depth * sizeof(*b->slots)) || !b->blocks ||
	    sem_init(&b->finished, 0, 0)) {
		fprintf(stderr, "blk: out of memory or an empty disk\n");
		exit(1);
	}
}

/* The drivers: one for every queue, or colocated one per IOThread. */
static void bench_drivers(struct bench *b)
{
	unsigned i;

	b->n_drv = b->o.colocated ? b->o.iothreads : 1;
	for (i = 0; i < b->n_drv; i++) {
		b->drv[i] = (struct bench_drv){
			.b = b, .id = i, .step = b->n_drv, .rng = 0x9e3779b97f4a7c15ULL * (i + 1),
			.hist = calloc(BENCH_HIST_N, sizeof(uint32_t)), .loop = b->s.loops[i] };
		if (!b->drv[i].hist) {
			fprintf(stderr, "blk: out of memory\n");
			exit(1);
		}
	}
}

static void bench_slots(struct bench *b)
{
	unsigned i, n = b->o.queues * b->o.depth;

	for (i = 0; i < n; i++) {
		struct bench_slot *sl = &b->slots[i];
		uint64_t gpa = virtio_guest_alloc(&b->s.guest, b->o.bs, 4096);
		uint8_t *p = gpa ? virtio_guest_hva(&b->s.guest, gpa, b->o.bs) : NULL;
		/* Header and status on a line of their own: queues of
		 * different threads share none. */
		uint64_t hdr = virtio_guest_alloc(&b->s.guest, 64, 64);

		if (!p || !hdr) {
			fprintf(stderr, "blk: guest RAM too small for %u buffers\n", n);
			exit(1);
		}
		memset(p, (int)i, b->o.bs);
		sl->q = i / b->o.depth;
		sl->r = (struct virtio_guest_blk_req){
			.type = b->o.write ? VIRTIO_GUEST_BLK_T_OUT : VIRTIO_GUEST_BLK_T_IN, .hdr = hdr };
		virtio_guest_blk_data(&sl->r, gpa, b->o.bs);
	}
}

static void bench_submit(struct bench_drv *d, struct bench_slot *sl)
{
	struct bench *b = d->b;

	sl->r.sector = bench_rand(d) % b->blocks * (b->o.bs / 512);
	sl->t0 = clock_ns();
	if (virtio_guest_blk_submit(&b->s.guest, sl->q, &sl->r, b->indirect, sl) < 0) {
		fprintf(stderr, "blk: queue %u is full\n", sl->q);
		exit(1);
	}
	d->inflight++;
}

static void bench_complete(struct bench_drv *d, struct bench_slot *sl, uint64_t now,
			   bool measuring)
{
	uint64_t bucket = (now - sl->t0) / BENCH_HIST_NS;

	d->inflight--;
	if (virtio_guest_blk_status(&d->b->s.guest, &sl->r) != VIRTIO_GUEST_BLK_S_OK)
		d->errors++;
	if (!measuring)
		return;
	d->done++;
	d->hist[bucket < BENCH_HIST_N ? bucket : BENCH_HIST_N - 1]++;
}

/* Takes queue q's completions, resubmits unless stopping and kicks once. */
static bool bench_poll_queue(struct bench_drv *d, unsigned q)
{
	struct virtio_guest *g = &d->b->s.guest;
	enum bench_phase phase = bench_phase_now(d->b);
	uint64_t now = clock_ns();
	bool any = false;
	uint32_t len;
	void *c;
	int ret;

	while ((ret = virtio_guest_get(g, q, &len, &c)) == 1) {
		bench_complete(d, c, now, phase == BENCH_MEASURE);
		any = true;
		if (phase != BENCH_STOP)
			bench_submit(d, c);
	}
	if (ret < 0) {
		fprintf(stderr, "blk: queue %u: the device used a head not in flight\n", q);
		exit(1);
	}
	if (any && phase != BENCH_STOP)
		virtio_guest_kick(g, q);
	return any;
}

/* Fills the driver's queues to the depth and kicks each. */
static void bench_start(struct bench_drv *d)
{
	struct bench *b = d->b;
	unsigned q, i;

	for (q = d->id; q < b->o.queues; q += d->step) {
		for (i = 0; i < b->o.depth; i++)
			bench_submit(d, &b->slots[q * b->o.depth + i]);
		virtio_guest_kick(&b->s.guest, q);
	}
}

/* Sleeps until a queue interrupts; a silent device is a failure. */
static void bench_wait(struct bench_drv *d)
{
	struct bench *b = d->b;
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
			VIRTIO_GUEST_TIMEOUT_MS, (unsigned long long)d->inflight);
		exit(1);
	}
	for (q = 0; q < b->o.queues; q++)
		if (p[q].revents & POLLIN && read(p[q].fd, &v, sizeof(v)) != sizeof(v))
			exit(1);
}

/* The process's CPU, the main thread's, and the device's counters. */
static void bench_snapshot(struct bench *b, struct rusage *self, struct rusage *main_thread,
			   struct virtio_blk_stats *st)
{
	struct virtio_blk_stats q;
	unsigned i;

	getrusage(RUSAGE_SELF, self);
	getrusage(RUSAGE_THREAD, main_thread);
	*st = (struct virtio_blk_stats){ 0 };
	for (i = 0; i < b->o.queues; i++) {
		virtio_blk_stats(b->s.vblk, i, &q);
		st->kicks += q.kicks;
		st->interrupts += q.interrupts;
	}
}

/* Starts the measured period, or ends it and stops submissions. Main thread. */
static void bench_measure(struct bench *b, bool start)
{
	if (start) {
		bench_snapshot(b, &b->self0, &b->main0, &b->st0);
		b->t_start = clock_ns();
		atomic_store_explicit(&b->phase, BENCH_MEASURE, memory_order_relaxed);
		return;
	}
	bench_snapshot(b, &b->self1, &b->main1, &b->st1);
	b->t_end = clock_ns();
	atomic_store_explicit(&b->phase, BENCH_STOP, memory_order_relaxed);
}

/* The driver on the main thread keeps time itself: warm-up, then the
 * measured period (or REQUESTS); then no more submissions. */
static void bench_phase(struct bench *b, uint64_t t0)
{
	enum bench_phase phase = bench_phase_now(b);
	uint64_t now;

	if (phase == BENCH_STOP)
		return;
	if (b->o.requests) {
		if (b->drv[0].done >= b->o.requests)
			bench_measure(b, false);
		return;
	}
	now = clock_ns();
	if (phase == BENCH_WARMUP && now - t0 >= BENCH_WARMUP_NS)
		bench_measure(b, true);
	else if (phase == BENCH_MEASURE && now - b->t_start >= (uint64_t)(b->o.seconds * 1e9))
		bench_measure(b, false);
}

/* One driver on the main thread for every queue. */
static void bench_run_main(struct bench *b)
{
	struct bench_drv *d = &b->drv[0];
	uint64_t t0 = clock_ns();
	unsigned q;
	bool any;

	bench_start(d);
	if (b->o.requests)
		bench_measure(b, true);
	while (d->inflight) {
		bench_phase(b, t0);
		for (any = false, q = 0; q < b->o.queues; q++)
			any |= bench_poll_queue(d, q);
		if (!any)
			bench_wait(d);
	}
}

/* Colocated: the driver has drained; it lets go of its IOThread. */
static void bench_colo_finish(struct bench_drv *d)
{
	unsigned i;

	for (i = 0; i < d->n_irq; i++)
		loop_fd_del(d->loop, &d->irq[i].w);
	sem_post(&d->b->finished);
}

static uint64_t bench_thread_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void bench_clock_cost(struct bench_drv *d)
{
	uint64_t t;
	unsigned i;

	d->clock_cost_ns = UINT64_MAX;
	for (i = 0; i < 16; i++) {
		t = bench_thread_ns();
		t = bench_thread_ns() - t;
		d->clock_cost_ns = t < d->clock_cost_ns ? t : d->clock_cost_ns;
	}
}

/* Colocated: queue q interrupted; the driver's turn on this IOThread. */
static void bench_colo_irq(struct loop_fd *w, uint32_t revents)
{
	struct bench_irq *irq = container_of(w, struct bench_irq, w);
	struct bench_drv *d = irq->d;
	bool sample = bench_phase_now(d->b) == BENCH_MEASURE &&
		      d->callbacks++ % BENCH_CPU_EVERY == 0;
	uint64_t t0 = sample ? bench_thread_ns() : 0, v;

	if (revents & (POLLERR | POLLHUP) ||
	    (read(w->fd, &v, sizeof(v)) != sizeof(v) && errno != EAGAIN)) {
		fprintf(stderr, "blk: queue %u: the interrupt watch failed\n", irq->q);
		exit(1);
	}
	bench_poll_queue(d, irq->q);
	if (sample) {
		t0 = bench_thread_ns() - t0;
		d->sampled_ns += t0 > d->clock_cost_ns ? t0 - d->clock_cost_ns : 0;
		d->samples++;
	}
	if (!d->inflight)
		bench_colo_finish(d);
}

/* Colocated: on the IOThread, watch the driver's queues' irqfds and fill them. */
static void bench_colo_start(struct loop_bh *bh)
{
	struct bench_drv *d = container_of(bh, struct bench_drv, start_bh);
	struct virtio_guest *g = &d->b->s.guest;
	unsigned q;
	int ret;

	bench_clock_cost(d);
	for (q = d->id; q < d->b->o.queues; q += d->step) {
		struct bench_irq *irq = &d->irq[d->n_irq++];

		*irq = (struct bench_irq){ .d = d, .q = q };
		loop_fd_init(&irq->w, virtio_guest_irq_fd(g, g->q[q].vector), POLLIN, bench_colo_irq);
		ret = loop_fd_add(d->loop, &irq->w);
		if (ret) {
			fprintf(stderr, "blk: queue %u: watching its irqfd: %s\n", q, strerror(-ret));
			exit(1);
		}
	}
	bench_start(d);
}

static void bench_sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Colocated: the drivers run on the IOThreads; the main thread keeps time
 * and waits for them to drain. */
static void bench_run_colocated(struct bench *b)
{
	struct timespec deadline;
	unsigned i;
	int ret;

	for (i = 0; i < b->n_drv; i++) {
		loop_bh_init(&b->drv[i].start_bh, bench_colo_start);
		loop_bh_schedule(b->drv[i].loop, &b->drv[i].start_bh);
	}
	bench_sleep_ns(BENCH_WARMUP_NS);
	bench_measure(b, true);
	bench_sleep_ns((uint64_t)(b->o.seconds * 1e9));
	bench_measure(b, false);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += VIRTIO_GUEST_TIMEOUT_MS / 1000;
	for (i = 0; i < b->n_drv; i++) {
		while ((ret = sem_timedwait(&b->finished, &deadline)) && errno == EINTR)
			;
		if (ret) {
			fprintf(stderr, "blk: a colocated driver did not drain in %d ms\n",
				VIRTIO_GUEST_TIMEOUT_MS);
			exit(1);
		}
	}
}

/* Folds every driver's counts into the first one's. */
static void bench_merge(struct bench *b)
{
	struct bench_drv *t = &b->drv[0];
	unsigned i, k;

	for (i = 1; i < b->n_drv; i++) {
		t->done += b->drv[i].done;
		t->errors += b->drv[i].errors;
		t->callbacks += b->drv[i].callbacks;
		t->samples += b->drv[i].samples;
		t->sampled_ns += b->drv[i].sampled_ns;
		for (k = 0; k < BENCH_HIST_N; k++)
			t->hist[k] += b->drv[i].hist[k];
	}
}

/* The latency below which pct percent of the requests completed, in µs. */
static double bench_pct(const struct bench_drv *t, double pct)
{
	uint64_t want = (uint64_t)(t->done * pct / 100.0), seen = 0;
	unsigned i;

	for (i = 0; i < BENCH_HIST_N; i++) {
		seen += t->hist[i];
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
	const struct bench_drv *t = &b->drv[0];
	double secs = (b->t_end - b->t_start) / 1e9, n = t->done ? (double)t->done : 1;
	double main_us = bench_cpu_us(&b->main0, &b->main1);
	double driver = !b->o.colocated ? main_us :
			t->samples ? t->sampled_ns / 1e3 * t->callbacks / t->samples : 0;
	double vmm = bench_cpu_us(&b->self0, &b->self1) - main_us - (b->o.colocated ? driver : 0);
	double sleeps = b->self1.ru_nvcsw - b->self0.ru_nvcsw;
	double preempt = b->self1.ru_nivcsw - b->self0.ru_nivcsw;

	printf("blk mode=%s pinned=%s backend=%s cache=%s rw=%s queues=%u iothreads=%u depth=%u bs=%u "
	       "requests=%llu seconds=%.3f iops=%.0f p50_us=%.1f p99_us=%.1f "
	       "vmm_cpu_us_per_req=%.3f driver_cpu_us_per_req=%.3f vmm_cpu_pct=%.1f "
	       "driver_cpu_pct=%.1f kicks_per_req=%.3f irqs_per_req=%.3f sleeps_per_req=%.4f "
	       "preempt_per_s=%.0f "
	       "errors=%llu\n",
	       b->o.colocated ? "colocated" : "main", bench_pinned(&b->o) ? "yes" : "no",
	       b->o.path ? "raw" : "null",
	       b->o.direct ? "none" : "writeback", b->o.write ? "randwrite" : "randread",
	       b->o.queues, b->o.iothreads, b->o.depth, b->o.bs, (unsigned long long)t->done,
	       secs, t->done / secs, bench_pct(t, 50), bench_pct(t, 99), vmm / n, driver / n,
	       vmm / 1e4 / secs, driver / 1e4 / secs, (b->st1.kicks - b->st0.kicks) / n,
	       (b->st1.interrupts - b->st0.interrupts) / n, sleeps / n, preempt / secs,
	       (unsigned long long)t->errors);
}

int main(int argc, char **argv)
{
	static struct bench b;

	unsigned i;

	bench_parse(&b.o, argc, argv);
	rcu_register_thread();
	bench_setup(&b);
	bench_drivers(&b);
	bench_slots(&b);
	if (b.o.colocated)
		bench_run_colocated(&b);
	else
		bench_run_main(&b);
	bench_merge(&b);
	bench_report(&b);
	blk_stack_destroy(&b.s);
	for (i = 0; i < b.n_drv; i++)
		free(b.drv[i].hist);
	free(b.slots);
	sem_destroy(&b.finished);
	rcu_unregister_thread();
	return b.drv[0].errors ? 1 : 0;
}
