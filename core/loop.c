/*
 * Generic half of the event loop: ownership and re-entrancy checks, timers,
 * bottom halves, the deferred I/O queue and adaptive busy-polling. The kernel
 * side (fd watches, I/O, waiting) is behind loop_backend_ops.
 *
 * Threads: everything here runs in the owner thread except loop_bh_schedule,
 * loop_stop and loop_in_owner, which touch only the atomic fields. The owner
 * is the creating thread until loop_run hands the loop to its caller.
 *
 * Wakeups: another thread that queues a BH or stops the loop writes the
 * eventfd `wake_fd` (watched like any fd) only when the owner has announced,
 * through `sleeping`, that it is about to block, and only once per sleep
 * (`kicked`). The pairing is the classic store-fence-load on both sides:
 * owner (sleeping = 1; fence; look for work) against scheduler (publish work;
 * fence; look at sleeping), so one of them always sees the other.
 */
#include "core/loop.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/loop_backend.h"
#include "core/util.h"

/* First busy-poll window once polling pays off; it then doubles or halves. */
#define LOOP_POLL_START_NS 4000ULL
/* With I/O parked for lack of submission room and nothing else due, look
 * again this soon instead of sleeping until an unrelated event. */
#define LOOP_DEFERRED_RETRY_NS 1000000ULL
/* The kernel rejects larger vectors (IOV_MAX). */
#define LOOP_IOV_MAX 1024U

struct loop {
	char name[32];			/* immutable */
	struct loop_backend *be;	/* owner */
	int wake_fd;			/* eventfd; immutable */
	struct loop_fd wake;		/* owner */

	_Atomic pthread_t owner;	/* written by the owner, read by any thread */
	atomic_bool running;		/* inside loop_run/loop_run_once */
	atomic_bool stop;		/* set by loop_stop, cleared by loop_run */
	atomic_bool sleeping;		/* owner may block: writers must kick */
	atomic_bool kicked;		/* wake_fd written during this sleep */
	_Atomic(struct loop_bh *) bh_head; /* LIFO of pending BHs, any thread pushes */
	atomic_uint senders;		/* threads inside loop_bh_schedule or
					 * loop_stop: loop_free waits for them */

	/* Owner thread only. */
	struct loop_link timers;	/* armed timers by deadline, then arming order */
	struct loop_io *deferred_head, *deferred_tail; /* waiting for an SQE */
	unsigned io_inflight;		/* accepted and not yet done */
	unsigned n_watches;		/* user fd watches added */
	uint64_t poll_max_ns;		/* immutable */
	uint64_t poll_ns;		/* current busy-poll window */
};

bool loop_in_owner(const struct loop *l)
{
	return pthread_equal(atomic_load_explicit(&l->owner, memory_order_relaxed),
			     pthread_self());
}

/* ---- wakeups ---- */

static void loop_wake_cb(struct loop_fd *w, uint32_t revents)
{
	uint64_t count;

	/* Only resets the counter: the work itself is found by the iteration. */
	if (read(w->fd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		log_msg("loop: reading the wakeup eventfd: %s", strerror(errno));
}

/* Makes a blocked or about-to-block owner return from its wait. */
static void loop_kick(struct loop *l)
{
	static const uint64_t one = 1;

	/* Pairs with the fence in loop_sleep_prepare: either the owner sees the
	 * work published before this fence, or we see sleeping == 1. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!atomic_load_explicit(&l->sleeping, memory_order_relaxed))
		return;
	/* Cleared by the owner before its next loop_sleep_prepare fence. */
	if (atomic_exchange_explicit(&l->kicked, true, memory_order_relaxed))
		return;
	if (write(l->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_msg("loop %s: writing the wakeup eventfd: %s", l->name, strerror(errno));
}

static bool loop_has_urgent_work(struct loop *l)
{
	return atomic_load_explicit(&l->bh_head, memory_order_relaxed) ||
	       atomic_load_explicit(&l->stop, memory_order_relaxed);
}

/* Announces a sleep; returns false if work arrived and the wait must not block. */
static bool loop_sleep_prepare(struct loop *l)
{
	atomic_store_explicit(&l->sleeping, true, memory_order_relaxed);
	/* Pairs with the fence in loop_kick. */
	atomic_thread_fence(memory_order_seq_cst);
	return !loop_has_urgent_work(l);
}

static void loop_sleep_finish(struct loop *l)
{
	atomic_store_explicit(&l->sleeping, false, memory_order_relaxed);
	/* Ordered before the next loop_sleep_prepare fence (see loop_kick). */
	atomic_store_explicit(&l->kicked, false, memory_order_relaxed);
}

/*
 * A sender's work can run, and its user free the loop, before the sender's
 * kick returns: senders count themselves in for the whole call, and
 * loop_free waits for them to leave. Entering happens before the work is
 * published, so before anything that can lead to loop_free.
 */
static void loop_sender_enter(struct loop *l)
{
	atomic_fetch_add_explicit(&l->senders, 1, memory_order_relaxed);
}

static void loop_sender_leave(struct loop *l)
{
	/* Release: our last reads of l happen before loop_free's acquire. */
	atomic_fetch_sub_explicit(&l->senders, 1, memory_order_release);
}

void loop_stop(struct loop *l)
{
	loop_sender_enter(l);
	atomic_store_explicit(&l->stop, true, memory_order_relaxed);
	loop_kick(l);
	loop_sender_leave(l);
}

/* ---- bottom halves ---- */

void loop_bh_init(struct loop_bh *bh, void (*cb)(struct loop_bh *bh))
{
	*bh = (struct loop_bh){ .cb = cb };
}

void loop_bh_schedule(struct loop *l, struct loop_bh *bh)
{
	struct loop_bh *head;

	/* Release: cb sees our writes even when bh is already pending, via the
	 * acq_rel exchange in loop_run_bhs. Acquire: the owner's read of
	 * bh->next happened before we overwrite it below. */
	if (atomic_fetch_or_explicit(&bh->scheduled, 1, memory_order_acq_rel))
		return;
	loop_sender_enter(l);
	head = atomic_load_explicit(&l->bh_head, memory_order_relaxed);
	do {
		bh->next = head;
		/* Release pairs with the acquire exchange in loop_run_bhs. */
	} while (!atomic_compare_exchange_weak_explicit(&l->bh_head, &head, bh,
							memory_order_release,
							memory_order_relaxed));
	loop_kick(l);
	loop_sender_leave(l);
}

static struct loop_bh *loop_bh_reverse(struct loop_bh *bh)
{
	struct loop_bh *prev = NULL, *next;

	for (; bh; bh = next) {
		next = bh->next;
		bh->next = prev;
		prev = bh;
	}
	return prev;
}

/* Runs the BHs pending now, oldest first; later ones wait for the next pass. */
static void loop_run_bhs(struct loop *l)
{
	struct loop_bh *bh, *next;

	/* Acquire pairs with the release CAS in loop_bh_schedule. */
	bh = atomic_exchange_explicit(&l->bh_head, NULL, memory_order_acquire);
	for (bh = loop_bh_reverse(bh); bh; bh = next) {
		next = bh->next;
		/* Pairs with the fetch_or in loop_bh_schedule. After this a
		 * new schedule re-queues bh, so cb must be called after it. */
		atomic_exchange_explicit(&bh->scheduled, 0, memory_order_acq_rel);
		bh->cb(bh);
	}
}

/* ---- timers ---- */

void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop_timer *t))
{
	*t = (struct loop_timer){ .cb = cb };
	loop_link_init(&t->link);
}

bool loop_timer_armed(const struct loop_timer *t)
{
	return t->armed;
}

static struct loop_timer *loop_timer_of(struct loop_link *link)
{
	return container_of(link, struct loop_timer, link);
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	assert(loop_in_owner(l));
	/* t may sit on the due list of loop_run_timers: unlinking works there too. */
	loop_link_del(&t->link);
	t->armed = false;
}

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t deadline_ns)
{
	struct loop_link *pos;

	assert(loop_in_owner(l));
	loop_link_del(&t->link);
	t->deadline_ns = deadline_ns;
	t->armed = true;
	/* Scan from the latest deadline: new timers are usually the latest. */
	for (pos = l->timers.prev; pos != &l->timers; pos = pos->prev)
		if (loop_timer_of(pos)->deadline_ns <= deadline_ns)
			break;
	loop_link_insert_before(pos->next, &t->link);
}

/* Absolute time of the earliest timer, UINT64_MAX when none is armed. */
static uint64_t loop_next_deadline(struct loop *l)
{
	if (loop_link_empty(&l->timers))
		return UINT64_MAX;
	return loop_timer_of(l->timers.next)->deadline_ns;
}

static void loop_run_timers(struct loop *l)
{
	uint64_t now = clock_ns();
	struct loop_link due;
	struct loop_timer *t;

	/* Detach the expired ones first, so a callback that re-arms its timer
	 * at an already-past time runs it on the next pass, not forever now. */
	loop_link_init(&due);
	while (!loop_link_empty(&l->timers)) {
		t = loop_timer_of(l->timers.next);
		if (t->deadline_ns > now)
			break;
		loop_link_del(&t->link);
		loop_link_insert_before(&due, &t->link);
	}
	while (!loop_link_empty(&due)) {
		t = loop_timer_of(due.next);
		loop_link_del(&t->link);
		t->armed = false;
		t->cb(t);
	}
}

/* ---- fd watches ---- */

void loop_fd_init(struct loop_fd *w, int fd, uint32_t events,
		  void (*cb)(struct loop_fd *w, uint32_t revents))
{
	*w = (struct loop_fd){ .fd = fd, .events = events, .cb = cb };
}

static int loop_fd_add_internal(struct loop *l, struct loop_fd *w)
{
	int ret;

	assert(loop_in_owner(l));
	assert(!w->loop);
	ret = l->be->ops->fd_add(l->be, w);
	if (ret < 0)
		return ret;
	w->loop = l;
	return 0;
}

static void loop_fd_del_internal(struct loop *l, struct loop_fd *w)
{
	assert(loop_in_owner(l));
	assert(w->loop == l);
	l->be->ops->fd_del(l->be, w);
	w->loop = NULL;
}

int loop_fd_add(struct loop *l, struct loop_fd *w)
{
	int ret;

	/* The backend would only report a bad fd later, as POLLERR. */
	if (fcntl(w->fd, F_GETFD) < 0)
		return -errno;
	ret = loop_fd_add_internal(l, w);
	if (ret == 0)
		l->n_watches++;
	return ret;
}

void loop_fd_del(struct loop *l, struct loop_fd *w)
{
	loop_fd_del_internal(l, w);
	l->n_watches--;
}

/* ---- block I/O ---- */

static void loop_io_defer(struct loop *l, struct loop_io *io)
{
	io->next = NULL;
	if (l->deferred_tail)
		l->deferred_tail->next = io;
	else
		l->deferred_head = io;
	l->deferred_tail = io;
}

/* Hands io to the backend, keeping submission order behind parked requests. */
static void loop_io_queue(struct loop *l, struct loop_io *io)
{
	if (l->deferred_head || l->be->ops->io_queue(l->be, io) == -EAGAIN)
		loop_io_defer(l, io);
}

static void loop_io_retry_deferred(struct loop *l)
{
	struct loop_io *io;

	while ((io = l->deferred_head)) {
		if (l->be->ops->io_queue(l->be, io) == -EAGAIN)
			return;
		l->deferred_head = io->next;
		if (!l->deferred_head)
			l->deferred_tail = NULL;
	}
}

void loop_io_complete(struct loop *l, struct loop_io *io, int res)
{
	if (res == -EAGAIN || res == -EINTR) {
		loop_io_queue(l, io);
		return;
	}
	l->io_inflight--;
	io->done(io, res);
}

static int loop_io_start(struct loop *l, struct loop_io *io, const struct loop_io *req)
{
	assert(loop_in_owner(l));
	if ((req->op == LOOP_IO_READV || req->op == LOOP_IO_WRITEV) &&
	    (req->niov == 0 || req->niov > LOOP_IOV_MAX))
		return -EINVAL;
	if (req->offset > INT64_MAX || req->len > INT64_MAX - req->offset)
		return -EINVAL;
	*io = *req;
	l->io_inflight++;
	loop_io_queue(l, io);
	return 0;
}

int loop_io_readv(struct loop *l, struct loop_io *io, int fd,
		  const struct iovec *iov, unsigned niov, uint64_t offset,
		  void (*done)(struct loop_io *io, int res))
{
	return loop_io_start(l, io, &(struct loop_io){
		.done = done, .op = LOOP_IO_READV, .fd = fd,
		.iov = iov, .niov = niov, .offset = offset });
}

int loop_io_writev(struct loop *l, struct loop_io *io, int fd,
		   const struct iovec *iov, unsigned niov, uint64_t offset,
		   void (*done)(struct loop_io *io, int res))
{
	return loop_io_start(l, io, &(struct loop_io){
		.done = done, .op = LOOP_IO_WRITEV, .fd = fd,
		.iov = iov, .niov = niov, .offset = offset });
}

int loop_io_fsync(struct loop *l, struct loop_io *io, int fd, bool datasync,
		  void (*done)(struct loop_io *io, int res))
{
	return loop_io_start(l, io, &(struct loop_io){
		.done = done, .op = datasync ? LOOP_IO_FDATASYNC : LOOP_IO_FSYNC,
		.fd = fd });
}

int loop_io_fallocate(struct loop *l, struct loop_io *io, int fd, int mode,
		      uint64_t offset, uint64_t len,
		      void (*done)(struct loop_io *io, int res))
{
	if (len == 0)
		return -EINVAL;
	return loop_io_start(l, io, &(struct loop_io){
		.done = done, .op = LOOP_IO_FALLOCATE, .fd = fd, .mode = mode,
		.offset = offset, .len = len });
}

int loop_io_nop(struct loop *l, struct loop_io *io,
		void (*done)(struct loop_io *io, int res))
{
	return loop_io_start(l, io, &(struct loop_io){ .done = done, .op = LOOP_IO_NOP, .fd = -1 });
}

/* ---- iteration ---- */

/* Spins without syscalls until work shows up (true) or until `until`. */
static bool loop_busy_poll(struct loop *l, uint64_t until)
{
	if (l->be->ops->submit(l->be) < 0)
		return false;
	do {
		if (loop_has_urgent_work(l) || l->be->ops->ready(l->be))
			return true;
		__builtin_ia32_pause();
	} while (clock_ns() < until);
	return false;
}

/*
 * Adapts the window to how long the loop was idle before the last event:
 * keep it when polling caught the event, grow it when the event came soon
 * after the window (a larger one would have caught it), shrink it when the
 * loop idled longer than poll_max_ns (polling only burnt CPU).
 */
static void loop_poll_adapt(struct loop *l, uint64_t idle_ns)
{
	if (idle_ns <= l->poll_ns)
		return;
	if (idle_ns > l->poll_max_ns) {
		l->poll_ns /= 2;
		if (l->poll_ns < LOOP_POLL_START_NS)
			l->poll_ns = 0;
		return;
	}
	l->poll_ns = l->poll_ns ? l->poll_ns * 2 : LOOP_POLL_START_NS;
	if (l->poll_ns > l->poll_max_ns)
		l->poll_ns = l->poll_max_ns;
}

/* Absolute time at which the wait must end: 0 = do not wait. */
static uint64_t loop_wake_time(struct loop *l, uint64_t now)
{
	uint64_t t = loop_next_deadline(l);

	if (loop_has_urgent_work(l))
		return 0;
	if (l->deferred_head && t > now + LOOP_DEFERRED_RETRY_NS)
		t = now + LOOP_DEFERRED_RETRY_NS;
	return t;
}

/* Waits until wake_at (polling first if enabled) and dispatches completions. */
static int loop_wait(struct loop *l, uint64_t wake_at, uint64_t start)
{
	int64_t timeout = 0;
	uint64_t now;
	int ret;

	if (wake_at > start && l->poll_ns &&
	    loop_busy_poll(l, start + l->poll_ns < wake_at ? start + l->poll_ns : wake_at))
		wake_at = 0;
	if (wake_at > start && loop_sleep_prepare(l)) {
		now = clock_ns();
		if (wake_at == UINT64_MAX)
			timeout = -1;
		else if (wake_at > now)
			timeout = (int64_t)(wake_at - now);
	}
	ret = l->be->ops->wait(l->be, timeout);
	loop_sleep_finish(l);
	return ret;
}

static int loop_iterate(struct loop *l, bool block)
{
	uint64_t start, wake_at;
	int ret;

	loop_io_retry_deferred(l);
	start = clock_ns();
	wake_at = block ? loop_wake_time(l, start) : 0;
	ret = loop_wait(l, wake_at, start);
	if (wake_at > start && l->poll_max_ns)
		loop_poll_adapt(l, clock_ns() - start);
	loop_run_bhs(l);
	loop_run_timers(l);
	return ret;
}

int loop_run_once(struct loop *l, bool block)
{
	int ret;

	assert(loop_in_owner(l));
	/* A callback running the loop again would re-enter the dispatchers. */
	assert(!atomic_exchange_explicit(&l->running, true, memory_order_relaxed));
	ret = loop_iterate(l, block);
	atomic_store_explicit(&l->running, false, memory_order_relaxed);
	return ret;
}

int loop_run(struct loop *l)
{
	int ret = 0;

	assert(!atomic_exchange_explicit(&l->running, true, memory_order_relaxed));
	atomic_store_explicit(&l->owner, pthread_self(), memory_order_relaxed);
	while (!atomic_exchange_explicit(&l->stop, false, memory_order_relaxed)) {
		ret = loop_iterate(l, true);
		if (ret < 0) {
			log_msg("loop %s: %s", l->name, strerror(-ret));
			break;
		}
	}
	atomic_store_explicit(&l->running, false, memory_order_relaxed);
	return ret;
}

/* ---- lifetime ---- */

const char *loop_unavailable_reason(int err)
{
	return loop_uring_ops.unavailable_reason(err);
}

int loop_new(const struct loop_params *p, struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));
	int ret;

	if (!l)
		return -ENOMEM;
	snprintf(l->name, sizeof(l->name), "%s", p->name ? p->name : "loop");
	l->poll_max_ns = p->poll_max_ns;
	atomic_init(&l->owner, pthread_self());
	loop_link_init(&l->timers);
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0) {
		ret = -errno;
		goto err_free;
	}
	ret = loop_uring_ops.create(l, &l->be);
	if (ret < 0)
		goto err_close;
	loop_fd_init(&l->wake, l->wake_fd, POLLIN, loop_wake_cb);
	ret = loop_fd_add_internal(l, &l->wake);
	if (ret < 0)
		goto err_backend;
	*out = l;
	return 0;

err_backend:
	l->be->ops->destroy(l->be);
err_close:
	close(l->wake_fd);
err_free:
	free(l);
	return ret;
}

void loop_free(struct loop *l)
{
	if (!l)
		return;
	assert(!atomic_load_explicit(&l->running, memory_order_relaxed));
	assert(l->n_watches == 0);
	assert(l->io_inflight == 0);
	while (atomic_load_explicit(&l->senders, memory_order_acquire))
		sched_yield();
	/* Owner rule relaxed here: after a join the caller may be any thread. */
	atomic_store_explicit(&l->owner, pthread_self(), memory_order_relaxed);
	loop_fd_del_internal(l, &l->wake);
	l->be->ops->destroy(l->be);
	close(l->wake_fd);
	free(l);
}
