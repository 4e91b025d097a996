/*
 * A pthread mutex that clang's -Wthread-safety can follow: fields say
 * GUARDED_BY(the mutex) and functions REQUIRES(it). Errors from pthread on
 * a default mutex mean a broken invariant, so they are asserted.
 */
#ifndef CORE_MUTEX_H
#define CORE_MUTEX_H

#include <assert.h>
#include <pthread.h>

#include "core/thread_annot.h"

struct CAPABILITY("mutex") mutex {
	pthread_mutex_t m;
};

#define MUTEX_INIT { PTHREAD_MUTEX_INITIALIZER }

static inline void mutex_init(struct mutex *mu)
{
	pthread_mutex_init(&mu->m, NULL);
}

static inline void mutex_destroy(struct mutex *mu)
{
	pthread_mutex_destroy(&mu->m);
}

static inline void mutex_lock(struct mutex *mu) ACQUIRE(mu) NO_THREAD_SAFETY_ANALYSIS
{
	int err = pthread_mutex_lock(&mu->m);

	assert(err == 0);
	(void)err;
}

static inline void mutex_unlock(struct mutex *mu) RELEASE(mu) NO_THREAD_SAFETY_ANALYSIS
{
	int err = pthread_mutex_unlock(&mu->m);

	assert(err == 0);
	(void)err;
}

/* For callbacks whose caller holds mu (the analysis cannot follow function
 * pointers): checks that someone holds it and tells the analysis we do. */
static inline void mutex_assert_held(struct mutex *mu) ASSERT_CAPABILITY(mu)
	NO_THREAD_SAFETY_ANALYSIS
{
	assert(pthread_mutex_trylock(&mu->m) != 0);
}

/* pthread_cond_wait on mu, which the caller holds before and after. */
static inline void mutex_cond_wait(pthread_cond_t *cond, struct mutex *mu) REQUIRES(mu)
	NO_THREAD_SAFETY_ANALYSIS
{
	int err = pthread_cond_wait(cond, &mu->m);

	assert(err == 0);
	(void)err;
}

#endif
