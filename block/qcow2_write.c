/*
 * qcow2 writes: not implemented yet; writable images refuse writes.
 * Threads: as qcow2_read.c.
 */
#include <errno.h>

#include "block/qcow2.h"

void qcow2_write_start(struct qcow2_op *op)
{
	qcow2_op_end(op, -ENOTSUP);
}

void qcow2_write_zero_start(struct qcow2_op *op)
{
	qcow2_op_end(op, -ENOTSUP);
}
