/*
 * Event loop ("AioContext"): one per thread, io_uring underneath.
 *
 * A loop is owned by one thread. Before the first loop_run the creating thread
 * owns it and may add fds, arm timers and queue I/O; loop_run (or loop_run_once)
 * makes the calling thread the owner. Every callback runs in the owner thread,
 * never nested: a callback must not call loop_run or loop_run_once (asserted).
 * "Wait for completion" is a state machine driven by callbacks, or a teardown
 * loop of loop_run_once outside any callback.
 *
 * Only loop_bh_schedule, loop_stop, loop_in_owner, loop_unavailable_reason
 * and the *_init helpers may be called from any thread. Everything else is
 * owner-only and asserts it.
 *
 * Nothing on the hot path allocates: watches, timers, BHs and I/O requests are
 * embedded by the caller in its own object (recovered with container_of) and
 * must stay alive while registered, armed, scheduled or in flight.
 */
#ifndef CORE_LOOP_H
#define CORE_LOOP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct loop;

/* Intrusive doubly linked list node; private to the loop. */
struct loop_link {
	struct loop_link *prev, *next;
};

struct loop_params {
	const char *name;	/* for messages; copied */
	uint64_t poll_max_ns;	/* adaptive busy-poll window; 0 = never poll */
};

/*
 * Creates a loop owned by the calling thread. Returns 0 and *out, or -errno.
 * When io_uring is unavailable on this host (-ENOSYS, -EPERM, ...),
 * loop_unavailable_reason(err) gives a line to print; loop_new logs nothing.
 */
int loop_new(const struct loop_params *p, struct loop **out);

/*
 * Frees the loop. Called by the owner outside loop_run, or by any thread once
 * the owner thread has been joined. Every fd watch must have been removed and
 * no I/O may be in flight (asserted). Armed timers and pending BHs are
 * forgotten, never run. Waits for threads still inside loop_bh_schedule or
 * loop_stop on l (their BH may have run already).
 */
void loop_free(struct loop *l);

/*
 * One line explaining why loop_new failed with err when the cause is that
 * io_uring is blocked or missing on this host (seccomp, the
 * kernel.io_uring_disabled sysctl, an old kernel); NULL for other errors.
 * Any thread; the string lives until the calling thread's next call.
 */
const char *loop_unavailable_reason(int err);

/*
 * Runs the loop until loop_stop. The calling thread becomes the owner.
 * Must not be called from a callback or while another thread runs the loop
 * (asserted). Returns 0 after loop_stop, or -errno if the backend failed.
 */
int loop_run(struct loop *l);

/*
 * One iteration: runs due BHs, timers and completions; if `block` and nothing
 * is due, first waits (after busy-polling, if enabled) for the next event.
 * Owner thread only, never from a callback (asserted). Returns 0 or -errno.
 */
int loop_run_once(struct loop *l, bool block);

/*
 * Asks loop_run to return. Any thread, including a callback of l. If the loop
 * is not running, the next loop_run returns at once. Work scheduled
 * concurrently with the stop may or may not run before loop_run returns.
 */
void loop_stop(struct loop *l);

/* True when the calling thread owns l. Any thread. */
bool loop_in_owner(const struct loop *l);

/*
 * fd readiness watch. Set fd, events (POLLIN, POLLOUT, POLLPRI from <poll.h>)
 * and cb with loop_fd_init. cb(w, revents) gets poll(2) bits; POLLHUP and
 * POLLERR are always reported, so a closed pipe reaches cb once and the user
 * removes the watch.
 *
 * Edge-triggered: cb runs when the fd becomes ready (each new arrival of data,
 * each wakeup), not while it stays ready. cb must read until EAGAIN (use
 * O_NONBLOCK fds) or accept that leftover data waits for the next arrival.
 */
struct loop_fd {
	int fd;
	uint32_t events;
	void (*cb)(struct loop_fd *w, uint32_t revents);
	/* private, owner thread only */
	struct loop *loop;	/* non-NULL while added */
	void *backend;		/* the backend's per-watch state */
};

void loop_fd_init(struct loop_fd *w, int fd, uint32_t events,
		  void (*cb)(struct loop_fd *w, uint32_t revents));

/*
 * Starts watching w->fd. Owner thread. w must not already be added and stays
 * owned by the loop until loop_fd_del. Returns 0 or -errno (-EBADF for a bad
 * fd, -EAGAIN when the kernel refuses more requests right now). Should the
 * kernel later give up on the watch, cb gets POLLERR once and no more events.
 */
int loop_fd_add(struct loop *l, struct loop_fd *w);

/*
 * Stops watching. Owner thread, may be called from any callback including
 * w's own. cb never runs again once this returns, and the caller may free w
 * and close the fd at once.
 */
void loop_fd_del(struct loop *l, struct loop_fd *w);

/* Timer on the clock_ns() clock (CLOCK_MONOTONIC, util.h). Owner thread only. */
struct loop_timer {
	void (*cb)(struct loop_timer *t);
	/* private */
	uint64_t deadline_ns;
	struct loop_link link;	/* in the loop's deadline-sorted list while armed */
	bool armed;
};

void loop_timer_init(struct loop_timer *t, void (*cb)(struct loop_timer *t));

/*
 * Arms t to fire once at deadline_ns (absolute clock_ns() time; a past
 * deadline fires on the next iteration). Re-arming an armed timer moves it.
 * Timers fire in deadline order, never early; equal deadlines fire in arming
 * order. cb may re-arm t. Owner thread only.
 */
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t deadline_ns);

/* Disarms t if armed; cb will not run. Owner thread only. */
void loop_timer_cancel(struct loop *l, struct loop_timer *t);

/* True while t is armed. Owner thread only. */
bool loop_timer_armed(const struct loop_timer *t);

/*
 * Bottom half: a callback any thread can ask the owner thread to run soon.
 * Scheduling a pending BH again is a no-op, so cb runs once per burst of
 * schedules; a schedule that happens while cb runs makes it run again.
 */
struct loop_bh {
	void (*cb)(struct loop_bh *bh);
	/* private */
	atomic_uint scheduled;		/* 1 from schedule until cb starts */
	struct loop_bh *next;		/* written by the scheduler that set
					 * scheduled, read by the owner */
};

void loop_bh_init(struct loop_bh *bh, void (*cb)(struct loop_bh *bh));

/*
 * Queues bh to run in l's owner thread and wakes the loop. Any thread,
 * lock-free, no allocation. Writes made before the call are visible to cb.
 * If bh is already pending (on any loop) it runs once, where it was first
 * queued. bh must stay alive until cb has started; loop_free drops pending
 * BHs unrun.
 */
void loop_bh_schedule(struct loop *l, struct loop_bh *bh);

/*
 * Asynchronous block I/O. done(io, res) runs in the owner thread with the
 * byte count (which may be short: EOF or a partial transfer, the caller
 * decides) or -errno. -EAGAIN and -EINTR are retried by the loop and never
 * reach done. io, the iovec array and the buffers must stay alive and
 * unchanged until done runs; io may be reused from done.
 */
enum loop_io_op {
	LOOP_IO_READV,
	LOOP_IO_WRITEV,
	LOOP_IO_FSYNC,
	LOOP_IO_FDATASYNC,
	LOOP_IO_FALLOCATE,
	LOOP_IO_NOP,
};

struct loop_io {
	void (*done)(struct loop_io *io, int res);
	/* private, owner thread only */
	enum loop_io_op op;
	int fd;
	int mode;			/* fallocate */
	const struct iovec *iov;
	unsigned niov;
	uint64_t offset;
	uint64_t len;			/* fallocate */
	struct loop_io *next;		/* in the loop's deferred queue */
};

/*
 * Each queues one request; the loop submits every queued request in one
 * batch per iteration. Owner thread only. Return 0 (done will run exactly
 * once) or -errno (done will not run). A full submission queue is not an
 * error: the request waits in the loop until there is room.
 */
int loop_io_readv(struct loop *l, struct loop_io *io, int fd,
		  const struct iovec *iov, unsigned niov, uint64_t offset,
		  void (*done)(struct loop_io *io, int res));
int loop_io_writev(struct loop *l, struct loop_io *io, int fd,
		   const struct iovec *iov, unsigned niov, uint64_t offset,
		   void (*done)(struct loop_io *io, int res));
/* fdatasync when datasync, else fsync. */
int loop_io_fsync(struct loop *l, struct loop_io *io, int fd, bool datasync,
		  void (*done)(struct loop_io *io, int res));
/* fallocate(2) mode flags (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, ...). */
int loop_io_fallocate(struct loop *l, struct loop_io *io, int fd, int mode,
		      uint64_t offset, uint64_t len,
		      void (*done)(struct loop_io *io, int res));
/* Does nothing and completes with res 0, through the kernel like real I/O
 * (same batching, same completion path): for backends without a file. */
int loop_io_nop(struct loop *l, struct loop_io *io,
		void (*done)(struct loop_io *io, int res));

#endif
