/*
 * Device-to-transport calls (see virtio.h). Any thread; the transport's
 * ops are lock-free.
 */
#include "dev/virtio.h"

void virtio_notify_queue(struct virtio_dev *d, unsigned q)
{
	d->transport->ops->notify(d->transport, d->queues[q].vector);
}

void virtio_needs_reset(struct virtio_dev *d)
{
	d->transport->ops->needs_reset(d->transport);
}

void virtio_reset_done(struct virtio_dev *d)
{
	d->transport->ops->reset_done(d->transport);
}
