/*
 * qcow2 writeback: not implemented yet; nothing is ever dirty.
 * Threads: as qcow2_read.c.
 */
#include <errno.h>
#include <unistd.h>

#include "block/qcow2.h"

int qcow2_flush_init(struct qcow2 *q)
{
	return 0;
}

void qcow2_flush_destroy(struct qcow2 *q)
{
}

static void qcow2_flush_done(struct loop_io *io, int res)
{
	qcow2_op_end(container_of(io, struct qcow2_op, io), res < 0 ? res : 0);
}

void qcow2_flush_start(struct qcow2_op *op)
{
	int ret = loop_io_fsync(op->loop, &op->io, op->q->fd, true, qcow2_flush_done);

	if (ret)
		qcow2_op_end(op, ret);
}

int qcow2_flush_close(struct qcow2 *q)
{
	return fdatasync(q->fd) ? -errno : 0;
}
