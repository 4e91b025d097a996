/*
 * Split virtqueues, device side (see virtq.h). Model: the virtio 1.x spec,
 * section 2.7 (split virtqueues, indirect descriptors, EVENT_IDX).
 *
 * Threads: a queue belongs to the one thread that serves it; the driver
 * runs concurrently on vCPUs and may rewrite any ring byte at any time. So
 * every ring access is an atomic access (relaxed unless stated), each
 * guest field that a decision depends on is loaded exactly once into a
 * local (a descriptor is copied out before it is checked), and every
 * fence names the driver-side barrier it pairs with. Guest addresses are
 * only ever used after mem_translate accepted the whole range.
 *
 * Ring layouts (little-endian, as on the x86 host):
 *   avail: le16 flags, idx, ring[size], used_event
 *   used:  le16 flags, idx, {le32 id, len}[size], le16 avail_event
 * Descriptors are read byte by byte: indirect tables may be unaligned.
 */
#include "dev/virtq.h"

#include <errno.h>
#include <stdatomic.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ring fields are little-endian");

#define VIRTQ_DESC_SIZE 16u
#define VIRTQ_AVAIL_FLAGS 0	/* in le16 units */
#define VIRTQ_AVAIL_IDX 1
#define VIRTQ_AVAIL_RING 2
#define VIRTQ_USED_FLAGS 0	/* in bytes */
#define VIRTQ_USED_IDX 2
#define VIRTQ_USED_RING 4
#define VIRTQ_USED_ELEM 8u

/* A descriptor copied out of guest memory. */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

/* The descriptor table a chain walk is in. */
struct virtq_table {
	const volatile uint8_t *desc;
	uint32_t n;
	bool indirect;
};

static uint16_t virtq_ld16(const volatile uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void virtq_st16(volatile uint8_t *p, uint16_t v)
{
	__atomic_store_n((volatile uint16_t *)p, v, __ATOMIC_RELAXED);
}

static void virtq_st32(volatile uint8_t *p, uint32_t v)
{
	__atomic_store_n((volatile uint32_t *)p, v, __ATOMIC_RELAXED);
}

static uint64_t virtq_le(const volatile uint8_t *p, unsigned n)
{
	uint64_t v = 0;

	while (n--)
		v = v << 8 | __atomic_load_n(&p[n], __ATOMIC_RELAXED);
	return v;
}

static struct virtq_desc virtq_desc_read(const volatile uint8_t *p)
{
	return (struct virtq_desc){
		.addr = virtq_le(p, 8), .len = (uint32_t)virtq_le(p + 8, 4),
		.flags = (uint16_t)virtq_le(p + 12, 2), .next = (uint16_t)virtq_le(p + 14, 2),
	};
}

static volatile uint8_t *virtq_avail_event(const struct virtq *q)
{
	return q->used + VIRTQ_USED_RING + VIRTQ_USED_ELEM * q->size;
}

/* Chains the driver has made available and we have not popped. */
static uint16_t virtq_pending(const struct virtq *q)
{
	/* Acquire: the ring entry and descriptors behind the new index are read
	 * after it. Pairs with the driver's write barrier between filling them
	 * and bumping avail->idx. */
	uint16_t idx = __atomic_load_n(&q->avail[VIRTQ_AVAIL_IDX], __ATOMIC_ACQUIRE);

	return (uint16_t)(idx - q->last_avail);
}

int virtq_init(struct virtq *q, struct mem_map *mem, const struct virtq_config *cfg)
{
	uint32_t n = cfg->size;
	void *desc, *avail, *used;

	if (n == 0 || n > VIRTQ_MAX_SIZE || (n & (n - 1)))
		return -EINVAL;
	if (cfg->desc % 16 || cfg->avail % 2 || cfg->used % 4)
		return -EINVAL;
	desc = mem_translate(mem, cfg->desc, VIRTQ_DESC_SIZE * n);
	avail = mem_translate(mem, cfg->avail, 2 * (VIRTQ_AVAIL_RING + n + 1));
	used = mem_translate(mem, cfg->used, VIRTQ_USED_RING + VIRTQ_USED_ELEM * n + 2);
	if (!desc || !avail || !used)
		return -EFAULT;
	*q = (struct virtq){
		.mem = mem, .size = cfg->size, .event_idx = cfg->event_idx,
		.indirect = cfg->indirect, .desc = desc, .avail = avail, .used = used,
	};
	return 0;
}

/* Appends d's buffer to e: out segments first, then in segments. */
static int virtq_add(const struct virtq *q, struct virtq_elem *e, const struct virtq_desc *d)
{
	bool in = d->flags & VIRTQ_DESC_F_WRITE;
	unsigned i = e->n_out + e->n_in;
	void *p;

	if (d->len == 0)
		return 0;
	if (!in && e->n_in)
		return -EINVAL;
	if (i >= e->max)
		return -E2BIG;
	p = mem_translate(q->mem, d->addr, d->len);
	if (!p)
		return -EFAULT;
	e->iov[i] = (struct iovec){ .iov_base = p, .iov_len = d->len };
	e->gpa[i] = d->addr;
	if (in)
		e->n_in++;
	else
		e->n_out++;
	return 0;
}

/* Switches the walk to the indirect table d points to. */
static int virtq_indirect(const struct virtq *q, const struct virtq_desc *d, struct virtq_table *t)
{
	const volatile uint8_t *p;

	/* One table per chain, ending it: the spec forbids INDIRECT inside a
	 * table and INDIRECT together with NEXT. Its WRITE flag is ignored. */
	if (!q->indirect || t->indirect || (d->flags & VIRTQ_DESC_F_NEXT))
		return -EINVAL;
	if (d->len == 0 || d->len % VIRTQ_DESC_SIZE || d->len / VIRTQ_DESC_SIZE > q->size)
		return -EINVAL;
	p = mem_translate(q->mem, d->addr, d->len);
	if (!p)
		return -EFAULT;
	*t = (struct virtq_table){ .desc = p, .n = d->len / VIRTQ_DESC_SIZE, .indirect = true };
	return 0;
}

/*
 * Walks the chain at head into e. Terminates: each step either enters the
 * one indirect table or counts a buffer descriptor, and more than `size`
 * of those (which any loop produces) is -ELOOP.
 */
static int virtq_walk(const struct virtq *q, uint16_t head, struct virtq_elem *e)
{
	struct virtq_table t = { .desc = q->desc, .n = q->size };
	uint32_t idx = head, seen = 0;
	int ret;

	e->n_out = e->n_in = 0;
	for (;;) {
		struct virtq_desc d = virtq_desc_read(t.desc + VIRTQ_DESC_SIZE * idx);

		if (d.flags & VIRTQ_DESC_F_INDIRECT) {
			ret = virtq_indirect(q, &d, &t);
			if (ret)
				return ret;
			idx = 0;
			continue;
		}
		if (++seen > q->size)
			return -ELOOP;
		ret = virtq_add(q, e, &d);
		if (ret)
			return ret;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= t.n)
			return -EINVAL;
		idx = d.next;
	}
}

/*
 * Asks the driver to kick for the next chain it adds (avail_event at our
 * next entry, or flags clear), then fences so that the caller's reload of
 * avail->idx comes after that store. Pairs with the driver's full barrier
 * between bumping avail->idx and reading avail_event or used->flags: either
 * we see its new chain or it sees our request and kicks.
 */
static void virtq_arm(struct virtq *q)
{
	if (q->event_idx)
		virtq_st16(virtq_avail_event(q), q->last_avail);
	else
		virtq_st16(q->used + VIRTQ_USED_FLAGS, 0);
	atomic_thread_fence(memory_order_seq_cst);
}

int virtq_pop(struct virtq *q, struct virtq_elem *e)
{
	uint16_t pending = virtq_pending(q), head;
	int ret;

	if (!pending && q->event_idx && !q->kicks_off) {
		virtq_arm(q);
		pending = virtq_pending(q);
	}
	if (!pending)
		return 0;
	if (pending > q->size)
		return -EINVAL;
	head = virtq_ld16(&q->avail[VIRTQ_AVAIL_RING + q->last_avail % q->size]);
	if (head >= q->size)
		return -EINVAL;
	ret = virtq_walk(q, head, e);
	if (ret)
		return ret;
	e->head = head;
	q->last_avail++;
	return 1;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t len)
{
	volatile uint8_t *elem = q->used + VIRTQ_USED_RING + VIRTQ_USED_ELEM * (q->used_idx % q->size);

	virtq_st32(elem, head);
	virtq_st32(elem + 4, len);
	q->used_idx++;
	/* After 65536 pushes the window (signalled_used, used_idx] that
	 * vring_need_event looks at is empty again: forget it, so the next
	 * check notifies rather than missing used_event. */
	if (q->used_idx == q->signalled_used)
		q->signalled_valid = false;
	/* Release: the element, and the data written into the chain's buffers,
	 * are visible before the new index. Pairs with the driver's read
	 * barrier between reading used->idx and the element. */
	__atomic_store_n((volatile uint16_t *)(q->used + VIRTQ_USED_IDX), q->used_idx,
			 __ATOMIC_RELEASE);
}

/* The spec's rule: did the used index pass `event` going from old to now? */
static bool virtq_need_event(uint16_t event, uint16_t now, uint16_t old)
{
	return (uint16_t)(now - event - 1) < (uint16_t)(now - old);
}

bool virtq_should_notify(struct virtq *q)
{
	uint16_t old = q->signalled_used;
	bool valid = q->signalled_valid;

	/* Full fence: our used->idx store before the loads of used_event and
	 * flags. Pairs with the driver's full barrier between writing
	 * used_event (or clearing NO_INTERRUPT) and re-reading used->idx:
	 * either it sees our entries or we see its request. */
	atomic_thread_fence(memory_order_seq_cst);
	/* The window up to now is judged whatever the answer: a later
	 * used_event inside it is found by the driver's own re-read. */
	q->signalled_used = q->used_idx;
	q->signalled_valid = true;
	if (!q->event_idx)
		return !(virtq_ld16(&q->avail[VIRTQ_AVAIL_FLAGS]) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	return !valid || virtq_need_event(virtq_ld16(&q->avail[VIRTQ_AVAIL_RING + q->size]),
					  q->used_idx, old);
}

bool virtq_set_kicks(struct virtq *q, bool enable)
{
	q->kicks_off = !enable;
	if (enable) {
		virtq_arm(q);
		return virtq_has_avail(q);
	}
	/* With EVENT_IDX, avail_event stays where it is: at or behind the
	 * chains being popped, so the driver kicks at most once per wrap. */
	if (!q->event_idx)
		virtq_st16(q->used + VIRTQ_USED_FLAGS, VIRTQ_USED_F_NO_NOTIFY);
	return false;
}

bool virtq_has_avail(const struct virtq *q)
{
	return virtq_pending(q) != 0;
}
