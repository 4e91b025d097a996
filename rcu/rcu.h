/*
 * Userspace RCU (read-copy-update) on C11 atomics.
 *
 * Readers: a thread calls rcu_register_thread() once, then brackets each
 * read-side critical section with rcu_read_lock()/rcu_read_unlock(). Read
 * sections are wait-free, may nest, and must not block (no sleeping, no
 * synchronize_rcu inside).
 *
 * Writers build a new object, publish it with rcu_assign_pointer(), then
 * either wait with synchronize_rcu() (never from inside a read section) or
 * hand the old object to call_rcu(), whose callback runs on the reclaim
 * thread after a grace period, i.e. once every reader that could have seen
 * the old pointer has left its read section.
 */
#ifndef RCU_RCU_H
#define RCU_RCU_H

#include <stdatomic.h>

/* Publish: every store that initialised *v happens-before a reader that
 * sees the new pointer (release pairs with the acquire in rcu_dereference). */
#define rcu_assign_pointer(p, v) atomic_store_explicit(&(p), (v), memory_order_release)
/* Read a published pointer inside a read section. */
#define rcu_dereference(p) atomic_load_explicit(&(p), memory_order_acquire)

/* Embed in the object to reclaim. Both fields belong to rcu.c once the head
 * is passed to call_rcu; next is atomic because the queue is wait-free. */
struct rcu_head {
	_Atomic(struct rcu_head *) next;
	void (*func)(struct rcu_head *head);
};

/* Every thread that calls rcu_read_lock must register first, and unregister
 * before it exits (outside any read section). */
void rcu_register_thread(void);
void rcu_unregister_thread(void);

void rcu_read_lock(void);
void rcu_read_unlock(void);

/* Waits until every read section that started before the call has ended.
 * Must not be called inside a read section. Any registered or unregistered
 * thread may call it. */
void synchronize_rcu(void);

/* Queues func(head) to run on the reclaim thread after a grace period.
 * Wait-free for the caller; callable from any thread, including inside a
 * read section. The reclaim thread starts on first use (that one call may
 * block while it is created). Callbacks run one at a time, in the order
 * their call_rcu calls were made; they may use rcu_read_lock and call_rcu,
 * but not rcu_barrier. */
void call_rcu(struct rcu_head *head, void (*func)(struct rcu_head *head));

/* Waits until every callback queued before the call has run. Used at
 * teardown and by tests. Must not be called inside a read section. */
void rcu_barrier(void);

#endif
