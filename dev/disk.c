/*
 * Disk assembly (see disk.h): block_open, IOThreads, virtio_blk_create,
 * virtio_pci_create, and the reverse. Main thread only.
 */
#include "dev/disk.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "dev/virtio_blk.h"
#include "dev/virtio_pci.h"

struct disk {
	const struct disk_config *cfg;
	struct block *blk;
	struct virtio_blk *vblk;
	struct virtio_pci *vpci;
	struct iothread *own[CONFIG_MAX_QUEUES];	/* started by us */
	unsigned n_own;
	struct loop *loops[CONFIG_MAX_QUEUES];		/* queue i's loop */
};

static const enum block_format disk_formats[] = {
	[DISK_FORMAT_RAW] = BLOCK_FORMAT_RAW,
	[DISK_FORMAT_NULL] = BLOCK_FORMAT_NULL,
	[DISK_FORMAT_QCOW2] = BLOCK_FORMAT_QCOW2,
	[DISK_FORMAT_AUTO] = BLOCK_FORMAT_AUTO,
};

static int disk_open_image(const struct disk_config *c, struct block **blk, char *err,
			   size_t errlen)
{
	const struct block_open_params bp = {
		.path = c->path,
		.format = disk_formats[c->format],
		.readonly = c->readonly,
		.direct = c->cache == DISK_CACHE_NONE,
		.size = c->size,
		.l2_cache = c->l2_cache,
	};

	return block_open(&bp, blk, err, errlen);
}

int disk_check(const struct disk_config *cfg, char *err, size_t errlen)
{
	struct block *blk;
	int ret = disk_open_image(cfg, &blk, err, errlen);

	if (!ret)
		block_close(blk);
	return ret;
}

/* Queue i goes to the i % n-th of the disk's IOThreads. */
static int disk_assign_loops(struct disk *d, const struct disk_params *p, char *err, size_t errlen)
{
	const struct disk_config *c = d->cfg;
	unsigned n = c->n_iothreads;

	if (!n) {
		n = c->num_queues < p->vcpus ? c->num_queues : p->vcpus;
		for (; d->n_own < n; d->n_own++) {
			struct iothread_config t = { 0 };
			int ret;

			snprintf(t.name, sizeof(t.name), "%.48s-io%u", c->name, d->n_own);
			ret = iothread_start(&t, &d->own[d->n_own]);
			if (ret) {
				snprintf(err, errlen, "%s: [disk.%s]: cannot start an IOThread: %s",
					 p->config_path, c->name, strerror(-ret));
				return ret;
			}
		}
	}
	for (unsigned i = 0; i < c->num_queues; i++)
		d->loops[i] = iothread_loop(c->n_iothreads ? p->iothreads[c->iothreads[i % n]]
							   : d->own[i % n]);
	return 0;
}

static int disk_plug(struct disk *d, const struct disk_params *p, char *err, size_t errlen)
{
	const struct virtio_blk_params vp = {
		.cfg = d->cfg, .blk = d->blk, .mem = p->mem, .loops = d->loops,
	};
	int ret = virtio_blk_create(&d->vblk, &vp);

	if (!ret) {
		ret = virtio_pci_create(&d->vpci, p->root, virtio_blk_dev(d->vblk));
		if (ret) {
			virtio_blk_destroy(d->vblk);
			d->vblk = NULL;
		}
	}
	if (ret)
		snprintf(err, errlen, "%s: [disk.%s]: cannot create the device: %s",
			 p->config_path, d->cfg->name, strerror(-ret));
	return ret;
}

int disk_create(struct disk **out, const struct disk_params *p, char *err, size_t errlen)
{
	struct disk *d = calloc(1, sizeof(*d));
	int ret;

	if (!d)
		return -ENOMEM;
	d->cfg = p->cfg;
	ret = disk_open_image(d->cfg, &d->blk, err, errlen);
	if (!ret)
		ret = disk_assign_loops(d, p, err, errlen);
	if (!ret)
		ret = disk_plug(d, p, err, errlen);
	if (ret) {
		disk_destroy(d, NULL);
		return ret;
	}
	*out = d;
	return 0;
}

static void disk_print_stats(struct disk *d, FILE *f)
{
	for (unsigned i = 0; i < d->cfg->num_queues; i++) {
		struct virtio_blk_stats s;

		virtio_blk_stats(d->vblk, i, &s);
		fprintf(f, "vmm: disk.%s: queue %u: %llu requests, %llu errors, %llu bytes read, "
			   "%llu bytes written, %llu kicks, %llu interrupts\n",
			d->cfg->name, i, (unsigned long long)s.requests,
			(unsigned long long)s.errors, (unsigned long long)s.read_bytes,
			(unsigned long long)s.write_bytes, (unsigned long long)s.kicks,
			(unsigned long long)s.interrupts);
	}
}

void disk_destroy(struct disk *d, FILE *f)
{
	if (d->vpci)
		virtio_pci_destroy(d->vpci);
	if (d->vblk && f)
		disk_print_stats(d, f);
	if (d->vblk)
		virtio_blk_destroy(d->vblk);
	for (unsigned i = 0; i < d->n_own; i++)
		iothread_stop(d->own[i]);
	if (d->blk)
		block_close(d->blk);
	free(d);
}
