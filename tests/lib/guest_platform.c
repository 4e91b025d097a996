/*
 * The tests' stand-in for KVM's irqfd and ioeventfd (see guest_platform.h).
 * Two small tables under one mutex, searched linearly: a test device has a
 * few dozen entries at most, and the lookups are off the measured path
 * (the driver caches the fds it finds).
 */
#include "tests/lib/guest_platform.h"

#include <errno.h>
#include <string.h>

#include "core/util.h"

static struct guest_platform *guest_platform_of(struct pci_platform *pp)
{
	return container_of(pp, struct guest_platform, platform);
}

static struct guest_platform_irqfd *guest_platform_irqfd_slot(struct guest_platform *p, int fd,
							     unsigned *handle)
	REQUIRES(p->lock)
{
	unsigned i;

	if (*handle) {
		if (*handle > p->n_irqfd || p->irqfd[*handle - 1].fd != fd)
			return NULL;
		return &p->irqfd[*handle - 1];
	}
	for (i = 0; i < p->n_irqfd; i++) {
		if (p->irqfd[i].fd == fd) {
			*handle = i + 1;
			return &p->irqfd[i];
		}
	}
	if (p->n_irqfd == GUEST_PLATFORM_MAX)
		return NULL;
	p->irqfd[p->n_irqfd] = (struct guest_platform_irqfd){ .fd = fd };
	*handle = ++p->n_irqfd;
	return &p->irqfd[*handle - 1];
}

static int guest_platform_irqfd_set(struct pci_platform *pp, int fd, const struct pci_msi_msg *msg,
				    unsigned *handle)
{
	struct guest_platform *p = guest_platform_of(pp);
	struct guest_platform_irqfd *e;
	int ret = 0;

	if (fd < 0)
		return -EBADF;
	mutex_lock(&p->lock);
	e = guest_platform_irqfd_slot(p, fd, handle);
	if (!e) {
		ret = *handle ? -EINVAL : -ENOSPC;
	} else if (msg) {
		e->msg = *msg;
		e->connected = true;
	} else {
		e->connected = false;
	}
	mutex_unlock(&p->lock);
	return ret;
}

static int guest_platform_find_ioeventfd(struct guest_platform *p, uint64_t gpa, unsigned len)
	REQUIRES(p->lock)
{
	unsigned i;

	for (i = 0; i < p->n_ioeventfd; i++)
		if (p->ioeventfd[i].gpa == gpa && p->ioeventfd[i].len == len)
			return (int)i;
	return -1;
}

static int guest_platform_ioeventfd_set(struct pci_platform *pp, uint64_t gpa, unsigned len,
					int fd, bool assign)
{
	struct guest_platform *p = guest_platform_of(pp);
	int i, ret = 0;

	if (len > 8 || (len & (len - 1)))
		return -EINVAL;
	if (fd < 0)
		return -EBADF;
	mutex_lock(&p->lock);
	i = guest_platform_find_ioeventfd(p, gpa, len);
	if (assign && i >= 0)
		ret = -EEXIST;
	else if (assign && p->n_ioeventfd == GUEST_PLATFORM_MAX)
		ret = -ENOSPC;
	else if (assign)
		p->ioeventfd[p->n_ioeventfd++] =
			(struct guest_platform_ioeventfd){ .gpa = gpa, .len = len, .fd = fd };
	else if (i < 0 || p->ioeventfd[i].fd != fd)
		ret = -ENOENT;
	else
		p->ioeventfd[i] = p->ioeventfd[--p->n_ioeventfd];
	mutex_unlock(&p->lock);
	return ret;
}

static const struct pci_platform_ops guest_platform_ops = {
	.irqfd_set = guest_platform_irqfd_set,
	.ioeventfd_set = guest_platform_ioeventfd_set,
};

void guest_platform_init(struct guest_platform *p)
{
	memset(p, 0, sizeof(*p));
	p->platform.ops = &guest_platform_ops;
	mutex_init(&p->lock);
}

void guest_platform_destroy(struct guest_platform *p)
{
	mutex_destroy(&p->lock);
}

int guest_platform_ioeventfd(struct guest_platform *p, uint64_t gpa, unsigned len)
{
	unsigned i;
	int fd = -1;

	mutex_lock(&p->lock);
	for (i = 0; i < p->n_ioeventfd && fd < 0; i++) {
		const struct guest_platform_ioeventfd *e = &p->ioeventfd[i];

		if (e->gpa == gpa && (e->len == 0 || e->len == len))
			fd = e->fd;
	}
	mutex_unlock(&p->lock);
	return fd;
}

int guest_platform_irqfd(struct guest_platform *p, const struct pci_msi_msg *msg)
{
	unsigned i;
	int fd = -1;

	mutex_lock(&p->lock);
	for (i = 0; i < p->n_irqfd && fd < 0; i++) {
		const struct guest_platform_irqfd *e = &p->irqfd[i];

		if (e->connected && e->msg.addr == msg->addr && e->msg.data == msg->data)
			fd = e->fd;
	}
	mutex_unlock(&p->lock);
	return fd;
}
