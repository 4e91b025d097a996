/*
 * Userspace RCU: the "memory barrier" flavour of liburcu, with QEMU's
 * util/rcu.c as a second model (ideas only, no code taken).
 *
 * Grace periods. rcu_gp_ctr is a 64-bit period number, never 0. A reader
 * entering its outermost section copies it into its own rcu_reader.ctr and
 * stores 0 there on leaving. synchronize_rcu() advances the period by one and
 * waits until each registered reader's ctr is 0 (outside any section) or the
 * new period (it entered after the advance, so it cannot hold a pointer that
 * was removed before synchronize_rcu was called). liburcu flips a one-bit
 * phase twice per grace period because a reader preempted between loading
 * the period and storing it could come back into a phase that looks current;
 * a 64-bit counter never comes round again, so one advance is enough.
 *
 * Threads and ownership:
 *  - A reader thread touches only its own thread-local rcu_reader. ctr is
 *    atomic because writers read it; depth and registered are private.
 *  - synchronize_rcu() callers are serialised by rcu_gp_lock. They walk the
 *    registry under rcu_registry_lock and drop that lock while asleep on
 *    rcu_gp_futex, so threads may register and unregister meanwhile.
 *  - call_rcu() callers push onto a wait-free multi-producer queue. Only the
 *    reclaim thread (started on first use, never stopped) pops it and runs
 *    the callbacks, one batch per grace period.
 *
 * Lock order: rcu_gp_lock, then rcu_registry_lock. rcu_barrier_lock is a
 * leaf. No lock is taken on the read side.
 */
#include "rcu/rcu.h"

#include <assert.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/mutex.h"
#include "core/thread_annot.h"
#include "core/util.h"

/* Polls of the readers before a writer sleeps: enough to cover a reader that
 * is about to leave a short section, short enough not to burn a core. */
#define RCU_GP_SPINS 100

static_assert(sizeof(unsigned long) >= 8, "rcu_gp_ctr must not wrap");

/* EAGAIN (the word no longer holds val) and EINTR both just mean: look
 * again, which every caller does in a loop. */
static void rcu_futex_wait(_Atomic int *word, int val)
{
	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void rcu_futex_wake(_Atomic int *word)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static inline void rcu_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* ---- Readers and grace periods ---- */

static struct mutex rcu_gp_lock = MUTEX_INIT;
static struct mutex rcu_registry_lock = MUTEX_INIT;

struct rcu_reader {
	/* 0 outside any read section, else the period read on entry. Stored
	 * only by the owning thread; loaded by synchronize_rcu. */
	_Atomic unsigned long ctr;
	/* Owning thread only. */
	unsigned int depth;
	bool registered;
	/* Links in the registry, or in a writer's list of finished readers
	 * while it waits; pprev lets unregister unlink from either. */
	struct rcu_reader *next GUARDED_BY(rcu_registry_lock);
	struct rcu_reader **pprev GUARDED_BY(rcu_registry_lock);
};

static _Thread_local struct rcu_reader rcu_reader;
/* Set on the reclaim thread, where rcu_barrier would wait for itself. */
static _Thread_local bool rcu_on_reclaim_thread;

/* Current period. Stored only under rcu_gp_lock; loaded by any reader. */
static _Atomic unsigned long rcu_gp_ctr = 1;
/* -1 while a writer is asleep (or about to sleep) waiting for readers. */
static _Atomic int rcu_gp_futex;
static struct rcu_reader *rcu_registry GUARDED_BY(rcu_registry_lock);

static void rcu_list_add(struct rcu_reader **head, struct rcu_reader *r)
	REQUIRES(rcu_registry_lock)
{
	r->next = *head;
	if (r->next)
		r->next->pprev = &r->next;
	r->pprev = head;
	*head = r;
}

static void rcu_list_del(struct rcu_reader *r) REQUIRES(rcu_registry_lock)
{
	*r->pprev = r->next;
	if (r->next)
		r->next->pprev = r->pprev;
}

void rcu_register_thread(void)
{
	assert(!rcu_reader.registered && "rcu_register_thread called twice");
	mutex_lock(&rcu_registry_lock);
	rcu_list_add(&rcu_registry, &rcu_reader);
	mutex_unlock(&rcu_registry_lock);
	rcu_reader.registered = true;
}

void rcu_unregister_thread(void)
{
	assert(rcu_reader.registered && "rcu_unregister_thread without register");
	assert(rcu_reader.depth == 0 && "rcu_unregister_thread inside a read section");
	mutex_lock(&rcu_registry_lock);
	rcu_list_del(&rcu_reader);
	mutex_unlock(&rcu_registry_lock);
	rcu_reader.registered = false;
}

void rcu_read_lock(void)
{
	struct rcu_reader *r = &rcu_reader;
	unsigned long gp;

	assert(r->registered && "rcu_read_lock on an unregistered thread");
	if (r->depth++ > 0)
		return;
	gp = atomic_load_explicit(&rcu_gp_ctr, memory_order_relaxed);
	/* release: pairs with the acquire in rcu_reader_done. A writer that
	 * sees us in its new period must also see our previous section over,
	 * since it will not look at us again before freeing. */
	atomic_store_explicit(&r->ctr, gp, memory_order_release);
	/* seq_cst: pairs with the fence in synchronize_rcu (store buffering):
	 * either its scan sees the ctr just stored, or every load in this
	 * section sees the removal made before synchronize_rcu. As an acquire
	 * fence it also makes a new period read above carry that removal. */
	atomic_thread_fence(memory_order_seq_cst);
}

static void rcu_gp_wake(void)
{
	atomic_store_explicit(&rcu_gp_futex, 0, memory_order_relaxed);
	rcu_futex_wake(&rcu_gp_futex);
}

void rcu_read_unlock(void)
{
	struct rcu_reader *r = &rcu_reader;

	assert(r->depth > 0 && "rcu_read_unlock without rcu_read_lock");
	if (--r->depth > 0)
		return;
	/* release: pairs with the acquire in rcu_reader_done; every access
	 * of the section is done before a writer can see us quiescent. */
	atomic_store_explicit(&r->ctr, 0, memory_order_release);
	/* seq_cst: pairs with the fence in rcu_gp_sleep. Either the writer's
	 * rescan sees ctr == 0, or we see its -1 here and wake it. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&rcu_gp_futex, memory_order_relaxed) == -1)
		rcu_gp_wake();
}

/* True when r cannot hold a pointer removed before period gp began. */
static bool rcu_reader_done(struct rcu_reader *r, unsigned long gp)
{
	/* acquire: pairs with the release stores in rcu_read_lock and
	 * rcu_read_unlock, so the reader's finished section happens-before
	 * what the synchronize_rcu caller does next (typically free). */
	unsigned long c = atomic_load_explicit(&r->ctr, memory_order_acquire);

	return c == 0 || c == gp;
}

/* Moves the readers of rcu_registry that are done onto *done. Returns true
 * when none is left to wait for. */
static bool rcu_scan(struct rcu_reader **done, unsigned long gp) REQUIRES(rcu_registry_lock)
{
	struct rcu_reader *r, *next;

	for (r = rcu_registry; r; r = next) {
		next = r->next;
		if (rcu_reader_done(r, gp)) {
			rcu_list_del(r);
			rcu_list_add(done, r);
		}
	}
	return rcu_registry == NULL;
}

/* One sleep on rcu_gp_futex, unless a rescan finds every reader done. The
 * registry lock is dropped while asleep. */
static void rcu_gp_sleep(struct rcu_reader **done, unsigned long gp) REQUIRES(rcu_registry_lock)
{
	atomic_store_explicit(&rcu_gp_futex, -1, memory_order_relaxed);
	/* seq_cst: pairs with the fence in rcu_read_unlock. Either the rescan
	 * sees that reader's ctr == 0, or the reader sees -1 and wakes us.
	 * Every reader that changes the word back to 0 then wakes us, so the
	 * futex wait cannot miss it. */
	atomic_thread_fence(memory_order_seq_cst);
	if (rcu_scan(done, gp))
		return;
	mutex_unlock(&rcu_registry_lock);
	rcu_futex_wait(&rcu_gp_futex, -1);
	mutex_lock(&rcu_registry_lock);
}

static void rcu_wait_readers(unsigned long gp) REQUIRES(rcu_registry_lock)
{
	struct rcu_reader *done = NULL, *r;
	int polls;

	for (polls = 0; !rcu_scan(&done, gp); polls++) {
		if (polls < RCU_GP_SPINS)
			rcu_cpu_relax();
		else
			rcu_gp_sleep(&done, gp);
	}
	atomic_store_explicit(&rcu_gp_futex, 0, memory_order_relaxed);
	while ((r = done)) {
		rcu_list_del(r);
		rcu_list_add(&rcu_registry, r);
	}
}

void synchronize_rcu(void)
{
	unsigned long gp;

	assert(rcu_reader.depth == 0 && "synchronize_rcu inside a read section");
	mutex_lock(&rcu_gp_lock);
	mutex_lock(&rcu_registry_lock);
	/* seq_cst: pairs with the fence in rcu_read_lock (store buffering):
	 * the caller's removal is ordered before our loads of each ctr, so a
	 * reader whose ctr store we miss sees the removal. As a release fence
	 * it also orders the removal before the advance below, for a reader
	 * that reads the new period (its fence is the acquire). */
	atomic_thread_fence(memory_order_seq_cst);
	gp = atomic_load_explicit(&rcu_gp_ctr, memory_order_relaxed) + 1;
	atomic_store_explicit(&rcu_gp_ctr, gp, memory_order_relaxed);
	rcu_wait_readers(gp);
	mutex_unlock(&rcu_registry_lock);
	mutex_unlock(&rcu_gp_lock);
}

/* ---- call_rcu: a wait-free multi-producer, single-consumer queue ----
 *
 * Producers exchange themselves into rcu_cb_tail, then link the previous
 * tail to themselves. Between those two steps the chain is broken, and the
 * consumer waits for the link. A stub node keeps the queue non-empty so the
 * consumer can always detach the node it returns.
 */

static struct rcu_head rcu_cb_stub;
/* Oldest node; reclaim thread only. */
static struct rcu_head *rcu_cb_head = &rcu_cb_stub;
static _Atomic(struct rcu_head *) rcu_cb_tail = &rcu_cb_stub;
/* Callbacks linked and not yet run; the reclaim thread sleeps on it at 0. */
static _Atomic int rcu_cb_pending;

static pthread_once_t rcu_reclaim_once = PTHREAD_ONCE_INIT;

static void rcu_cb_push(struct rcu_head *h)
{
	struct rcu_head *prev;

	atomic_store_explicit(&h->next, NULL, memory_order_relaxed);
	/* acq_rel: the release half pairs with the acquire half of the next
	 * producer's exchange, so our NULL store above is ordered before its
	 * link store into h->next. */
	prev = atomic_exchange_explicit(&rcu_cb_tail, h, memory_order_acq_rel);
	/* release: pairs with the acquire loads of ->next in rcu_cb_pop; h's
	 * func and next are set before the consumer can reach h. */
	atomic_store_explicit(&prev->next, h, memory_order_release);
}

/* Returns the oldest linked node, or NULL if none is reachable yet. */
static struct rcu_head *rcu_cb_pop(void)
{
	struct rcu_head *h = rcu_cb_head;
	/* acquire (all three loads): pairs with the release link store in
	 * rcu_cb_push. */
	struct rcu_head *next = atomic_load_explicit(&h->next, memory_order_acquire);

	if (h == &rcu_cb_stub) {
		if (!next)
			return NULL;
		rcu_cb_head = h = next;
		next = atomic_load_explicit(&h->next, memory_order_acquire);
	}
	if (!next) {
		/* h looks last. If a producer is mid-push behind it, wait for
		 * its link; else queue the stub behind h so h can leave. */
		if (atomic_load_explicit(&rcu_cb_tail, memory_order_relaxed) != h)
			return NULL;
		rcu_cb_push(&rcu_cb_stub);
		next = atomic_load_explicit(&h->next, memory_order_acquire);
		if (!next)
			return NULL;
	}
	rcu_cb_head = next;
	return h;
}

/* Waits for callbacks to be queued; returns how many are. */
static int rcu_cb_wait(void)
{
	int n;

	/* acquire: pairs with the release increment in call_rcu. Each counted
	 * callback's object was removed before the grace period that the
	 * caller starts next. */
	while ((n = atomic_load_explicit(&rcu_cb_pending, memory_order_acquire)) == 0)
		rcu_futex_wait(&rcu_cb_pending, 0);
	return n;
}

/* Runs the n oldest callbacks. Any node among the n oldest was pushed before
 * some counted node (queue order is exchange order), so it is covered by the
 * grace period that followed rcu_cb_wait. */
static void rcu_cb_run(int n)
{
	struct rcu_head *h;
	int i;

	for (i = 0; i < n; i++) {
		/* NULL only while a producer sits between its exchange and
		 * its link store: one store away, so yielding is enough. */
		while (!(h = rcu_cb_pop()))
			sched_yield();
		h->func(h);
	}
	atomic_fetch_sub_explicit(&rcu_cb_pending, n, memory_order_relaxed);
}

static void *rcu_reclaim_thread(void *arg)
{
	pthread_setname_np(pthread_self(), "rcu-reclaim");
	rcu_register_thread();
	rcu_on_reclaim_thread = true;
	for (;;) {
		int n = rcu_cb_wait();

		synchronize_rcu();
		rcu_cb_run(n);
	}
	return NULL;
}

/* Starts the reclaim thread with every signal blocked, so signals aimed at
 * the process (or vCPU kicks) are never delivered to it. */
static void rcu_reclaim_start(void)
{
	sigset_t all, old;
	pthread_t tid;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&tid, NULL, rcu_reclaim_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		die("rcu: cannot start the reclaim thread: %s", strerror(err));
	pthread_detach(tid);
}

void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head))
{
	pthread_once(&rcu_reclaim_once, rcu_reclaim_start);
	head->func = func;
	rcu_cb_push(head);
	/* release: pairs with the acquire load in rcu_cb_wait; the caller's
	 * removal and our link happen-before the reclaim thread counts us. */
	if (atomic_fetch_add_explicit(&rcu_cb_pending, 1, memory_order_release) == 0)
		rcu_futex_wake(&rcu_cb_pending);
}

/* ---- rcu_barrier ---- */

static struct mutex rcu_barrier_lock = MUTEX_INIT;
static pthread_cond_t rcu_barrier_cond = PTHREAD_COND_INITIALIZER;

/* Lives on the rcu_barrier caller's stack until done is seen true. */
struct rcu_barrier_req {
	struct rcu_head head;
	bool done GUARDED_BY(rcu_barrier_lock);
};

/* Runs on the reclaim thread after every callback queued before it. The
 * request must not be touched after the unlock: its owner may return. */
static void rcu_barrier_cb(struct rcu_head *head)
{
	struct rcu_barrier_req *req = container_of(head, struct rcu_barrier_req, head);

	mutex_lock(&rcu_barrier_lock);
	req->done = true;
	pthread_cond_broadcast(&rcu_barrier_cond);
	mutex_unlock(&rcu_barrier_lock);
}

void rcu_barrier(void)
{
	struct rcu_barrier_req req = { .done = false };

	assert(rcu_reader.depth == 0 && "rcu_barrier inside a read section");
	assert(!rcu_on_reclaim_thread && "rcu_barrier from an RCU callback");
	call_rcu(&req.head, rcu_barrier_cb);
	mutex_lock(&rcu_barrier_lock);
	while (!req.done)
		mutex_cond_wait(&rcu_barrier_cond, &rcu_barrier_lock);
	mutex_unlock(&rcu_barrier_lock);
}
