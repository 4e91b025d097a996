/*
 * virtio-blk device (see virtio_blk.h). Model: the virtio 1.x spec 5.2 for
 * the protocol; kvmtool's preallocated per-head request slots; QEMU's
 * per-virtqueue IOThreads for the threading.
 *
 * Threads: the transport calls start/reset/config_* on a vCPU thread with
 * its lock held. start and reset only schedule BHs: each queue's state
 * (ring, request slots, watch, counters) is owned by the queue's IOThread
 * from its start BH until its stop BH has drained the queue. The only
 * shared fields are the configuration (read-only after create), `active`
 * (the reset countdown, atomic) and the counters (relaxed atomics).
 *
 * Data path, all in the queue's IOThread: the kick eventfd fires (KVM
 * ioeventfd), every available chain is popped and submitted to the block
 * backend on the same loop (the loop submits them in one batch), each
 * completion writes the status byte and the used entry, and one BH per
 * burst of completions decides whether to interrupt (EVENT_IDX).
 */
#include "dev/virtio_blk.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "dev/vblk_req.h"
#include "dev/virtq.h"

#define VIRTIO_ID_BLOCK 2

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

#define VBLK_SEG_MAX 126U		/* data segments per request */
#define VBLK_SIZE_MAX (1U << 20)	/* bytes per segment */
#define VBLK_MAX_DATA ((uint64_t)VBLK_SEG_MAX * VBLK_SIZE_MAX)
#define VBLK_MAX_UNMAP_SECTORS 0x3fffffU	/* per discard/write-zeroes range */
#define VBLK_ID_BYTES 20
#define VBLK_LOG_MAX 10			/* guest-caused messages per queue */

/* struct virtio_blk_config, little endian (x86 host). */
struct vblk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads, sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp, alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback, unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap, unused1[3];
} __attribute__((packed));
_Static_assert(sizeof(struct vblk_config) == 60, "virtio_blk_config");

struct vblk_queue;

/* One request slot; the queue owns a slot per ring entry. */
struct vblk_req {
	struct block_req io;
	struct vblk_queue *q;
	struct vblk_req *next_free;
	struct virtq_elem elem;
	struct vblk_parsed p;
};

enum vblk_qstate { VBLK_Q_IDLE, VBLK_Q_RUNNING, VBLK_Q_BROKEN, VBLK_Q_STOPPING };

struct vblk_stats_atomic {
	_Atomic uint64_t requests, read_bytes, write_bytes, errors, kicks, interrupts;
};

/*
 * Everything but `stats` is owned by the queue's IOThread while started.
 * Queues sit side by side in one array and are written by different
 * IOThreads, so each starts on a cache line of its own.
 */
struct vblk_queue {
	_Alignas(64) struct virtio_blk *b;
	unsigned index;
	struct loop *loop;
	struct virtq vq;
	struct virtq_config cfg;	/* copied by start, under the transport lock */
	enum vblk_qstate state;
	struct loop_fd kick;
	bool watching;
	struct loop_bh start_bh, stop_bh, notify_bh;
	struct vblk_req *slots, *free;
	struct iovec *iov;		/* slots x (VBLK_SEG_MAX + 2) */
	uint64_t *gpa;
	unsigned inflight;
	bool starved;			/* a chain waits for a free slot */
	unsigned logged;
	struct vblk_stats_atomic stats;
};

struct virtio_blk {
	struct virtio_dev dev;
	struct block *blk;
	struct mem_map *mem;
	bool readonly;
	char serial[VBLK_ID_BYTES];
	struct vblk_config config;
	struct virtio_queue *vqs;	/* the transport's view, dev.queues */
	struct vblk_queue *q;
	unsigned n_started;		/* transport lock */
	atomic_uint active;		/* queues still draining after a reset */
};

static void vblk_count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* Guest-caused messages, at most VBLK_LOG_MAX per queue start. */
static void vblk_log(struct vblk_queue *q, const char *what, const char *why)
{
	if (q->logged > VBLK_LOG_MAX)
		return;
	if (q->logged++ == VBLK_LOG_MAX)
		log_msg("%s: queue %u: further errors not logged", q->b->dev.name, q->index);
	else
		log_msg("%s: queue %u: %s: %s", q->b->dev.name, q->index, what, why);
}

static void vblk_notify_bh(struct loop_bh *bh)
{
	struct vblk_queue *q = container_of(bh, struct vblk_queue, notify_bh);

	if (q->state == VBLK_Q_IDLE || q->state == VBLK_Q_STOPPING ||
	    !virtq_should_notify(&q->vq))
		return;
	vblk_count(&q->stats.interrupts, 1);
	virtio_notify_queue(&q->b->dev, q->index);
}

static void vblk_queue_stopped(struct vblk_queue *q)
{
	struct virtio_blk *b = q->b;

	q->state = VBLK_Q_IDLE;
	if (atomic_fetch_sub(&b->active, 1) == 1)
		virtio_reset_done(&b->dev);
}

static void vblk_mark_dirty(struct vblk_req *req)
{
	struct mem_map *mem = req->q->b->mem;

	if (req->p.type == VIRTIO_BLK_T_IN || req->p.type == VIRTIO_BLK_T_GET_ID)
		for (unsigned i = 0; i < req->p.n_data; i++)
			mem_dirty_mark(mem, req->p.data_gpa[i], req->p.data[i].iov_len);
	mem_dirty_mark(mem, req->p.status_gpa, 1);
}

static void vblk_process(struct vblk_queue *q);

/* Answers the request and frees its slot. written: payload bytes the
 * device wrote into the driver's buffers. A draining queue answers
 * nothing: after a reset no completion may reach the abandoned ring. */
static void vblk_complete(struct vblk_req *req, uint8_t status, uint32_t written)
{
	struct vblk_queue *q = req->q;

	if (q->state != VBLK_Q_STOPPING) {
		*req->p.status = status;
		vblk_mark_dirty(req);
		virtq_push(&q->vq, req->elem.head, written + 1);
		loop_bh_schedule(q->loop, &q->notify_bh);
	}
	vblk_count(&q->stats.requests, 1);
	if (status != VIRTIO_BLK_S_OK)
		vblk_count(&q->stats.errors, 1);
	req->next_free = q->free;
	q->free = req;
	q->inflight--;
	if (q->state == VBLK_Q_STOPPING && !q->inflight)
		vblk_queue_stopped(q);
	else if (q->starved && q->state == VBLK_Q_RUNNING)
		vblk_process(q);
}

static void vblk_io_done(struct block_req *io, int res)
{
	struct vblk_req *req = container_of(io, struct vblk_req, io);
	bool in = req->p.type == VIRTIO_BLK_T_IN;

	if (res < 0) {
		vblk_log(req->q, "host I/O error", strerror(-res));
		vblk_complete(req, VIRTIO_BLK_S_IOERR, 0);
		return;
	}
	vblk_count(in ? &req->q->stats.read_bytes : &req->q->stats.write_bytes,
		   req->p.type == VIRTIO_BLK_T_OUT || in ? req->p.data_len : 0);
	vblk_complete(req, VIRTIO_BLK_S_OK, in ? (uint32_t)req->p.data_len : 0);
}

static bool vblk_in_range(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t cap = b->config.capacity;

	return sector <= cap && bytes / VBLK_SECTOR <= cap - sector;
}

static int vblk_rw(struct vblk_req *req)
{
	struct virtio_blk *b = req->q->b;
	struct vblk_parsed *p = &req->p;
	uint64_t off = p->sector * VBLK_SECTOR;

	if (p->data_len % VBLK_SECTOR || p->data_len > VBLK_MAX_DATA ||
	    !vblk_in_range(b, p->sector, p->data_len))
		return -EINVAL;
	if (!p->data_len) {
		vblk_complete(req, VIRTIO_BLK_S_OK, 0);
		return 0;
	}
	if (p->type == VIRTIO_BLK_T_IN)
		return block_readv(b->blk, req->q->loop, &req->io, p->data, p->n_data, off,
				   vblk_io_done);
	if (b->readonly)
		return -EROFS;
	return block_writev(b->blk, req->q->loop, &req->io, p->data, p->n_data, off,
			    vblk_io_done);
}

/* DISCARD and WRITE_ZEROES carry one range (max_*_seg = 1). */
static int vblk_unmap(struct vblk_req *req)
{
	struct virtio_blk *b = req->q->b;
	struct vblk_parsed *p = &req->p;
	bool zeroes = p->type == VIRTIO_BLK_T_WRITE_ZEROES;
	struct vblk_range r;

	if (p->data_len != sizeof(r))
		return -EINVAL;
	vblk_iov_to_buf(p->data, p->n_data, &r, sizeof(r));
	if (r.flags & ~(zeroes ? VBLK_RANGE_UNMAP : 0)) {
		vblk_complete(req, VIRTIO_BLK_S_UNSUPP, 0);
		return 0;
	}
	if (b->readonly)
		return -EROFS;
	if (r.num_sectors > VBLK_MAX_UNMAP_SECTORS ||
	    !vblk_in_range(b, r.sector, r.num_sectors * VBLK_SECTOR))
		return -EINVAL;
	if (zeroes)
		return block_write_zeroes(b->blk, req->q->loop, &req->io, r.sector * VBLK_SECTOR,
					  r.num_sectors * VBLK_SECTOR, r.flags & VBLK_RANGE_UNMAP,
					  vblk_io_done);
	return block_discard(b->blk, req->q->loop, &req->io, r.sector * VBLK_SECTOR,
			     r.num_sectors * VBLK_SECTOR, vblk_io_done);
}

static void vblk_get_id(struct vblk_req *req)
{
	size_t n = vblk_buf_to_iov(req->p.data, req->p.n_data, req->q->b->serial, VBLK_ID_BYTES);

	vblk_complete(req, VIRTIO_BLK_S_OK, (uint32_t)n);
}

/* Starts one parsed request; errors it can answer become IOERR. */
static void vblk_handle(struct vblk_req *req)
{
	struct vblk_queue *q = req->q;
	int ret;

	switch (req->p.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT:
		ret = vblk_rw(req);
		break;
	case VIRTIO_BLK_T_FLUSH:
		ret = block_flush(q->b->blk, q->loop, &req->io, vblk_io_done);
		break;
	case VIRTIO_BLK_T_GET_ID:
		vblk_get_id(req);
		return;
	case VIRTIO_BLK_T_DISCARD:
	case VIRTIO_BLK_T_WRITE_ZEROES:
		ret = vblk_unmap(req);
		break;
	default:
		vblk_complete(req, VIRTIO_BLK_S_UNSUPP, 0);
		return;
	}
	if (ret) {
		if (ret != -EROFS)
			vblk_log(q, "request answered with IOERR", strerror(-ret));
		vblk_complete(req, VIRTIO_BLK_S_IOERR, 0);
	}
}

static const char *vblk_ring_error(int err)
{
	switch (err) {
	case -EFAULT: return "a ring or buffer outside guest RAM";
	case -ELOOP: return "a descriptor chain longer than the queue";
	case -E2BIG: return "more segments than seg_max";
	case -EINVAL: return "a malformed ring or a request without a status byte";
	default: return strerror(-err);
	}
}

/* A hostile ring: stop serving the queue and ask the driver for a reset. */
static void vblk_break(struct vblk_queue *q, int err)
{
	vblk_log(q, "the driver broke the ring, the device needs a reset", vblk_ring_error(err));
	q->state = VBLK_Q_BROKEN;
	virtio_needs_reset(&q->b->dev);
}

/* Pops and starts every available chain. Returns false if the ring broke. */
static bool vblk_pop_all(struct vblk_queue *q)
{
	struct vblk_req *req;
	int ret;

	while ((req = q->free)) {
		req->elem.n_out = req->elem.n_in = 0;
		ret = virtq_pop(&q->vq, &req->elem);
		if (ret == 0)
			return true;
		if (ret < 0) {
			vblk_break(q, ret);
			return false;
		}
		q->free = req->next_free;
		q->inflight++;
		ret = vblk_req_parse(&req->elem, &req->p);
		if (ret == -EINVAL) {
			q->inflight--;
			req->next_free = q->free;
			q->free = req;
			vblk_break(q, ret);
			return false;
		}
		if (ret)
			vblk_complete(req, VIRTIO_BLK_S_IOERR, 0);
		else
			vblk_handle(req);
	}
	q->starved = true;
	return true;
}

static void vblk_process(struct vblk_queue *q)
{
	q->starved = false;
	do {
		virtq_set_kicks(&q->vq, false);
		if (!vblk_pop_all(q) || q->starved)
			return;
	} while (virtq_set_kicks(&q->vq, true));
}

static void vblk_kick(struct loop_fd *w, uint32_t revents)
{
	struct vblk_queue *q = container_of(w, struct vblk_queue, kick);
	uint64_t v;

	while (read(w->fd, &v, sizeof(v)) == sizeof(v))
		;
	vblk_count(&q->stats.kicks, 1);
	if (q->state == VBLK_Q_RUNNING)
		vblk_process(q);
}

static void vblk_reset_slots(struct vblk_queue *q)
{
	unsigned per = VBLK_SEG_MAX + 2;

	q->free = NULL;
	for (unsigned i = q->cfg.size; i-- > 0;) {
		struct vblk_req *req = &q->slots[i];

		*req = (struct vblk_req){
			.q = q, .next_free = q->free,
			.elem = { .max = per, .iov = q->iov + (size_t)i * per,
				  .gpa = q->gpa + (size_t)i * per },
		};
		q->free = req;
	}
	q->inflight = 0;
	q->starved = false;
}

static void vblk_start_bh(struct loop_bh *bh)
{
	struct vblk_queue *q = container_of(bh, struct vblk_queue, start_bh);
	int ret;

	vblk_reset_slots(q);
	q->logged = 0;
	q->state = VBLK_Q_RUNNING;
	ret = virtq_init(&q->vq, q->b->mem, &q->cfg);
	if (ret) {
		vblk_break(q, ret);
		return;
	}
	loop_fd_init(&q->kick, q->b->vqs[q->index].kick_fd, POLLIN, vblk_kick);
	ret = loop_fd_add(q->loop, &q->kick);
	if (ret) {
		vblk_break(q, ret);
		return;
	}
	q->watching = true;
	vblk_process(q);
}

static void vblk_stop_bh(struct loop_bh *bh)
{
	struct vblk_queue *q = container_of(bh, struct vblk_queue, stop_bh);

	if (q->watching)
		loop_fd_del(q->loop, &q->kick);
	q->watching = false;
	q->state = VBLK_Q_STOPPING;
	if (!q->inflight)
		vblk_queue_stopped(q);
}

static int vblk_start(struct virtio_dev *d)
{
	struct virtio_blk *b = container_of(d, struct virtio_blk, dev);
	unsigned n = 0;

	for (unsigned i = 0; i < d->num_queues; i++) {
		struct virtio_queue *vq = &d->queues[i];
		struct vblk_queue *q = &b->q[i];

		if (!vq->enabled)
			continue;
		if (!vq->size || vq->size > d->max_queue_size)
			return -EINVAL;
		q->cfg = (struct virtq_config){
			.size = vq->size, .desc = vq->desc, .avail = vq->avail, .used = vq->used,
			.event_idx = virtio_has(d, VIRTIO_RING_F_EVENT_IDX),
			.indirect = virtio_has(d, VIRTIO_RING_F_INDIRECT_DESC),
		};
		n++;
	}
	b->n_started = n;
	/* Every queue's BH is scheduled only after all were validated, so a
	 * failed start leaves nothing running. */
	for (unsigned i = 0; i < d->num_queues; i++)
		if (d->queues[i].enabled)
			loop_bh_schedule(b->q[i].loop, &b->q[i].start_bh);
	return 0;
}

static void vblk_reset(struct virtio_dev *d)
{
	struct virtio_blk *b = container_of(d, struct virtio_blk, dev);

	if (!b->n_started) {
		virtio_reset_done(d);
		return;
	}
	atomic_store(&b->active, b->n_started);
	b->n_started = 0;
	for (unsigned i = 0; i < d->num_queues; i++)
		if (d->queues[i].enabled)
			loop_bh_schedule(b->q[i].loop, &b->q[i].stop_bh);
}

static void vblk_config_read(struct virtio_dev *d, unsigned off, void *data, unsigned len)
{
	struct virtio_blk *b = container_of(d, struct virtio_blk, dev);

	memcpy(data, (const uint8_t *)&b->config + off, len);
}

/* Nothing is writable: `writeback` needs CONFIG_WCE, which is not offered. */
static void vblk_config_write(struct virtio_dev *d, unsigned off, const void *data, unsigned len)
{
}

static const struct virtio_dev_ops vblk_ops = {
	.config_read = vblk_config_read,
	.config_write = vblk_config_write,
	.start = vblk_start,
	.reset = vblk_reset,
};

static uint64_t vblk_features(const struct virtio_blk *b)
{
	uint64_t f = 1ULL << VIRTIO_BLK_F_SIZE_MAX | 1ULL << VIRTIO_BLK_F_SEG_MAX |
		     1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
		     1ULL << VIRTIO_BLK_F_TOPOLOGY | 1ULL << VIRTIO_BLK_F_MQ |
		     1ULL << VIRTIO_RING_F_EVENT_IDX | 1ULL << VIRTIO_RING_F_INDIRECT_DESC;

	if (b->readonly)
		return f | 1ULL << VIRTIO_BLK_F_RO;
	return f | 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
}

static void vblk_fill_config(struct virtio_blk *b, unsigned num_queues)
{
	unsigned align = block_align(b->blk);
	uint32_t blk_size = align > VBLK_SECTOR && align <= 4096 ? align : VBLK_SECTOR;

	b->config = (struct vblk_config){
		.capacity = block_size(b->blk) / VBLK_SECTOR,
		.size_max = VBLK_SIZE_MAX,
		.seg_max = VBLK_SEG_MAX,
		.blk_size = blk_size,
		/* 4 KiB physical blocks: guests align partitions and I/O to
		 * host pages. */
		.physical_block_exp = (uint8_t)(blk_size == 4096 ? 0 : 3),
		.min_io_size = 1,
		.num_queues = (uint16_t)num_queues,
		.max_discard_sectors = VBLK_MAX_UNMAP_SECTORS,
		.max_discard_seg = 1,
		.discard_sector_alignment = 4096 / VBLK_SECTOR,
		.max_write_zeroes_sectors = VBLK_MAX_UNMAP_SECTORS,
		.max_write_zeroes_seg = 1,
		.write_zeroes_may_unmap = block_can_unmap(b->blk),
	};
}

static int vblk_alloc_queues(struct virtio_blk *b, const struct virtio_blk_params *p)
{
	unsigned n = p->cfg->num_queues, size = p->cfg->queue_size;
	size_t per = (size_t)size * (VBLK_SEG_MAX + 2);

	b->vqs = calloc(n, sizeof(*b->vqs));
	b->q = aligned_alloc(_Alignof(struct vblk_queue), n * sizeof(*b->q));
	if (b->q)	/* before any return: virtio_blk_destroy frees its fields */
		memset(b->q, 0, n * sizeof(*b->q));
	if (!b->vqs || !b->q)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct vblk_queue *q = &b->q[i];

		*q = (struct vblk_queue){ .b = b, .index = i, .loop = p->loops[i],
					  .cfg = { .size = (uint16_t)size } };
		q->slots = calloc(size, sizeof(*q->slots));
		q->iov = calloc(per, sizeof(*q->iov));
		q->gpa = calloc(per, sizeof(*q->gpa));
		if (!q->slots || !q->iov || !q->gpa)
			return -ENOMEM;
		loop_bh_init(&q->start_bh, vblk_start_bh);
		loop_bh_init(&q->stop_bh, vblk_stop_bh);
		loop_bh_init(&q->notify_bh, vblk_notify_bh);
	}
	return 0;
}

int virtio_blk_create(struct virtio_blk **out, const struct virtio_blk_params *p)
{
	const struct disk_config *cfg = p->cfg;
	struct virtio_blk *b;
	int ret;

	if (!cfg->num_queues || cfg->queue_size < 2 || cfg->queue_size > VIRTQ_MAX_SIZE ||
	    (cfg->queue_size & (cfg->queue_size - 1)))
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->blk = p->blk;
	b->mem = p->mem;
	b->readonly = cfg->readonly || block_readonly(p->blk);
	/* GET_ID: up to 20 bytes, NUL-padded, not necessarily terminated. */
	memcpy(b->serial, cfg->serial, strnlen(cfg->serial, sizeof(b->serial)));
	b->dev = (struct virtio_dev){
		.ops = &vblk_ops, .name = cfg->name, .device_id = VIRTIO_ID_BLOCK,
		.num_queues = cfg->num_queues, .max_queue_size = (uint16_t)cfg->queue_size,
		.config_size = sizeof(b->config),
	};
	ret = vblk_alloc_queues(b, p);
	if (ret) {
		virtio_blk_destroy(b);
		return ret;
	}
	b->dev.queues = b->vqs;
	b->dev.host_features = vblk_features(b);
	vblk_fill_config(b, cfg->num_queues);
	*out = b;
	return 0;
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	for (unsigned i = 0; b->q && i < b->dev.num_queues; i++) {
		free(b->q[i].slots);
		free(b->q[i].iov);
		free(b->q[i].gpa);
	}
	free(b->q);
	free(b->vqs);
	free(b);
}

struct virtio_dev *virtio_blk_dev(struct virtio_blk *b)
{
	return &b->dev;
}

void virtio_blk_stats(struct virtio_blk *b, unsigned q, struct virtio_blk_stats *out)
{
	struct vblk_stats_atomic *s = &b->q[q].stats;

	*out = (struct virtio_blk_stats){
		.requests = atomic_load_explicit(&s->requests, memory_order_relaxed),
		.read_bytes = atomic_load_explicit(&s->read_bytes, memory_order_relaxed),
		.write_bytes = atomic_load_explicit(&s->write_bytes, memory_order_relaxed),
		.errors = atomic_load_explicit(&s->errors, memory_order_relaxed),
		.kicks = atomic_load_explicit(&s->kicks, memory_order_relaxed),
		.interrupts = atomic_load_explicit(&s->interrupts, memory_order_relaxed),
	};
}
