/*
 * io_uring backend of the event loop: one ring per loop. fd watches are
 * multishot IORING_OP_POLL_ADD requests (re-armed when the kernel ends one),
 * block I/O is READV/WRITEV/FSYNC/FALLOCATE (and NOP), and the wait is one
 * io_uring_enter that submits everything queued since the last wait and
 * sleeps with a relative timeout (IORING_FEAT_EXT_ARG, no timeout CQE).
 *
 * The ring accepts only those opcodes (IORING_REGISTER_RESTRICTIONS).
 *
 * Threads: all of it runs in the loop's owner thread (see loop_backend.h),
 * except loop_uring_unavailable_reason. liburing returns -errno and errno is
 * never read after a liburing call.
 *
 * A CQE's user_data is a pointer tagged in its low bits: a struct uring_poll,
 * a struct loop_io, or 0 for the POLL_REMOVE requests, whose CQEs are ignored.
 * Watches point through a malloc'd uring_poll, not at the caller's loop_fd,
 * because the kernel may post CQEs for a watch after loop_fd_del returned.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/loop_backend.h"
#include "core/util.h"

#define URING_SQ_ENTRIES 128
#define URING_CQ_ENTRIES 1024
/* CQEs dispatched per wait, so a flood of completions cannot starve BHs
 * and timers. */
#define URING_DISPATCH_MAX URING_CQ_ENTRIES

#define URING_TAG_POLL 1UL
#define URING_TAG_IO 2UL
#define URING_TAG_MASK 3UL

struct uring_backend {
	struct loop_backend be;
	struct io_uring ring;
	struct loop_link polls;		/* every uring_poll not yet freed */
};

/* One watch's multishot poll; lives until its last CQE (no F_MORE). */
struct uring_poll {
	struct loop_fd *w;		/* NULL once the watch was removed */
	struct loop_link link;		/* in uring_backend.polls */
	bool armed;			/* the kernel holds a request for it */
};

static struct uring_backend *uring_of(struct loop_backend *be)
{
	return container_of(be, struct uring_backend, be);
}

/* A free SQE, submitting the full queue first if needed; NULL when the
 * kernel takes no more right now. */
static struct io_uring_sqe *uring_get_sqe(struct uring_backend *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	int ret;

	if (sqe)
		return sqe;
	ret = io_uring_submit(&u->ring);
	if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -EINTR)
		log_msg("loop: io_uring_submit: %s", strerror(-ret));
	return io_uring_get_sqe(&u->ring);
}

static int uring_poll_arm(struct uring_backend *u, struct uring_poll *p)
{
	struct io_uring_sqe *sqe = uring_get_sqe(u);

	if (!sqe)
		return -EAGAIN;
	io_uring_prep_poll_multishot(sqe, p->w->fd, p->w->events);
	io_uring_sqe_set_data64(sqe, (uintptr_t)p | URING_TAG_POLL);
	p->armed = true;
	return 0;
}

static int uring_fd_add(struct loop_backend *be, struct loop_fd *w)
{
	struct uring_backend *u = uring_of(be);
	struct uring_poll *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	p->w = w;
	ret = uring_poll_arm(u, p);
	if (ret < 0) {
		free(p);
		return ret;
	}
	loop_link_insert_before(&u->polls, &p->link);
	w->backend = p;
	return 0;
}

static void uring_poll_free(struct uring_poll *p)
{
	loop_link_del(&p->link);
	free(p);
}

static void uring_fd_del(struct loop_backend *be, struct loop_fd *w)
{
	struct uring_backend *u = uring_of(be);
	struct uring_poll *p = w->backend;
	struct io_uring_sqe *sqe;

	w->backend = NULL;
	p->w = NULL;
	if (!p->armed) {
		uring_poll_free(p);
		return;
	}
	/* p is freed when the cancelled request posts its last CQE. */
	sqe = uring_get_sqe(u);
	if (!sqe) {
		log_msg("loop: no SQE to cancel the poll on fd %d; it stays until loop_free",
			w->fd);
		return;
	}
	io_uring_prep_poll_remove(sqe, (uintptr_t)p | URING_TAG_POLL);
	io_uring_sqe_set_data64(sqe, 0);
}

/*
 * A poll CQE: res is the ready mask, or -errno when the kernel ended the
 * request. Without F_MORE the request is over: re-arm it for a live watch
 * that got a mask (the kernel may end a multishot, e.g. on CQ overflow),
 * report POLLERR for one that got an error, free it for a removed one.
 */
static void uring_poll_event(struct uring_backend *u, struct uring_poll *p,
			     int res, uint32_t flags)
{
	struct loop_fd *w = p->w;

	if (!(flags & IORING_CQE_F_MORE))
		p->armed = false;
	if (!w) {
		if (!p->armed)
			uring_poll_free(p);
		return;
	}
	if (res < 0) {
		log_msg("loop: poll on fd %d ended: %s", w->fd, strerror(-res));
		w->cb(w, POLLERR);
		return;
	}
	if (!p->armed && uring_poll_arm(u, p) < 0) {
		log_msg("loop: cannot re-arm the poll on fd %d", w->fd);
		res |= POLLERR;
	}
	/* Last use of p: cb may remove the watch and free it. */
	w->cb(w, (uint32_t)res);
}

static void uring_dispatch_one(struct uring_backend *u, uint64_t data, int res,
			       uint32_t flags)
{
	void *ptr = (void *)(uintptr_t)(data & ~(uint64_t)URING_TAG_MASK);

	switch (data & URING_TAG_MASK) {
	case URING_TAG_POLL:
		uring_poll_event(u, ptr, res, flags);
		break;
	case URING_TAG_IO:
		loop_io_complete(u->be.loop, ptr, res);
		break;
	default:
		break;
	}
}

/* Consumes each CQE before its callback runs, so callbacks may queue new
 * work (and even submit, when the SQ is full) freely. */
static void uring_dispatch(struct uring_backend *u)
{
	struct io_uring_cqe *cqe;
	uint64_t data;
	uint32_t flags;
	int res, n;

	for (n = 0; n < URING_DISPATCH_MAX; n++) {
		if (io_uring_peek_cqe(&u->ring, &cqe) < 0)
			return;
		data = cqe->user_data;
		res = cqe->res;
		flags = cqe->flags;
		io_uring_cqe_seen(&u->ring, cqe);
		uring_dispatch_one(u, data, res, flags);
	}
}

static int uring_wait(struct loop_backend *be, int64_t timeout_ns)
{
	struct uring_backend *u = uring_of(be);
	struct __kernel_timespec ts = {
		.tv_sec = timeout_ns / 1000000000,
		.tv_nsec = timeout_ns % 1000000000,
	};
	struct io_uring_cqe *cqe;
	int ret;

	if (timeout_ns == 0)
		ret = io_uring_sq_ready(&u->ring) ? io_uring_submit(&u->ring) : 0;
	else
		ret = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1,
						       timeout_ns < 0 ? NULL : &ts, NULL);
	/* Timeouts, signals and a momentarily busy kernel only end the wait. */
	if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
		return ret;
	uring_dispatch(u);
	return 0;
}

static int uring_submit(struct loop_backend *be)
{
	struct uring_backend *u = uring_of(be);
	int ret;

	if (!io_uring_sq_ready(&u->ring))
		return 0;
	ret = io_uring_submit(&u->ring);
	return ret < 0 && ret != -EAGAIN && ret != -EBUSY ? ret : 0;
}

static bool uring_ready(struct loop_backend *be)
{
	struct uring_backend *u = uring_of(be);

	return io_uring_cq_ready(&u->ring) || io_uring_cq_has_overflow(&u->ring);
}

static int uring_io_queue(struct loop_backend *be, struct loop_io *io)
{
	struct io_uring_sqe *sqe = uring_get_sqe(uring_of(be));

	if (!sqe)
		return -EAGAIN;
	switch (io->op) {
	case LOOP_IO_READV:
		io_uring_prep_readv(sqe, io->fd, io->iov, io->niov, io->offset);
		break;
	case LOOP_IO_WRITEV:
		io_uring_prep_writev(sqe, io->fd, io->iov, io->niov, io->offset);
		break;
	case LOOP_IO_FSYNC:
		io_uring_prep_fsync(sqe, io->fd, 0);
		break;
	case LOOP_IO_FDATASYNC:
		io_uring_prep_fsync(sqe, io->fd, IORING_FSYNC_DATASYNC);
		break;
	case LOOP_IO_FALLOCATE:
		io_uring_prep_fallocate(sqe, io->fd, io->mode, (off_t)io->offset,
					(off_t)io->len);
		break;
	case LOOP_IO_NOP:
		io_uring_prep_nop(sqe);
		break;
	}
	io_uring_sqe_set_data64(sqe, (uintptr_t)io | URING_TAG_IO);
	return 0;
}

/* io_uring_register(2). Debian's liburing.so 2.3 does not export
 * io_uring_register_restrictions or io_uring_enable_rings (liburing.a does),
 * so sanitizer builds, which link the .so, need the raw call. */
static int uring_register(struct io_uring *ring, unsigned op, const void *arg, unsigned n)
{
	long ret = syscall(__NR_io_uring_register, ring->ring_fd, op, arg, n);

	return ret < 0 ? -errno : 0;
}

/* Limits the ring to the opcodes above, then enables it (created disabled). */
static int uring_restrict(struct io_uring *ring)
{
	static const uint8_t ops[] = {
		IORING_OP_POLL_ADD, IORING_OP_POLL_REMOVE, IORING_OP_READV,
		IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE, IORING_OP_NOP,
	};
	struct io_uring_restriction res[ARRAY_SIZE(ops)];
	unsigned i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(ops); i++)
		res[i] = (struct io_uring_restriction){
			.opcode = IORING_RESTRICTION_SQE_OP, .sqe_op = ops[i] };
	ret = uring_register(ring, IORING_REGISTER_RESTRICTIONS, res, ARRAY_SIZE(res));
	if (ret < 0)
		return ret;
	return uring_register(ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
}

static int uring_create(struct loop *l, struct loop_backend **out)
{
	struct uring_backend *u = calloc(1, sizeof(*u));
	struct io_uring_params params = {
		.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
			 IORING_SETUP_R_DISABLED,
		.cq_entries = URING_CQ_ENTRIES,
	};
	int ret;

	if (!u)
		return -ENOMEM;
	ret = io_uring_queue_init_params(URING_SQ_ENTRIES, &u->ring, &params);
	if (ret < 0)
		goto err_free;
	/* NODROP: CQEs are never lost; EXT_ARG: waits need no timeout SQE. */
	ret = -EOPNOTSUPP;
	if (!(params.features & IORING_FEAT_NODROP) || !(params.features & IORING_FEAT_EXT_ARG))
		goto err_exit;
	ret = uring_restrict(&u->ring);
	if (ret < 0)
		goto err_exit;
	u->be = (struct loop_backend){ .ops = &loop_uring_ops, .loop = l };
	loop_link_init(&u->polls);
	*out = &u->be;
	return 0;

err_exit:
	io_uring_queue_exit(&u->ring);
err_free:
	free(u);
	return ret;
}

static void uring_destroy(struct loop_backend *be)
{
	struct uring_backend *u = uring_of(be);

	/* Exiting the ring cancels the polls still held by the kernel. */
	io_uring_queue_exit(&u->ring);
	while (!loop_link_empty(&u->polls))
		uring_poll_free(container_of(u->polls.next, struct uring_poll, link));
	free(u);
}

/* kernel.io_uring_disabled (Linux 6.6+): 0, 1 or 2; -1 when absent. */
static int uring_sysctl_disabled(void)
{
	char buf[8] = "";
	int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 && buf[0] >= '0' && buf[0] <= '2' ? buf[0] - '0' : -1;
}

static const char *uring_blocker(int err)
{
	int disabled = uring_sysctl_disabled();

	if (disabled == 2)
		return "kernel.io_uring_disabled=2 turns it off for every process";
	if (disabled == 1 && err == -EPERM)
		return "kernel.io_uring_disabled=1 allows it only to CAP_SYS_ADMIN "
		       "and kernel.io_uring_group";
	if (err == -ENOSYS)
		return "the kernel lacks io_uring, or a seccomp profile such as "
		       "Docker's default blocks it";
	return "a seccomp profile such as Docker's default blocks it";
}

static const char *uring_unavailable_reason(int err)
{
	static __thread char line[256];

	if (err == -EOPNOTSUPP)
		return "io_uring is too old here (Linux 5.11 or later is needed for "
		       "IORING_FEAT_NODROP and IORING_FEAT_EXT_ARG); no fallback event loop yet";
	if (err != -EPERM && err != -ENOSYS && err != -EACCES)
		return NULL;
	snprintf(line, sizeof(line),
		 "io_uring is not available here (io_uring_setup: %s; %s); "
		 "no fallback event loop yet", strerror(-err), uring_blocker(err));
	return line;
}

const struct loop_backend_ops loop_uring_ops = {
	.create = uring_create,
	.destroy = uring_destroy,
	.unavailable_reason = uring_unavailable_reason,
	.fd_add = uring_fd_add,
	.fd_del = uring_fd_del,
	.io_queue = uring_io_queue,
	.submit = uring_submit,
	.ready = uring_ready,
	.wait = uring_wait,
};
