/*
 * Private interface between the generic loop (core/loop.c: timers, BHs,
 * ownership, busy-polling) and the kernel interface that watches fds and runs
 * I/O (core/loop_uring.c; an epoll fallback may follow). Only loop.c and the
 * backends include this file.
 *
 * Every op except create and unavailable_reason runs in the loop's owner
 * thread, never concurrently with another op of the same backend.
 */
#ifndef CORE_LOOP_BACKEND_H
#define CORE_LOOP_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "core/loop.h"

/* Generic header embedded in each backend's state (container_of). */
struct loop_backend {
	const struct loop_backend_ops *ops;
	struct loop *loop;	/* the loop this backend serves; set by create */
};

struct loop_backend_ops {
	/* Allocates the backend for l. Creating thread. 0 and *out, or -errno. */
	int (*create)(struct loop *l, struct loop_backend **out);
	/* Releases everything, including the state of watches never removed. */
	void (*destroy)(struct loop_backend *be);
	/* See loop_unavailable_reason; any thread. */
	const char *(*unavailable_reason)(int err);
	/* Starts a persistent, edge-triggered watch; w->backend is the
	 * backend's to use. 0 or -errno. */
	int (*fd_add)(struct loop_backend *be, struct loop_fd *w);
	/* After this returns w->cb is never called and w may be freed, even
	 * for events the backend already collected in the current wait. */
	void (*fd_del)(struct loop_backend *be, struct loop_fd *w);
	/* Queues io (fields already filled) for the next submit. 0, or -EAGAIN
	 * when there is no room: loop.c keeps it and retries after a wait. */
	int (*io_queue)(struct loop_backend *be, struct loop_io *io);
	/* Hands queued work to the kernel without waiting. 0 or -errno. */
	int (*submit)(struct loop_backend *be);
	/* True when completions wait to be dispatched; no syscall (busy-poll). */
	bool (*ready)(struct loop_backend *be);
	/*
	 * Submits queued work, waits up to timeout_ns (0: not at all, <0:
	 * forever) for at least one event, then dispatches what arrived:
	 * w->cb(w, revents) for watches, loop_io_complete for I/O. A signal or
	 * a timeout is not an error. 0 or -errno when the backend is broken.
	 */
	int (*wait)(struct loop_backend *be, int64_t timeout_ns);
};

extern const struct loop_backend_ops loop_uring_ops;

static inline void loop_link_init(struct loop_link *head)
{
	head->prev = head->next = head;
}

static inline bool loop_link_empty(const struct loop_link *head)
{
	return head->next == head;
}

/* Inserts node just before pos (at the tail when pos is the list head). */
static inline void loop_link_insert_before(struct loop_link *pos, struct loop_link *node)
{
	node->prev = pos->prev;
	node->next = pos;
	pos->prev->next = node;
	pos->prev = node;
}

static inline void loop_link_del(struct loop_link *node)
{
	node->prev->next = node->next;
	node->next->prev = node->prev;
	node->prev = node->next = node;
}

/* Called by wait() for each finished request, in the owner thread. */
void loop_io_complete(struct loop *l, struct loop_io *io, int res);

#endif
