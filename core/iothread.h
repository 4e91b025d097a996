/*
 * IOThreads: a pthread running its own event loop (core/loop.h). Devices put
 * their queue notifications and block completions on an IOThread's loop and
 * reach it from other threads with loop_bh_schedule.
 */
#ifndef CORE_IOTHREAD_H
#define CORE_IOTHREAD_H

#include "core/config.h"
#include "core/loop.h"

struct iothread;

/*
 * Starts a thread named cfg->name (truncated to 15 characters), pinned to
 * cfg->cpus when cfg->n_cpus > 0, registered with RCU, with every signal
 * but the fault ones blocked (signals belong to the main loop's signalfd),
 * running a loop with cfg->poll_max_ns. Returns once the loop accepts
 * work: a BH scheduled right after the call runs. Any thread; cfg need only
 * live until the call returns. Returns 0 and *out, or -errno: -EINVAL when
 * a CPU is not online or the affinity cannot be set (logged with the CPUs),
 * or loop_new's error (see loop_unavailable_reason).
 */
int iothread_start(const struct iothread_config *cfg, struct iothread **out);

/* Checks that every CPU in cfg->cpus is online on this host. Returns 0, or
 * -EINVAL with the first CPU that is not in *bad_cpu. Any thread. */
int iothread_check_cpus(const struct iothread_config *cfg, unsigned *bad_cpu);

/* The thread's loop; valid until iothread_stop. Any thread. */
struct loop *iothread_loop(struct iothread *t);

/*
 * Stops the loop, joins the thread and frees t and its loop. Any thread but
 * t's own. Users must have removed their fd watches and drained their I/O on
 * the loop first (e.g. from a BH); pending BHs and timers are dropped.
 */
void iothread_stop(struct iothread *t);

#endif
