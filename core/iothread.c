/*
 * IOThreads: one pthread per configured IOThread, each creating and running
 * its own loop, so the thread owns the loop from its first instruction.
 *
 * Threads: iothread_start runs in the caller and waits on `ready` for the new
 * thread's setup result; the thread then only runs its loop. iothread_stop
 * (another thread) stops the loop, joins, then frees the loop. The thread
 * writes start_err and loop before posting `ready`; nobody writes them after.
 */
#include "core/iothread.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "rcu/rcu.h"

struct iothread {
	const struct iothread_config *cfg;	/* caller's; read until `ready` only */
	pthread_t thread;
	sem_t ready;		/* posted by the thread once start_err is set */
	int start_err;		/* 0 or -errno from the thread's setup */
	struct loop *loop;	/* owned by the thread until it is joined */
};

/* Whether cpu is listed in /sys/devices/system/cpu/online ("0-3,5"); true
 * when the file cannot be read, leaving the check to sched_setaffinity. */
static bool iothread_cpu_online(unsigned cpu)
{
	char buf[512];
	FILE *f = fopen("/sys/devices/system/cpu/online", "re");
	unsigned lo, hi;
	int n;
	char *p = buf;

	if (!f)
		return true;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	while (sscanf(p, "%u%n", &lo, &n) == 1) {
		p += n;
		hi = lo;
		if (*p == '-' && sscanf(p + 1, "%u%n", &hi, &n) == 1)
			p += n + 1;
		if (cpu >= lo && cpu <= hi)
			return true;
		if (*p != ',')
			break;
		p++;
	}
	return false;
}

/* "0,2,5": cfg's CPUs for messages, truncated to len. */
static const char *iothread_cpu_list(const struct iothread_config *cfg, char *buf, size_t len)
{
	size_t n = 0;
	unsigned i;

	buf[0] = 0;
	for (i = 0; i < cfg->n_cpus && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%u", i ? "," : "", cfg->cpus[i]);
	return buf;
}

int iothread_check_cpus(const struct iothread_config *cfg, unsigned *bad_cpu)
{
	for (unsigned i = 0; i < cfg->n_cpus; i++) {
		if (cfg->cpus[i] >= CPU_SETSIZE || !iothread_cpu_online(cfg->cpus[i])) {
			*bad_cpu = cfg->cpus[i];
			return -EINVAL;
		}
	}
	return 0;
}

static int iothread_set_affinity(const struct iothread_config *cfg)
{
	char list[128];
	cpu_set_t set;
	unsigned i, bad;

	if (iothread_check_cpus(cfg, &bad)) {
		log_msg("iothread %s: CPU %u is not online", cfg->name, bad);
		return -EINVAL;
	}
	CPU_ZERO(&set);
	for (i = 0; i < cfg->n_cpus; i++)
		CPU_SET(cfg->cpus[i], &set);
	if (sched_setaffinity(0, sizeof(set), &set) < 0) {
		log_msg("iothread %s: sched_setaffinity to CPUs %s: %s (outside this "
			"process's cpuset?)", cfg->name, iothread_cpu_list(cfg, list, sizeof(list)),
			strerror(errno));
		return -EINVAL;
	}
	return 0;
}

static int iothread_setup(struct iothread *t)
{
	const struct iothread_config *cfg = t->cfg;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "%.15s", cfg->name);
	/* The name is cosmetic (ps, top, gdb): a failure is not worth stopping. */
	pthread_setname_np(pthread_self(), name);
	if (cfg->n_cpus > 0) {
		ret = iothread_set_affinity(cfg);
		if (ret < 0)
			return ret;
	}
	return loop_new(&(struct loop_params){ .name = cfg->name,
					       .poll_max_ns = cfg->poll_max_ns },
			&t->loop);
}

static void *iothread_main(void *arg)
{
	struct iothread *t = arg;
	int ret;

	rcu_register_thread();
	ret = iothread_setup(t);
	t->start_err = ret;
	/* Pairs with sem_wait in iothread_start; t->cfg may be gone after it. */
	sem_post(&t->ready);
	if (ret == 0)
		loop_run(t->loop);
	rcu_unregister_thread();
	return NULL;
}

/* Creates the thread with every asynchronous signal blocked (it inherits the
 * mask); faults stay deliverable so crashes still report as usual. */
static int iothread_create(struct iothread *t)
{
	static const int faults[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS };
	sigset_t all, old;
	unsigned i;
	int ret;

	sigfillset(&all);
	for (i = 0; i < ARRAY_SIZE(faults); i++)
		sigdelset(&all, faults[i]);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&t->thread, NULL, iothread_main, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

int iothread_start(const struct iothread_config *cfg, struct iothread **out)
{
	struct iothread *t = calloc(1, sizeof(*t));
	int ret;

	if (!t)
		return -ENOMEM;
	t->cfg = cfg;
	sem_init(&t->ready, 0, 0);
	ret = iothread_create(t);
	if (ret < 0)
		goto err_free;
	while (sem_wait(&t->ready) < 0)
		;
	ret = t->start_err;
	if (ret < 0) {
		pthread_join(t->thread, NULL);
		goto err_free;
	}
	*out = t;
	return 0;

err_free:
	sem_destroy(&t->ready);
	free(t);
	return ret;
}

struct loop *iothread_loop(struct iothread *t)
{
	return t->loop;
}

void iothread_stop(struct iothread *t)
{
	loop_stop(t->loop);
	pthread_join(t->thread, NULL);
	/* The owner has been joined: any thread may free its loop now. */
	loop_free(t->loop);
	sem_destroy(&t->ready);
	free(t);
}
