/*
 * Tests for rcu/rcu.c. Standalone: exits 0 on pass, 1 on failure (after
 * printing the failed check). Runs in a few seconds in every variant; under
 * build/asan a use-after-free in the stress test is reported, under
 * build/tsan a missing happens-before edge is.
 *
 * Threads: the main thread drives every test; helper threads report through
 * atomics only and never exit the process, so CHECK runs on the main thread.
 */
#include "rcu/rcu.h"

#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (!(cond)) {                                                        \
			fprintf(stderr, "test_rcu: %s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                                     \
			exit(1);                                                      \
		}                                                                     \
	} while (0)

#define OBJ_MAGIC 0x5ca1ab1e0ddba11UL
#define OBJ_POISON 0xdeaddeaddeaddeadUL

#define MS (1000 * 1000ULL)

/* The RCU-protected object. Fields are atomic (relaxed) only so that the
 * negative self-check, which poisons objects readers may still hold, has no
 * data race; in the real tests nothing writes them after publication. */
struct obj {
	_Atomic unsigned long magic;
	_Atomic unsigned long gen;
	struct rcu_head rcu;
};

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000ULL, .tv_nsec = ns % 1000000000ULL };

	while (nanosleep(&ts, &ts) != 0)
		;
}

static void cpu_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

static void wait_flag(_Atomic int *flag)
{
	while (!atomic_load(flag))
		sleep_ns(100 * 1000);
}

static void start_thread(pthread_t *tid, void *(*fn)(void *), void *arg)
{
	CHECK(pthread_create(tid, NULL, fn, arg) == 0);
}

static struct obj *obj_new(unsigned long gen)
{
	struct obj *o = malloc(sizeof(*o));

	CHECK(o);
	atomic_store_explicit(&o->magic, OBJ_MAGIC, memory_order_relaxed);
	atomic_store_explicit(&o->gen, gen, memory_order_relaxed);
	return o;
}

static bool obj_ok(struct obj *o)
{
	return atomic_load_explicit(&o->magic, memory_order_relaxed) == OBJ_MAGIC;
}

static void obj_poison(struct obj *o)
{
	atomic_store_explicit(&o->magic, OBJ_POISON, memory_order_relaxed);
	atomic_store_explicit(&o->gen, OBJ_POISON, memory_order_relaxed);
}

/* ---- 0. misuse is caught by assert() ---- */

static void misuse_unlock(void)
{
	rcu_register_thread();
	rcu_read_unlock();
}

static void misuse_sync_in_section(void)
{
	rcu_register_thread();
	rcu_read_lock();
	synchronize_rcu();
}

static void misuse_unregister_in_section(void)
{
	rcu_register_thread();
	rcu_read_lock();
	rcu_unregister_thread();
}

static void misuse_barrier_in_section(void)
{
	rcu_register_thread();
	rcu_read_lock();
	rcu_barrier();
}

/* Runs fn in a child (forked before any thread exists) and expects it to
 * die on SIGABRT. */
static void expect_abort(void (*fn)(void), const char *what)
{
	int status, devnull;
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		fn();
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) {
		fprintf(stderr, "test_rcu: %s was not caught by assert\n", what);
		exit(1);
	}
}

static void test_misuse(void)
{
#ifdef NDEBUG
	printf("misuse: skipped (NDEBUG)\n");
#else
	expect_abort(misuse_unlock, "rcu_read_unlock without lock");
	expect_abort(misuse_sync_in_section, "synchronize_rcu in a read section");
	expect_abort(misuse_unregister_in_section, "unregister in a read section");
	expect_abort(misuse_barrier_in_section, "rcu_barrier in a read section");
	printf("misuse: ok\n");
#endif
}

/* ---- 1. basic publish / read / synchronize ---- */

static _Atomic(struct obj *) basic_ptr;

static void test_basic(void)
{
	struct obj *o = obj_new(1), *seen;
	uint64_t t0;

	rcu_register_thread();
	rcu_assign_pointer(basic_ptr, o);
	rcu_read_lock();
	seen = rcu_dereference(basic_ptr);
	CHECK(seen == o);
	CHECK(obj_ok(seen) && atomic_load(&seen->gen) == 1);
	rcu_read_unlock();

	rcu_assign_pointer(basic_ptr, NULL);
	t0 = clock_ns();
	synchronize_rcu();
	synchronize_rcu();
	/* No reader is inside a section: no reason to wait. */
	CHECK(clock_ns() - t0 < 1000 * MS);
	free(o);
	rcu_unregister_thread();

	/* Unregistered threads may synchronize too. */
	synchronize_rcu();
	printf("basic: ok\n");
}

/* ---- 2 and 5. a grace period waits for a (nested) reader ---- */

struct gp_test {
	bool nested;
	_Atomic int entered, left;
};

static void *gp_reader(void *arg)
{
	struct gp_test *t = arg;

	rcu_register_thread();
	rcu_read_lock();
	if (t->nested) {
		/* Leaving the inner sections must not end the outer one. */
		rcu_read_lock();
		rcu_read_lock();
		rcu_read_unlock();
		rcu_read_unlock();
	}
	atomic_store(&t->entered, 1);
	sleep_ns(50 * MS);
	atomic_store(&t->left, 1);
	rcu_read_unlock();
	rcu_unregister_thread();
	return NULL;
}

static void test_grace_period(bool nested)
{
	struct gp_test t = { .nested = nested };
	pthread_t tid;
	uint64_t t0, waited;

	start_thread(&tid, gp_reader, &t);
	wait_flag(&t.entered);
	t0 = clock_ns();
	synchronize_rcu();
	waited = clock_ns() - t0;
	/* The reader sets left just before its unlock. */
	CHECK(atomic_load(&t.left));
	pthread_join(tid, NULL);
	printf("grace period%s: ok (waited %llu ms)\n", nested ? " (nested reader)" : "",
	       (unsigned long long)(waited / MS));
}

/* A registered thread that sits outside any section must not hold up a
 * grace period: synchronize_rcu returns while it still idles. */
struct idle_test {
	_Atomic int ready, go, exited;
};

static void *idle_reader(void *arg)
{
	struct idle_test *t = arg;
	uint64_t deadline = clock_ns() + 10000 * MS;

	rcu_register_thread();
	rcu_read_lock();
	rcu_read_unlock();
	atomic_store(&t->ready, 1);
	while (!atomic_load(&t->go) && clock_ns() < deadline)
		sleep_ns(1 * MS);
	rcu_unregister_thread();
	atomic_store(&t->exited, 1);
	return NULL;
}

static void test_idle_reader(void)
{
	struct idle_test t = { .ready = 0 };
	pthread_t tid;

	start_thread(&tid, idle_reader, &t);
	wait_flag(&t.ready);
	synchronize_rcu();
	CHECK(!atomic_load(&t.exited));
	atomic_store(&t.go, 1);
	pthread_join(tid, NULL);
	printf("idle registered reader: ok\n");
}

/* ---- 3. stress: readers never see a reclaimed object ---- */

#define STRESS_READERS 4
/* The writer runs for STRESS_NS, and past it until it has made
 * STRESS_MIN_UPDATES, so an overloaded host slows the test instead of
 * failing it. */
#define STRESS_MIN_UPDATES 400
#define STRESS_NS (700 * MS)
#define NEG_RING 4096
#define NEG_NS (5000 * MS)

struct stress {
	bool broken; /* negative self-check: poison without a grace period */
	_Atomic(struct obj *) ptr;
	_Atomic int stop, ready;
	_Atomic unsigned long bad, backwards, reads, gens_seen;
	_Atomic unsigned long queued, reclaimed;
	struct obj ring[NEG_RING];
};

static struct stress *stress_cur; /* for obj_reclaim; set before any thread */

static void obj_reclaim(struct rcu_head *head)
{
	struct obj *o = container_of(head, struct obj, rcu);

	obj_poison(o);
	free(o);
	atomic_fetch_add(&stress_cur->reclaimed, 1);
}

/* One read section. Looks at the object twice, with a pause in between,
 * so that a reclaim racing with the section has a window to show. */
static void stress_read_once(struct stress *st, unsigned long *last_gen)
{
	struct obj *o;
	unsigned long gen;
	int i;

	rcu_read_lock();
	o = rcu_dereference(st->ptr);
	gen = atomic_load_explicit(&o->gen, memory_order_relaxed);
	for (i = 0; i < 32; i++)
		cpu_pause();
	if (!obj_ok(o) || gen == OBJ_POISON) {
		atomic_fetch_add(&st->bad, 1);
	} else if (!st->broken) {
		if (gen < *last_gen)
			atomic_fetch_add(&st->backwards, 1);
		if (gen != *last_gen)
			atomic_fetch_add(&st->gens_seen, 1);
		*last_gen = gen;
	}
	rcu_read_unlock();
}

static void *stress_reader(void *arg)
{
	struct stress *st = arg;
	unsigned long last_gen = 0, n = 0;

	rcu_register_thread();
	atomic_fetch_add(&st->ready, 1);
	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		stress_read_once(st, &last_gen);
		/* Leave the CPU now and then, as real readers do, so the
		 * writer and reclaim thread run even on an overloaded host. */
		if (++n % 256 == 0)
			sched_yield();
	}
	atomic_fetch_add(&st->reads, n);
	rcu_unregister_thread();
	return NULL;
}

/* Replaces the object; frees the old one after a grace period, mostly via
 * call_rcu and every 8th time via synchronize_rcu. */
static unsigned long stress_write(struct stress *st)
{
	uint64_t deadline = clock_ns() + STRESS_NS;
	struct obj *old;
	unsigned long i;

	for (i = 2; i <= STRESS_MIN_UPDATES || clock_ns() < deadline; i++) {
		old = atomic_load_explicit(&st->ptr, memory_order_relaxed);
		rcu_assign_pointer(st->ptr, obj_new(i));
		if (i % 8 == 0) {
			synchronize_rcu();
			obj_poison(old);
			free(old);
		} else {
			atomic_fetch_add(&st->queued, 1);
			call_rcu(&old->rcu, obj_reclaim);
		}
	}
	return i - 2;
}

/* The same, but broken on purpose: the old object is poisoned at once,
 * with no grace period. Objects come from a ring and are never freed, so
 * the mistake shows as poison instead of undefined behaviour. */
static unsigned long stress_write_broken(struct stress *st)
{
	uint64_t deadline = clock_ns() + NEG_NS;
	struct obj *old, *o;
	unsigned long i;

	for (i = 2; clock_ns() < deadline && !atomic_load(&st->bad); i++) {
		o = &st->ring[i % NEG_RING];
		atomic_store_explicit(&o->magic, OBJ_MAGIC, memory_order_relaxed);
		atomic_store_explicit(&o->gen, i, memory_order_relaxed);
		old = atomic_load_explicit(&st->ptr, memory_order_relaxed);
		rcu_assign_pointer(st->ptr, o);
		obj_poison(old);
	}
	return i - 2;
}

static unsigned long stress_run(struct stress *st)
{
	pthread_t tid[STRESS_READERS];
	unsigned long updates;
	int i;

	stress_cur = st;
	rcu_assign_pointer(st->ptr, st->broken ? &st->ring[1] : obj_new(1));
	if (st->broken)
		atomic_store(&st->ring[1].magic, OBJ_MAGIC);
	for (i = 0; i < STRESS_READERS; i++)
		start_thread(&tid[i], stress_reader, st);
	while (atomic_load(&st->ready) < STRESS_READERS)
		sleep_ns(100 * 1000);
	updates = st->broken ? stress_write_broken(st) : stress_write(st);
	atomic_store(&st->stop, 1);
	for (i = 0; i < STRESS_READERS; i++)
		pthread_join(tid[i], NULL);
	return updates;
}

static void test_stress(void)
{
	struct stress *st = calloc(1, sizeof(*st));
	unsigned long updates;
	uint64_t t0 = clock_ns();

	CHECK(st);
	updates = stress_run(st);
	free(atomic_load(&st->ptr));
	rcu_barrier();
	printf("stress: %lu updates, %lu reads, %lu generation changes seen, %lu ms\n",
	       updates, atomic_load(&st->reads), atomic_load(&st->gens_seen),
	       (unsigned long)((clock_ns() - t0) / MS));
	CHECK(atomic_load(&st->bad) == 0);
	CHECK(atomic_load(&st->backwards) == 0);
	CHECK(atomic_load(&st->reads) > 0);
	/* Readers overlapped the writer, so the test exercised something. */
	CHECK(atomic_load(&st->gens_seen) > STRESS_READERS);
	CHECK(atomic_load(&st->reclaimed) == atomic_load(&st->queued));
	free(st);
	printf("stress: ok\n");
}

/* The detector must be able to fail: without grace periods the readers
 * do see poison. */
static void test_stress_detects_missing_grace_period(void)
{
	struct stress *st = calloc(1, sizeof(*st));
	unsigned long updates;
	uint64_t t0 = clock_ns();

	CHECK(st);
	st->broken = true;
	updates = stress_run(st);
	printf("negative self-check: %lu poisoned reads in %lu updates, %lu ms\n",
	       atomic_load(&st->bad), updates, (unsigned long)((clock_ns() - t0) / MS));
	CHECK(atomic_load(&st->bad) > 0);
	free(st);
	printf("negative self-check: ok\n");
}

/* ---- 4. call_rcu: exactly once, in order, after a grace period ---- */

#define CB_PRODUCERS 2
#define CB_PER_PRODUCER 2000

struct cb_item {
	struct rcu_head rcu;
	int producer, seq;
};

/* Written only by callbacks (the reclaim thread); read by main after
 * rcu_barrier, which orders them. cb_errors counts callbacks run out of
 * order or reading a bad object. */
static int cb_ran[CB_PRODUCERS][CB_PER_PRODUCER];
static int cb_next[CB_PRODUCERS];
static int cb_errors;
static _Atomic(struct obj *) cb_ptr;

static void cb_record(struct rcu_head *head)
{
	struct cb_item *it = container_of(head, struct cb_item, rcu);
	struct obj *o;

	/* The reclaim thread is registered: callbacks may read. */
	rcu_read_lock();
	o = rcu_dereference(cb_ptr);
	if (o && !obj_ok(o))
		cb_errors++;
	rcu_read_unlock();

	cb_ran[it->producer][it->seq]++;
	if (it->seq != cb_next[it->producer])
		cb_errors++;
	cb_next[it->producer] = it->seq + 1;
	free(it);
}

static void *cb_producer(void *arg)
{
	int p = (int)(intptr_t)arg, i;

	for (i = 0; i < CB_PER_PRODUCER; i++) {
		struct cb_item *it = malloc(sizeof(*it));

		if (!it)
			abort();
		it->producer = p;
		it->seq = i;
		/* Unregistered threads may queue callbacks. */
		call_rcu(&it->rcu, cb_record);
	}
	return NULL;
}

static void test_call_rcu_order(void)
{
	pthread_t tid[CB_PRODUCERS];
	struct obj *o = obj_new(7);
	int p, i;

	rcu_assign_pointer(cb_ptr, o);
	for (p = 0; p < CB_PRODUCERS; p++)
		start_thread(&tid[p], cb_producer, (void *)(intptr_t)p);
	for (p = 0; p < CB_PRODUCERS; p++)
		pthread_join(tid[p], NULL);
	rcu_barrier();
	for (p = 0; p < CB_PRODUCERS; p++)
		for (i = 0; i < CB_PER_PRODUCER; i++)
			CHECK(cb_ran[p][i] == 1);
	CHECK(cb_errors == 0);
	rcu_assign_pointer(cb_ptr, NULL);
	synchronize_rcu();
	free(o);
	printf("call_rcu exactly once, in order, rcu_barrier waits: ok\n");
}

struct cb_gp_test {
	struct rcu_head rcu;
	_Atomic int entered, release, ran, chained_ran;
	struct rcu_head chained;
};

static void *cb_gp_reader(void *arg)
{
	struct cb_gp_test *t = arg;

	rcu_register_thread();
	rcu_read_lock();
	atomic_store(&t->entered, 1);
	wait_flag(&t->release);
	rcu_read_unlock();
	rcu_unregister_thread();
	return NULL;
}

static void cb_chained(struct rcu_head *head)
{
	struct cb_gp_test *t = container_of(head, struct cb_gp_test, chained);

	atomic_store(&t->chained_ran, 1);
}

static void cb_mark(struct rcu_head *head)
{
	struct cb_gp_test *t = container_of(head, struct cb_gp_test, rcu);

	atomic_store(&t->ran, 1);
	/* Callbacks may queue callbacks. */
	call_rcu(&t->chained, cb_chained);
}

static void test_call_rcu_waits_for_reader(void)
{
	struct cb_gp_test t = { .entered = 0 };
	pthread_t tid;

	start_thread(&tid, cb_gp_reader, &t);
	wait_flag(&t.entered);
	call_rcu(&t.rcu, cb_mark);
	sleep_ns(50 * MS);
	/* The reader entered before call_rcu and is still inside. */
	CHECK(!atomic_load(&t.ran));
	atomic_store(&t.release, 1);
	rcu_barrier();
	CHECK(atomic_load(&t.ran));
	/* The chained callback was queued after our barrier's; a second
	 * barrier is queued after it. */
	rcu_barrier();
	CHECK(atomic_load(&t.chained_ran));
	pthread_join(tid, NULL);
	printf("call_rcu waits for readers: ok\n");
}

static void test_grace_periods(void)
{
	test_grace_period(false);
	test_grace_period(true);
	test_idle_reader();
}

static void test_call_rcu(void)
{
	test_call_rcu_order();
	test_call_rcu_waits_for_reader();
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "misuse", test_misuse }, /* forks: must run before any thread exists */
	{ "basic", test_basic },
	{ "gp", test_grace_periods },
	{ "call_rcu", test_call_rcu },
	{ "stress", test_stress },
	{ "negative", test_stress_detects_missing_grace_period },
};

/* With arguments, runs only the tests named (e.g. "stress"). */
static bool selected(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return argc == 1;
}

int main(int argc, char **argv)
{
	uint64_t t0 = clock_ns();
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (i = 0; i < ARRAY_SIZE(tests); i++)
		if (selected(argc, argv, tests[i].name))
			tests[i].fn();
	rcu_barrier();
	printf("test_rcu: passed in %llu ms\n", (unsigned long long)((clock_ns() - t0) / MS));
	return 0;
}
