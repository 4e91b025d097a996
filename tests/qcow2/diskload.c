/*
 * tests/qcow2/diskload.c: random I/O on a disk image through the vmm's
 * whole disk data path, with no VM. The test driver (tests/lib/virtio_guest.h)
 * plays the guest on the stack of tests/lib/blk_stack.h: the block backend
 * of the given format, the virtio-blk device with one IOThread per queue,
 * its virtio-pci function. The scripts of tests/qcow2/ use it as the oracle
 * side of qemu-img:
 *
 *   diskload crash    -F FMT -i IMAGE -b BASE -j JOURNAL [common]
 *       random writes, write-zeroes, reads and flushes on every queue until
 *       killed; journals each write when submitted (S) and acknowledged
 *       (A), each flush when submitted (f) and completed (F). Prints
 *       "ready" once the device is up. Exits 1 on a failed request or a
 *       read that does not match what was written, 2 after DL_CRASH_MAX_S.
 *   diskload workload -F FMT -i IMAGE -b BASE -n OPS [-m MIX] [common]
 *       OPS random requests, the same for a given seed whatever the
 *       completion order (requests in flight never overlap), then close.
 *       Reads are checked against what was written (or BASE, the image's
 *       contents before).
 *   diskload dump     -F FMT -i IMAGE -o OUT [common]
 *       reads the whole disk, in random-sized pieces over every queue, into
 *       the raw file OUT.
 *   diskload verify   -j JOURNAL -i RAW -b BASE
 *       after a crash: RAW (the image as qemu-img reads it) holds, in every
 *       sector, the last write acknowledged before a completed flush was
 *       submitted, or a write submitted after it (BASE when there is none).
 *   common: [-q QUEUES] [-d DEPTH] [-s SEED] [-c] [-l L2_CACHE] [-v] (-c:
 *   cache = none; -l: bytes of qcow2 L2 tables cached; -v: print each
 *   request as it is submitted). dump opens the image readonly.
 *
 * Every written sector is self-describing: a magic, the run's nonce, the
 * write's sequence number and the sector number, then bytes derived from
 * them, so verify names what it finds. MIX is a string of op letters
 * picked uniformly: w write, z write-zeroes (random unmap), d discard, r
 * read, f flush.
 *
 * Threads: the main thread drives the guest side (RCU-registered); the
 * device runs on its IOThreads. Exit 0 pass, 1 fail, 77 when io_uring is
 * unavailable here.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "dev/virtio.h"
#include "rcu/rcu.h"
#include "tests/lib/blk_stack.h"

#define DL_SECTOR 512U
#define DL_MAX_SECT 512U		/* 256 KiB per read or write */
#define DL_MAX_ZERO_SECT 8192U		/* 4 MiB per write-zeroes or discard */
#define DL_MAX_SEGS 4
#define DL_MAX_QUEUES 8
#define DL_QSIZE 128
#define DL_STALL_MS 10000		/* no completion for this long: the device hung */
#define DL_CRASH_MAX_S 30		/* crash mode runs until killed, or this long */
#define DL_MAGIC 0x4c575143U		/* "QCWL" */
#define DL_JOURNAL_BUF (256 * 1024)

enum dl_kind { DL_READ, DL_WRITE, DL_ZEROES, DL_DISCARD, DL_FLUSH };

/* What a sector holds, in the shadow: the base, zeros, anything (after a
 * discard), or the pattern of write seq (DL_SEQ0 + seq). */
enum { DL_BASE, DL_ZERO, DL_ANY, DL_SEQ0 };

struct dl_opts {
	const char *mode, *format, *image, *base, *journal, *out, *mix;
	unsigned queues, depth;
	bool direct, verbose;
	uint64_t seed, ops, l2_cache;
};

struct dl_op {
	enum dl_kind kind;
	unsigned q;
	uint64_t seq, sector, nsect;
	bool unmap;
};

struct dl_slot {
	struct virtio_guest_blk_req r;
	struct dl_op op;
	uint64_t gpa;			/* DL_MAX_SECT sectors of guest RAM */
	uint8_t *buf;
	bool busy;
};

struct dl {
	struct blk_stack s;
	struct dl_opts o;
	struct dl_slot *slots;		/* queues x depth */
	uint64_t sectors, max_zero, rng, seq, submitted, inflight;
	uint32_t nonce;
	bool indirect;
	uint64_t *shadow;		/* per sector; NULL in dump mode */
	const uint8_t *base;		/* mmap of BASE */
	int out_fd, jfd;
	char *jbuf;			/* journal lines not yet written */
	size_t jlen;
	struct dl_op next;
	bool have_next;
	bool kick[DL_MAX_QUEUES];
	uint64_t t_start, t_progress;
	uint64_t count[DL_FLUSH + 1];	/* submitted, per kind */
	uint64_t checked;		/* sectors read back and checked */
};

__attribute__((format(printf, 1, 2), noreturn))
static void dl_fail(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("diskload: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t dl_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Uniform in [lo, hi]. */
static uint64_t dl_between(struct dl *d, uint64_t lo, uint64_t hi)
{
	return lo + dl_rand(&d->rng) % (hi - lo + 1);
}

/* The 512 bytes write seq of run nonce puts at sector. */
static void dl_pattern(uint8_t *p, uint32_t nonce, uint64_t seq, uint64_t sector)
{
	uint64_t x = ((seq + 1) * 0x9e3779b97f4a7c15ULL) ^ ((sector + 1) * 0xbf58476d1ce4e5b9ULL) ^
		     ((uint64_t)nonce << 17) ^ 1;
	uint32_t magic = DL_MAGIC;
	unsigned i;

	memcpy(p, &magic, 4);
	memcpy(p + 4, &nonce, 4);
	memcpy(p + 8, &seq, 8);
	memcpy(p + 16, &sector, 8);
	for (i = 24; i < DL_SECTOR; i += 8) {
		dl_rand(&x);
		memcpy(p + i, &x, 8);
	}
}

/* Whether p is the pattern of some write of nonce at sector; its seq. */
static bool dl_is_pattern(const uint8_t *p, uint32_t nonce, uint64_t sector, uint64_t *seq)
{
	uint8_t want[DL_SECTOR];
	uint32_t magic, n;
	uint64_t s;

	memcpy(&magic, p, 4);
	memcpy(&n, p + 4, 4);
	memcpy(&s, p + 16, 8);
	if (magic != DL_MAGIC || n != nonce || s != sector)
		return false;
	memcpy(seq, p + 8, 8);
	dl_pattern(want, nonce, *seq, sector);
	return !memcmp(want, p, DL_SECTOR);
}

static bool dl_is_zero(const uint8_t *p)
{
	static const uint8_t zero[DL_SECTOR];

	return !memcmp(p, zero, DL_SECTOR);
}

/* Journal (crash mode): lines collected per batch, written with one
 * write(2) and fdatasync'ed before the batch's requests are kicked. */

__attribute__((format(printf, 2, 3)))
static void dl_log(struct dl *d, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (d->jfd < 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(d->jbuf + d->jlen, DL_JOURNAL_BUF - d->jlen, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= DL_JOURNAL_BUF - d->jlen)
		dl_fail("journal batch overflow");
	d->jlen += (size_t)n;
}

static void dl_log_commit(struct dl *d)
{
	if (d->jfd < 0 || !d->jlen)
		return;
	if (write(d->jfd, d->jbuf, d->jlen) != (ssize_t)d->jlen || fdatasync(d->jfd))
		dl_fail("%s: %s", d->o.journal, strerror(errno));
	d->jlen = 0;
}

static const char *const dl_kind_name[] = { "read", "write", "write-zeroes", "discard", "flush" };

/* What a sector holds, in words. */
static const char *dl_content(const struct dl *d, const uint8_t *p, uint64_t sector, char *buf,
			      size_t n)
{
	uint64_t seq;

	if (dl_is_zero(p))
		return "zeros";
	if (!memcmp(p, d->base + sector * DL_SECTOR, DL_SECTOR))
		return "the base";
	if (!dl_is_pattern(p, d->nonce, sector, &seq))
		return "other bytes";
	snprintf(buf, n, "write %llu", (unsigned long long)seq);
	return buf;
}

/* The shadow's expectation for one sector read back as p. */
static void dl_check_sector(struct dl *d, const uint8_t *p, uint64_t sector)
{
	uint64_t st = d->shadow[sector], seq = 0;
	char want[32], found[32];
	bool ok;

	switch (st) {
	case DL_BASE: ok = !memcmp(p, d->base + sector * DL_SECTOR, DL_SECTOR); break;
	case DL_ZERO: ok = dl_is_zero(p); break;
	case DL_ANY: return;
	default: ok = dl_is_pattern(p, d->nonce, sector, &seq) && seq == st - DL_SEQ0; break;
	}
	if (!ok) {
		snprintf(want, sizeof(want), "write %llu", (unsigned long long)(st - DL_SEQ0));
		dl_fail("read of sector %llu: expected %s, found %s", (unsigned long long)sector,
			st == DL_BASE ? "the base" : st == DL_ZERO ? "zeros" : want,
			dl_content(d, p, sector, found, sizeof(found)));
	}
	d->checked++;
}

static void dl_shadow_set(struct dl *d, const struct dl_op *op, uint64_t st)
{
	uint64_t i;

	for (i = 0; d->shadow && i < op->nsect; i++)
		d->shadow[op->sector + i] = st == DL_SEQ0 ? DL_SEQ0 + op->seq : st;
}

/* A completed request: status, shadow, journal, dump. */
static void dl_complete(struct dl *d, struct dl_slot *sl)
{
	const struct dl_op *op = &sl->op;
	uint8_t status = virtio_guest_blk_status(&d->s.guest, &sl->r);
	uint64_t i, bytes = op->nsect * DL_SECTOR;

	if (status != VIRTIO_GUEST_BLK_S_OK)
		dl_fail("%s of %llu sectors at %llu on queue %u: status %u", dl_kind_name[op->kind],
			(unsigned long long)op->nsect, (unsigned long long)op->sector, op->q, status);
	switch (op->kind) {
	case DL_READ:
		for (i = 0; d->shadow && i < op->nsect; i++)
			dl_check_sector(d, sl->buf + i * DL_SECTOR, op->sector + i);
		if (d->out_fd >= 0 &&
		    pwrite(d->out_fd, sl->buf, bytes, (off_t)(op->sector * DL_SECTOR)) != (ssize_t)bytes)
			dl_fail("%s: %s", d->o.out, strerror(errno));
		break;
	case DL_WRITE: dl_shadow_set(d, op, DL_SEQ0); dl_log(d, "A %llu\n", (unsigned long long)op->seq); break;
	case DL_ZEROES: dl_shadow_set(d, op, DL_ZERO); dl_log(d, "A %llu\n", (unsigned long long)op->seq); break;
	case DL_DISCARD: dl_shadow_set(d, op, DL_ANY); break;
	case DL_FLUSH: dl_log(d, "F %llu\n", (unsigned long long)op->seq); break;
	}
	sl->busy = false;
	d->inflight--;
}

/* Takes every used entry of every queue; whether any. */
static bool dl_reap(struct dl *d)
{
	bool any = false;
	uint32_t len;
	void *cookie;
	unsigned q;
	int ret;

	for (q = 0; q < d->o.queues; q++) {
		while ((ret = virtio_guest_get(&d->s.guest, q, &len, &cookie)) == 1) {
			dl_complete(d, cookie);
			any = true;
		}
		if (ret < 0)
			dl_fail("queue %u: the device returned a head that is not in flight", q);
	}
	return any;
}

/* Request shapes. */

static uint64_t dl_length(struct dl *d, enum dl_kind k)
{
	uint64_t max = k == DL_ZEROES || k == DL_DISCARD ? d->max_zero : DL_MAX_SECT;
	uint64_t r = dl_rand(&d->rng) % 10;

	if (d->sectors < max)
		max = d->sectors;
	if (r < 5)
		return dl_between(d, 1, max < 8 ? max : 8);
	if (r < 8)
		return dl_between(d, 1, max < 128 ? max : 128);
	return dl_between(d, 1, max);
}

/* Half the requests go to the first eighth of the disk, so they meet. */
static void dl_place(struct dl *d, struct dl_op *op)
{
	uint64_t span = d->sectors - op->nsect, hot = d->sectors / 8;

	op->sector = dl_between(d, 0, span);
	if (dl_rand(&d->rng) & 1 && hot > op->nsect)
		op->sector = dl_between(d, 0, hot - op->nsect);
	if (dl_rand(&d->rng) % 3 == 0)
		op->sector &= ~7ULL;
}

static void dl_gen_random(struct dl *d, struct dl_op *op)
{
	static const enum dl_kind kinds[128] = {
		['r'] = DL_READ, ['w'] = DL_WRITE, ['z'] = DL_ZEROES, ['d'] = DL_DISCARD,
		['f'] = DL_FLUSH,
	};
	size_t n = strlen(d->o.mix);

	*op = (struct dl_op){ .kind = kinds[(unsigned char)d->o.mix[dl_rand(&d->rng) % n] & 127],
			      .seq = d->seq++, .unmap = dl_rand(&d->rng) & 1 };
	op->q = d->o.ops ? op->seq % d->o.queues : (unsigned)(dl_rand(&d->rng) % d->o.queues);
	if (op->kind == DL_FLUSH)
		return;
	op->nsect = dl_length(d, op->kind);
	dl_place(d, op);
}

/* Dump mode: the disk in order, in random-sized reads. */
static void dl_gen_dump(struct dl *d, struct dl_op *op)
{
	uint64_t left = d->sectors - d->submitted;
	uint64_t n = dl_length(d, DL_READ);

	*op = (struct dl_op){ .kind = DL_READ, .seq = d->seq, .q = d->seq % d->o.queues,
			      .sector = d->submitted, .nsect = n < left ? n : left };
	d->seq++;
}

static bool dl_dumping(const struct dl *d)
{
	return !strcmp(d->o.mode, "dump");
}

/* Whether another request is to be submitted. */
static bool dl_more(const struct dl *d)
{
	if (dl_dumping(d))
		return d->submitted < d->sectors;
	return !d->o.ops || d->submitted < d->o.ops;
}

static bool dl_overlaps(const struct dl *d, const struct dl_op *op)
{
	const struct dl_slot *sl;
	unsigned i;

	if (op->kind == DL_FLUSH)
		return false;
	for (i = 0; i < d->o.queues * d->o.depth; i++) {
		sl = &d->slots[i];
		if (sl->busy && sl->op.kind != DL_FLUSH && sl->op.sector < op->sector + op->nsect &&
		    op->sector < sl->op.sector + sl->op.nsect)
			return true;
	}
	return false;
}

static struct dl_slot *dl_free_slot(struct dl *d, unsigned q)
{
	unsigned i;

	for (i = 0; i < d->o.depth; i++)
		if (!d->slots[q * d->o.depth + i].busy)
			return &d->slots[q * d->o.depth + i];
	return NULL;
}

/* Splits the slot's bytes into up to DL_MAX_SEGS segments of any length. */
static void dl_segments(struct dl *d, struct dl_slot *sl, uint64_t bytes)
{
	unsigned k = (unsigned)dl_between(d, 1, DL_MAX_SEGS);
	uint64_t at = 0, len;

	while (at < bytes) {
		len = --k && bytes - at > 1 ? dl_between(d, 1, bytes - at - 1) : bytes - at;
		virtio_guest_blk_data(&sl->r, sl->gpa + at, (uint32_t)len);
		at += len;
	}
}

/* The request's header fields and data segments. */
static void dl_prepare(struct dl *d, struct dl_slot *sl)
{
	static const uint32_t type[] = {
		[DL_READ] = VIRTIO_GUEST_BLK_T_IN, [DL_WRITE] = VIRTIO_GUEST_BLK_T_OUT,
		[DL_ZEROES] = VIRTIO_GUEST_BLK_T_WRITE_ZEROES, [DL_DISCARD] = VIRTIO_GUEST_BLK_T_DISCARD,
		[DL_FLUSH] = VIRTIO_GUEST_BLK_T_FLUSH,
	};
	const struct dl_op *op = &sl->op;
	uint32_t range[4] = { (uint32_t)op->sector, (uint32_t)(op->sector >> 32), (uint32_t)op->nsect,
			      op->kind == DL_ZEROES && op->unmap ? VIRTIO_GUEST_BLK_WZ_F_UNMAP : 0 };
	uint64_t i;

	sl->r = (struct virtio_guest_blk_req){ .type = type[op->kind], .hdr = sl->r.hdr,
					       .sector = op->kind == DL_FLUSH ? 0 : op->sector };
	switch (op->kind) {
	case DL_WRITE:
		for (i = 0; i < op->nsect; i++)
			dl_pattern(sl->buf + i * DL_SECTOR, d->nonce, op->seq, op->sector + i);
		/* fall through */
	case DL_READ: dl_segments(d, sl, op->nsect * DL_SECTOR); break;
	case DL_ZEROES:
	case DL_DISCARD:
		memcpy(sl->buf, range, sizeof(range));
		virtio_guest_blk_data(&sl->r, sl->gpa, sizeof(range));
		break;
	case DL_FLUSH: break;
	}
}

static void dl_submit(struct dl *d, struct dl_slot *sl, const struct dl_op *op)
{
	bool indirect = d->indirect && dl_rand(&d->rng) & 1;
	int ret;

	sl->op = *op;
	dl_prepare(d, sl);
	if (op->kind == DL_WRITE || op->kind == DL_ZEROES)
		dl_log(d, "S %llu %llu %llu %c\n", (unsigned long long)op->seq,
		       (unsigned long long)op->sector, (unsigned long long)op->nsect,
		       op->kind == DL_WRITE ? 'w' : 'z');
	else if (op->kind == DL_FLUSH)
		dl_log(d, "f %llu\n", (unsigned long long)op->seq);
	if (d->o.verbose)
		printf("%s seq=%llu queue=%u sector=%llu sectors=%llu%s\n", dl_kind_name[op->kind],
		       (unsigned long long)op->seq, op->q, (unsigned long long)op->sector,
		       (unsigned long long)op->nsect, op->kind == DL_ZEROES && op->unmap ? " unmap" : "");
	ret = virtio_guest_blk_submit(&d->s.guest, op->q, &sl->r, indirect, sl);
	if (ret < 0)
		dl_fail("queue %u: cannot add a request: %s", op->q, strerror(-ret));
	sl->busy = true;
	d->kick[op->q] = true;
	d->inflight++;
	d->submitted += dl_dumping(d) ? op->nsect : 1;
	d->count[op->kind]++;
}

/* Submits while a slot is free on the next request's queue and it meets
 * no request in flight; whether any went. The next request waits for its
 * turn, so a seed gives the same requests in the same order. */
static bool dl_fill(struct dl *d)
{
	struct dl_slot *sl;
	bool any = false;

	while (dl_more(d)) {
		if (!d->have_next) {
			if (dl_dumping(d))
				dl_gen_dump(d, &d->next);
			else
				dl_gen_random(d, &d->next);
			d->have_next = true;
		}
		sl = dl_free_slot(d, d->next.q);
		if (!sl || dl_overlaps(d, &d->next))
			break;
		dl_submit(d, sl, &d->next);
		d->have_next = false;
		any = true;
	}
	return any;
}

static void dl_kick(struct dl *d)
{
	unsigned q;

	for (q = 0; q < d->o.queues; q++) {
		if (d->kick[q])
			virtio_guest_kick(&d->s.guest, q);
		d->kick[q] = false;
	}
}

/* Sleeps on the queues' interrupts; fails when nothing completes for
 * DL_STALL_MS with requests in flight. */
static void dl_wait(struct dl *d)
{
	struct pollfd p[DL_MAX_QUEUES];
	unsigned q;

	if (clock_ns() - d->t_progress > DL_STALL_MS * 1000000ULL)
		dl_fail("no completion for %u ms with %llu requests in flight", DL_STALL_MS,
			(unsigned long long)d->inflight);
	for (q = 0; q < d->o.queues; q++)
		p[q] = (struct pollfd){ .fd = virtio_guest_irq_fd(&d->s.guest, d->s.guest.q[q].vector),
					.events = POLLIN };
	if (poll(p, d->o.queues, 100) <= 0)
		return;
	for (q = 0; q < d->o.queues; q++)
		if (p[q].revents)
			virtio_guest_irq_wait(&d->s.guest, d->s.guest.q[q].vector, 0);
}

static void dl_run(struct dl *d)
{
	bool progress;

	d->t_start = d->t_progress = clock_ns();
	while (dl_more(d) || d->inflight) {
		progress = dl_reap(d);
		if (progress)
			d->t_progress = clock_ns();
		progress |= dl_fill(d);
		dl_log_commit(d);
		dl_kick(d);
		if (!d->o.ops && !dl_dumping(d) &&
		    clock_ns() - d->t_start > DL_CRASH_MAX_S * 1000000000ULL) {
			fprintf(stderr, "diskload: not killed after %u s\n", DL_CRASH_MAX_S);
			exit(2);
		}
		if (!progress)
			dl_wait(d);
	}
}

/* Set-up. */

static const struct {
	const char *name;
	enum block_format format;
} dl_formats[] = {
	{ "raw", BLOCK_FORMAT_RAW },
	{ "qcow2", BLOCK_FORMAT_QCOW2 },
	{ "auto", BLOCK_FORMAT_AUTO },
};

static enum block_format dl_format(const char *name)
{
	unsigned i;

	for (i = 0; i < ARRAY_SIZE(dl_formats); i++)
		if (!strcmp(dl_formats[i].name, name))
			return dl_formats[i].format;
	dl_fail("unknown format '%s'", name);
}

/* Skips the program when io_uring is unavailable here: a failing stack
 * is then a failure, whatever its error. */
static void dl_need_io_uring(void)
{
	struct loop *l;
	int ret = loop_new(&(struct loop_params){ .name = "probe" }, &l);
	const char *why = ret ? loop_unavailable_reason(ret) : NULL;

	if (why) {
		printf("SKIP: %s\n", why);
		exit(77);
	}
	if (ret)
		dl_fail("loop_new: %s", strerror(-ret));
	loop_free(l);
}

/* The stack on the image, the driver started with every feature, and a
 * slot of guest RAM per request. */
static void dl_stack(struct dl *d)
{
	uint64_t all = 0, i;
	int ret = blk_stack_create(&d->s, &(struct blk_stack_params){
		.path = d->o.image, .format = dl_format(d->o.format), .direct = d->o.direct,
		.readonly = dl_dumping(d), .l2_cache = d->o.l2_cache,
		.num_queues = d->o.queues, .n_iothreads = d->o.queues, .queue_size = DL_QSIZE });

	if (ret)
		dl_fail("%s", d->s.err);
	ret = virtio_guest_start(&d->s.guest, ~all, d->o.queues, DL_QSIZE);
	if (ret)
		dl_fail("virtio_guest_start: %s", strerror(-ret));
	d->indirect = d->s.guest.features >> VIRTIO_RING_F_INDIRECT_DESC & 1;
	d->sectors = virtio_guest_config_read(&d->s.guest, VIRTIO_GUEST_BLK_CFG_CAPACITY, 8);
	d->max_zero = virtio_guest_config_read(&d->s.guest, VIRTIO_GUEST_BLK_CFG_MAX_WZ_SECTORS, 4);
	if (d->max_zero > DL_MAX_ZERO_SECT)
		d->max_zero = DL_MAX_ZERO_SECT;
	d->slots = calloc(d->o.queues * d->o.depth, sizeof(*d->slots));
	for (i = 0; d->slots && i < d->o.queues * d->o.depth; i++) {
		d->slots[i].gpa = virtio_guest_alloc(&d->s.guest, DL_MAX_SECT * DL_SECTOR, 4096);
		d->slots[i].buf = virtio_guest_hva(&d->s.guest, d->slots[i].gpa, DL_MAX_SECT * DL_SECTOR);
		if (!d->slots[i].buf)
			dl_fail("guest RAM exhausted for %u x %u requests", d->o.queues, d->o.depth);
	}
	if (!d->sectors || !d->max_zero || !d->slots)
		dl_fail("no capacity, no write-zeroes or no memory");
}

/* Maps path read-only; its size in bytes. */
static const uint8_t *dl_map(const char *path, uint64_t *size)
{
	int fd = open(path, O_RDONLY);
	struct stat st;
	void *p;

	if (fd < 0 || fstat(fd, &st))
		dl_fail("%s: %s", path, strerror(errno));
	*size = (uint64_t)st.st_size;
	p = *size ? mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (p == MAP_FAILED || !p)
		dl_fail("%s: cannot map it (%llu bytes)", path, (unsigned long long)*size);
	return p;
}

/* The base the reads are checked against: every sector starts there. */
static void dl_shadow_init(struct dl *d)
{
	uint64_t size;

	d->base = dl_map(d->o.base, &size);
	if (size != d->sectors * DL_SECTOR)
		dl_fail("%s has %llu bytes, the disk %llu", d->o.base, (unsigned long long)size,
			(unsigned long long)(d->sectors * DL_SECTOR));
	d->shadow = calloc(d->sectors, sizeof(*d->shadow));
	if (!d->shadow)
		dl_fail("no memory for the shadow of %llu sectors", (unsigned long long)d->sectors);
}

static void dl_free(struct dl *d)
{
	if (d->base)
		munmap((void *)d->base, d->sectors * DL_SECTOR);
	free(d->shadow);
	free(d->slots);
	free(d->jbuf);
}

static void dl_summary(const struct dl *d)
{
	unsigned k;

	printf("%s:", d->o.mode);
	for (k = 0; k <= DL_FLUSH; k++)
		printf(" %s=%llu", dl_kind_name[k], (unsigned long long)d->count[k]);
	printf(" checked_sectors=%llu seconds=%.2f\n", (unsigned long long)d->checked,
	       (clock_ns() - d->t_start) / 1e9);
}

/* Modes. */

static void dl_crash(struct dl *d)
{
	dl_shadow_init(d);
	d->jfd = open(d->o.journal, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	d->jbuf = malloc(DL_JOURNAL_BUF);
	if (d->jfd < 0 || !d->jbuf)
		dl_fail("%s: %s", d->o.journal, strerror(errno));
	dl_log(d, "R %u %llu\n", d->nonce, (unsigned long long)d->sectors);
	dl_log_commit(d);
	printf("ready\n");
	fflush(stdout);
	dl_run(d);
}

static void dl_dump(struct dl *d)
{
	d->out_fd = open(d->o.out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (d->out_fd < 0 || ftruncate(d->out_fd, (off_t)(d->sectors * DL_SECTOR)))
		dl_fail("%s: %s", d->o.out, strerror(errno));
	dl_run(d);
	if (close(d->out_fd))
		dl_fail("%s: %s", d->o.out, strerror(errno));
}

/* Verify: the journal replayed over the sectors. */

struct dl_write {
	uint64_t sector, nsect;
	long ack;			/* journal line of its A, -1: none */
	char kind;			/* 'w', 'z', 0: no such write */
};

struct dl_verify {
	uint32_t nonce;
	uint64_t sectors, nseq;
	struct dl_write *w;		/* by seq */
	long *flush_line;		/* by seq: the line of its f */
	long cutoff;			/* acknowledged before this line: durable */
	uint64_t *durable;		/* per sector: 1 + seq of its durable write, 0: none */
	uint8_t *zero_ok;		/* per sector: zeros are an allowed content */
	uint64_t flushes_done, acked, durable_writes;
};

static void dl_verify_grow(struct dl_verify *v, uint64_t seq)
{
	uint64_t n = v->nseq ? v->nseq : 1024, i;

	if (seq < v->nseq)
		return;
	while (n <= seq)
		n *= 2;
	v->w = realloc(v->w, n * sizeof(*v->w));
	v->flush_line = realloc(v->flush_line, n * sizeof(*v->flush_line));
	if (!v->w || !v->flush_line)
		dl_fail("no memory for %llu journal entries", (unsigned long long)n);
	for (i = v->nseq; i < n; i++) {
		v->w[i] = (struct dl_write){ .ack = -1 };
		v->flush_line[i] = -1;
	}
	v->nseq = n;
}

/* One journal line (number no). A torn last line is ignored. */
static void dl_verify_line(struct dl_verify *v, const char *l, long no)
{
	unsigned long long seq, a, b;
	char kind;

	if (sscanf(l, "R %u %llu", &v->nonce, &a) == 2) {
		v->sectors = a;
	} else if (sscanf(l, "S %llu %llu %llu %c", &seq, &a, &b, &kind) == 4) {
		dl_verify_grow(v, seq);
		v->w[seq] = (struct dl_write){ .sector = a, .nsect = b, .ack = -1, .kind = kind };
	} else if (sscanf(l, "A %llu", &seq) == 1 && seq < v->nseq) {
		v->w[seq].ack = no;
		v->acked++;
	} else if (sscanf(l, "f %llu", &seq) == 1) {
		dl_verify_grow(v, seq);
		v->flush_line[seq] = no;
	} else if (sscanf(l, "F %llu", &seq) == 1 && seq < v->nseq && v->flush_line[seq] >= 0) {
		if (v->flush_line[seq] > v->cutoff)
			v->cutoff = v->flush_line[seq];
		v->flushes_done++;
	} else {
		dl_fail("journal line %ld: cannot parse '%s'", no, l);
	}
}

static void dl_verify_read(struct dl_verify *v, const char *path)
{
	FILE *f = fopen(path, "r");
	char line[256];
	long no = 0;

	if (!f)
		dl_fail("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		if (!strchr(line, '\n'))
			break;
		dl_verify_line(v, line, ++no);
	}
	fclose(f);
	if (!v->sectors)
		dl_fail("%s: no R line", path);
}

/* Per sector, in submission order: a durable write replaces what came
 * before (any earlier write to the sector completed before it was
 * submitted); a later write adds itself to the allowed contents. */
static void dl_verify_replay(struct dl_verify *v)
{
	uint64_t seq, s;
	bool dur;

	v->durable = calloc(v->sectors, sizeof(*v->durable));
	v->zero_ok = calloc(v->sectors, 1);
	if (!v->durable || !v->zero_ok)
		dl_fail("no memory for %llu sectors", (unsigned long long)v->sectors);
	for (seq = 0; seq < v->nseq; seq++) {
		const struct dl_write *w = &v->w[seq];

		if (!w->kind)
			continue;
		if (w->sector + w->nsect > v->sectors)
			dl_fail("journal: write %llu ends past the disk", (unsigned long long)seq);
		dur = w->ack >= 0 && w->ack < v->cutoff;
		v->durable_writes += dur;
		for (s = w->sector; s < w->sector + w->nsect; s++) {
			if (dur)
				v->durable[s] = seq + 1;
			v->zero_ok[s] = (dur ? 0 : v->zero_ok[s]) | (w->kind == 'z');
		}
	}
}

/* Why sector s holding p breaks the rule, or NULL; *newer is set when p
 * is a write submitted after the durable one. */
static const char *dl_verify_sector(const struct dl_verify *v, const uint8_t *base, uint64_t s,
				    const uint8_t *p, bool *newer)
{
	static char why[128];
	uint64_t dur = v->durable[s], seq;

	*newer = false;
	if (!dur && !memcmp(p, base + s * DL_SECTOR, DL_SECTOR))
		return NULL;
	if (dl_is_pattern(p, v->nonce, s, &seq) && seq < v->nseq && v->w[seq].kind == 'w' &&
	    v->w[seq].sector <= s && s < v->w[seq].sector + v->w[seq].nsect && seq + 1 >= dur) {
		*newer = seq + 1 != dur;
		return NULL;
	}
	if (v->zero_ok[s] && dl_is_zero(p)) {
		*newer = !dur || v->w[dur - 1].kind != 'z';
		return NULL;
	}
	snprintf(why, sizeof(why), "holds %s; durable: %s %lld",
		 !memcmp(p, base + s * DL_SECTOR, DL_SECTOR) ? "the base" : dl_is_zero(p) ? "zeros" :
		 dl_is_pattern(p, v->nonce, s, &seq) ? "an older write" : "other bytes",
		 dur ? (v->w[dur - 1].kind == 'z' ? "write-zeroes" : "write") : "the base",
		 dur ? (long long)dur - 1 : -1LL);
	return why;
}

static int dl_verify(const struct dl_opts *o)
{
	struct dl_verify v = { .cutoff = -1 };
	uint64_t size, bsize, s, bad = 0, newer_n = 0, durable_n = 0;
	long long probe = -1;
	const uint8_t *img, *base;
	const char *why;
	bool newer;

	dl_verify_read(&v, o->journal);
	dl_verify_replay(&v);
	img = dl_map(o->image, &size);
	base = dl_map(o->base, &bsize);
	if (size != v.sectors * DL_SECTOR || bsize != size)
		dl_fail("%s has %llu bytes, %s %llu, the journal's disk %llu", o->image,
			(unsigned long long)size, o->base, (unsigned long long)bsize,
			(unsigned long long)(v.sectors * DL_SECTOR));
	for (s = 0; s < v.sectors; s++) {
		why = dl_verify_sector(&v, base, s, img + s * DL_SECTOR, &newer);
		if (why && ++bad <= 10)
			fprintf(stderr, "diskload: sector %llu %s\n", (unsigned long long)s, why);
		newer_n += !why && newer;
		durable_n += !why && !newer && v.durable[s];
		if (probe < 0 && !why && !newer && v.durable[s] && v.w[v.durable[s] - 1].kind == 'w')
			probe = (long long)s;
	}
	printf("verify: acked=%llu durable_writes=%llu flushes_done=%llu durable_sectors=%llu "
	       "newer_sectors=%llu bad_sectors=%llu probe_sector=%lld\n", (unsigned long long)v.acked,
	       (unsigned long long)v.durable_writes, (unsigned long long)v.flushes_done,
	       (unsigned long long)durable_n, (unsigned long long)newer_n, (unsigned long long)bad,
	       probe);
	munmap((void *)img, size);
	munmap((void *)base, bsize);
	free(v.w);
	free(v.flush_line);
	free(v.durable);
	free(v.zero_ok);
	return bad ? 1 : 0;
}

static void dl_usage(void)
{
	fprintf(stderr, "usage: diskload crash|workload|dump|verify -F FMT -i IMAGE [-b BASE] [-j JOURNAL]\n"
			"       [-o OUT] [-n OPS] [-m MIX] [-q QUEUES] [-d DEPTH] [-s SEED] [-c] [-l L2_CACHE] [-v]\n");
	exit(1);
}

static void dl_parse(struct dl_opts *o, int argc, char **argv)
{
	int c;

	*o = (struct dl_opts){ .mode = argc > 1 ? argv[1] : "", .format = "raw", .queues = 4,
			       .depth = 8, .mix = "wwwwwwzrrf",
			       .seed = clock_ns() ^ (uint64_t)getpid() << 32 };
	while ((c = getopt(argc - 1, argv + 1, "F:i:b:j:o:n:m:q:d:s:cl:v")) != -1) {
		switch (c) {
		case 'F': o->format = optarg; break;
		case 'i': o->image = optarg; break;
		case 'b': o->base = optarg; break;
		case 'j': o->journal = optarg; break;
		case 'o': o->out = optarg; break;
		case 'n': o->ops = strtoull(optarg, NULL, 0); break;
		case 'm': o->mix = optarg; break;
		case 'q': o->queues = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'd': o->depth = (unsigned)strtoul(optarg, NULL, 0); break;
		case 's': o->seed = strtoull(optarg, NULL, 0); break;
		case 'c': o->direct = true; break;
		case 'l': o->l2_cache = strtoull(optarg, NULL, 0); break;
		case 'v': o->verbose = true; break;
		default: dl_usage();
		}
	}
	if (optind != argc - 1 || !o->image || !o->queues || o->queues > DL_MAX_QUEUES ||
	    !o->depth || o->depth > DL_QSIZE / (DL_MAX_SEGS + 2) || !*o->mix ||
	    strspn(o->mix, "wzdrf") != strlen(o->mix))
		dl_usage();
}

/* Which options each mode needs. */
static bool dl_mode_ok(const struct dl_opts *o)
{
	if (!strcmp(o->mode, "crash"))
		return o->base && o->journal && !o->ops && !strchr(o->mix, 'd');
	if (!strcmp(o->mode, "workload"))
		return o->base && o->ops;
	if (!strcmp(o->mode, "dump"))
		return o->out;
	return !strcmp(o->mode, "verify") && o->base && o->journal;
}

int main(int argc, char **argv)
{
	static struct dl d;

	dl_parse(&d.o, argc, argv);
	if (!dl_mode_ok(&d.o))
		dl_usage();
	if (!strcmp(d.o.mode, "verify"))
		return dl_verify(&d.o);
	d.rng = (d.o.seed + 1) * 0x9e3779b97f4a7c15ULL | 1;
	d.nonce = (uint32_t)(d.o.seed ^ d.o.seed >> 32);
	d.out_fd = d.jfd = -1;
	rcu_register_thread();
	dl_need_io_uring();
	dl_stack(&d);
	if (!strcmp(d.o.mode, "crash"))
		dl_crash(&d);
	else if (!strcmp(d.o.mode, "dump"))
		dl_dump(&d);
	else {
		dl_shadow_init(&d);
		dl_run(&d);
	}
	dl_summary(&d);
	blk_stack_destroy(&d.s);
	dl_free(&d);
	rcu_unregister_thread();
	return 0;
}
