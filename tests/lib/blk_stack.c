/*
 * The tests' virtio-blk stack (see blk_stack.h): the vmm's build order
 * with the guest_platform for KVM, and the matching teardown in reverse.
 * Every step unwinds what came before it, so a failed create leaves
 * nothing running.
 */
#include "tests/lib/blk_stack.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "rcu/rcu.h"

static void blk_stack_disk(struct blk_stack *s, const struct blk_stack_params *p)
{
	s->disk = (struct disk_config){
		.format = p->path ? DISK_FORMAT_RAW : DISK_FORMAT_NULL,
		.readonly = p->readonly,
		.num_queues = p->num_queues ? p->num_queues : 1,
		.queue_size = p->queue_size ? p->queue_size : 256,
		.cache = p->direct ? DISK_CACHE_NONE : DISK_CACHE_WRITEBACK,
		.size = p->null_size,
	};
	snprintf(s->disk.name, sizeof(s->disk.name), "test");
	snprintf(s->disk.path, sizeof(s->disk.path), "%s", p->path ? p->path : "");
	snprintf(s->disk.serial, sizeof(s->disk.serial), "%s", p->serial ? p->serial : "");
}

/* One IOThread, or with inline_loops one loop of the calling thread. */
static int blk_stack_loop(struct blk_stack *s, unsigned i, const struct blk_stack_params *p)
{
	struct iothread_config cfg = { .name = "", .poll_max_ns = p->poll_max_ns,
				       .n_cpus = p->pin_iothreads ? 1 : 0,
				       .cpus = { p->pin_first_cpu + i } };
	int ret;

	snprintf(cfg.name, sizeof(cfg.name), "io%u", i);
	if (p->inline_loops)
		ret = loop_new(&(struct loop_params){ .name = cfg.name,
						      .poll_max_ns = p->poll_max_ns }, &s->own[i]);
	else
		ret = iothread_start(&cfg, &s->io[i]);
	if (ret)
		snprintf(s->err, sizeof(s->err), "%s: %s",
			 p->inline_loops ? "loop_new" : "iothread_start", strerror(-ret));
	return ret;
}

static int blk_stack_iothreads(struct blk_stack *s, const struct blk_stack_params *p)
{
	unsigned i, n = p->n_iothreads ? p->n_iothreads : 1;
	int ret;

	for (s->n_iothreads = 0; s->n_iothreads < n; s->n_iothreads++) {
		ret = blk_stack_loop(s, s->n_iothreads, p);
		if (ret)
			return ret;
	}
	for (i = 0; i < s->disk.num_queues; i++)
		s->loops[i] = s->own[i % n] ? s->own[i % n] : iothread_loop(s->io[i % n]);
	return 0;
}

static void blk_stack_stop_iothreads(struct blk_stack *s)
{
	while (s->n_iothreads--) {
		if (s->own[s->n_iothreads])
			loop_free(s->own[s->n_iothreads]);
		else
			iothread_stop(s->io[s->n_iothreads]);
	}
	s->n_iothreads = 0;
}

void blk_stack_pump(struct blk_stack *s, bool block)
{
	unsigned i;

	for (i = 0; i < s->n_iothreads; i++)
		loop_run_once(s->own[i], block && i == 0);
}

static void blk_stack_idle(struct virtio_guest *g)
{
	blk_stack_pump(container_of(g, struct blk_stack, guest), false);
}

static int blk_stack_block(struct blk_stack *s, const struct blk_stack_params *p)
{
	struct block_open_params bp = {
		.path = p->path, .format = p->path ? p->format : BLOCK_FORMAT_NULL,
		.readonly = p->readonly, .direct = p->direct, .size = p->null_size,
		.l2_cache = p->l2_cache,
	};

	return block_open(&bp, &s->blk, s->err, sizeof(s->err));
}

/* The device, its function and the driver's probe; s->blk and the
 * IOThreads are up. */
static int blk_stack_device(struct blk_stack *s)
{
	struct virtio_blk_params bp = { .cfg = &s->disk, .blk = s->blk, .mem = &s->mem,
					.loops = s->loops };
	struct virtio_guest_params gp = {
		.mem = &s->mem, .pio = &s->pio, .mmio = &s->mmio, .platform = &s->platform,
		.heap = BLK_STACK_HEAP, .heap_size = s->ram - BLK_STACK_HEAP };
	int ret = virtio_blk_create(&s->vblk, &bp);

	if (ret) {
		snprintf(s->err, sizeof(s->err), "virtio_blk_create: %s", strerror(-ret));
		return ret;
	}
	ret = virtio_pci_create(&s->vp, s->root, virtio_blk_dev(s->vblk));
	if (ret) {
		snprintf(s->err, sizeof(s->err), "virtio_pci_create: %s", strerror(-ret));
		goto err_blk;
	}
	ret = virtio_guest_probe(&s->guest, &gp);
	if (s->own[0])
		s->guest.idle = blk_stack_idle;
	if (!ret)
		return 0;
	snprintf(s->err, sizeof(s->err), "virtio_guest_probe: %s", strerror(-ret));
	virtio_pci_destroy(s->vp);
err_blk:
	virtio_blk_destroy(s->vblk);
	return ret;
}

int blk_stack_create(struct blk_stack *s, const struct blk_stack_params *p)
{
	int ret;

	*s = (struct blk_stack){ .ram = p->ram ? p->ram : BLK_STACK_RAM };
	blk_stack_disk(s, p);
	guest_platform_init(&s->platform);
	ret = mem_init(&s->mem, s->ram);
	if (ret) {
		snprintf(s->err, sizeof(s->err), "mem_init: %s", strerror(-ret));
		goto err_platform;
	}
	bus_init(&s->pio, "pio");
	bus_init(&s->mmio, "mmio");
	ret = pci_root_create(&s->root, &s->pio, &s->mmio, &s->platform.platform);
	if (ret) {
		snprintf(s->err, sizeof(s->err), "pci_root_create: %s", strerror(-ret));
		goto err_bus;
	}
	ret = blk_stack_block(s, p);
	if (ret)
		goto err_root;
	ret = blk_stack_iothreads(s, p);
	if (!ret)
		ret = blk_stack_device(s);
	if (!ret)
		return 0;
	blk_stack_stop_iothreads(s);
	block_close(s->blk);
err_root:
	pci_root_destroy(s->root);
err_bus:
	bus_destroy(&s->mmio);
	bus_destroy(&s->pio);
	rcu_barrier();
	mem_destroy(&s->mem);
err_platform:
	guest_platform_destroy(&s->platform);
	return ret;
}

void blk_stack_destroy(struct blk_stack *s)
{
	virtio_guest_reset(&s->guest);
	virtio_guest_destroy(&s->guest);
	virtio_pci_destroy(s->vp);
	virtio_blk_destroy(s->vblk);
	blk_stack_stop_iothreads(s);
	block_close(s->blk);
	pci_root_destroy(s->root);
	bus_destroy(&s->mmio);
	bus_destroy(&s->pio);
	rcu_barrier();
	mem_destroy(&s->mem);
	guest_platform_destroy(&s->platform);
}
