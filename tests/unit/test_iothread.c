/*
 * IOThread tests: a BH scheduled right after iothread_start runs in the new
 * thread, which carries the configured name and CPU affinity; a CPU that is
 * not online is refused; stop joins. Exit 0 pass, 1 fail, 77 when io_uring
 * is unavailable here.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/check.h"
#include "core/iothread.h"
#include "core/util.h"

/* What a BH saw about the thread it ran in. */
struct probe {
	struct loop_bh bh;
	struct loop *l;
	sem_t done;
	pid_t tid;
	bool in_owner;
	char name[16];
	cpu_set_t cpus;
};

static void probe_cb(struct loop_bh *bh)
{
	struct probe *p = container_of(bh, struct probe, bh);

	p->tid = gettid();
	p->in_owner = loop_in_owner(p->l);
	pthread_getname_np(pthread_self(), p->name, sizeof(p->name));
	sched_getaffinity(0, sizeof(p->cpus), &p->cpus);
	sem_post(&p->done);
}

static struct iothread *start(const struct iothread_config *cfg)
{
	struct iothread *t;
	int ret = iothread_start(cfg, &t);
	const char *why;

	if (ret == 0)
		return t;
	why = loop_unavailable_reason(ret);
	if (why) {
		printf("SKIP: %s\n", why);
		exit(77);
	}
	printf("FAIL: iothread_start(%s): %s\n", cfg->name, strerror(-ret));
	exit(1);
}

/* Runs a probe BH on t and waits for it, at most 5 s. */
static void probe(struct iothread *t, struct probe *p)
{
	struct timespec ts;

	memset(p, 0, sizeof(*p));
	sem_init(&p->done, 0, 0);
	p->l = iothread_loop(t);
	loop_bh_init(&p->bh, probe_cb);
	loop_bh_schedule(p->l, &p->bh);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	if (sem_timedwait(&p->done, &ts) < 0) {
		printf("FAIL: the BH did not run within 5 s\n");
		exit(1);
	}
	sem_destroy(&p->done);
}

static void test_name_and_thread(void)
{
	static const struct iothread_config cfg = {
		.name = "io-a-rather-long-name", .poll_max_ns = 20000 };
	struct iothread *t = start(&cfg);
	struct probe p;

	probe(t, &p);
	CHECK(p.tid != gettid(), "BH ran in the starting thread");
	CHECK(p.in_owner, "loop_in_owner false in the IOThread");
	CHECK(!loop_in_owner(iothread_loop(t)), "loop_in_owner true outside");
	CHECK(!strcmp(p.name, "io-a-rather-lon"), "thread name \"%s\"", p.name);
	iothread_stop(t);
}

static void test_affinity(void)
{
	static const struct iothread_config cfg = { .name = "io-cpu0", .n_cpus = 1,
						    .cpus = { 0 } };
	struct iothread *t = start(&cfg);
	struct probe p;

	probe(t, &p);
	CHECK(CPU_COUNT(&p.cpus) == 1 && CPU_ISSET(0, &p.cpus),
	      "affinity has %d CPUs, CPU 0 %s", CPU_COUNT(&p.cpus),
	      CPU_ISSET(0, &p.cpus) ? "in" : "out");
	iothread_stop(t);
}

static void test_offline_cpu(void)
{
	static const struct iothread_config cfg = { .name = "io-bad", .n_cpus = 2,
						    .cpus = { 0, CONFIG_MAX_CPUS - 1 } };
	struct iothread *t = NULL;
	long n = sysconf(_SC_NPROCESSORS_CONF);

	if (n >= CONFIG_MAX_CPUS) {
		printf("note: %ld CPUs configured, offline-CPU check skipped\n", n);
		return;
	}
	CHECK(iothread_start(&cfg, &t) == -EINVAL, "CPU %d accepted", CONFIG_MAX_CPUS - 1);
	CHECK(t == NULL, "*out set on failure");
}

static void test_many(void)
{
	struct iothread_config cfg[4];
	struct iothread *t[4];
	struct probe p;
	pid_t tids[4];
	int i, j;

	for (i = 0; i < 4; i++) {
		cfg[i] = (struct iothread_config){ .poll_max_ns = i * 10000ULL };
		snprintf(cfg[i].name, sizeof(cfg[i].name), "io%d", i);
		t[i] = start(&cfg[i]);
	}
	for (i = 0; i < 4; i++) {
		probe(t[i], &p);
		tids[i] = p.tid;
		for (j = 0; j < i; j++)
			CHECK(tids[j] != tids[i], "IOThreads %d and %d share tid %d", j, i, p.tid);
	}
	for (i = 3; i >= 0; i--)
		iothread_stop(t[i]);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	test_name_and_thread();
	test_affinity();
	test_offline_cpu();
	test_many();
	if (test_failures) {
		printf("%d check(s) failed\n", test_failures);
		return 1;
	}
	printf("ok\n");
	return 0;
}
