/* A bounded blocking ring of events: the only channel between a pipeline's threads. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/now.h"
#include "cdcsync/queue.h"

/* DESIGN (wake-ups). Threads hand events over one at a time, and the consumer is usually faster
 * than its producer: woken for every event it would sleep and wake once per event, and on a
 * 2-core machine those context switches were ~40 % of cdcsync's CPU samples (pgbench's TPC-B
 * backlog, perf). So a sleeping consumer is woken only where it can act on what it gets: at the
 * end of a transaction or batch (COMMIT, KEEPALIVE, BATCH_END, END) or once WAKE_EVENTS wait;
 * a waiting producer only once the queue has drained to half (it then refills a run). Nothing
 * waits longer for it: a transaction is applied only at its COMMIT, and a consumer that is awake
 * takes whatever is queued. */
#define WAKE_EVENTS 64

struct Queue {
        pthread_mutex_t lock;
        pthread_cond_t not_empty;
        pthread_cond_t not_full;
        Event *ring; /* owned, capacity entries */
        size_t capacity;
        size_t head; /* next to pop */
        size_t count;
        atomic_size_t depth; /* count, for queue_depth without the lock */
        /* threads asleep on not_empty / not_full: a signal nobody waits for is not sent (the
         * producer and consumer are mostly both awake, and a signal is a futex word's cache line) */
        unsigned empty_waiters, full_waiters;
        bool closed;
};

int queue_new(size_t capacity, Queue **ret) {
        Queue *q = calloc(1, sizeof(*q));
        if (!q)
                return -ENOMEM;
        q->ring = calloc(capacity, sizeof(Event));
        if (!q->ring) {
                free(q);
                return -ENOMEM;
        }
        q->capacity = capacity;
        pthread_mutex_init(&q->lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&q->not_empty, &ca);
        pthread_cond_init(&q->not_full, &ca);
        pthread_condattr_destroy(&ca);
        *ret = q;
        return 0;
}

Queue *queue_free(Queue *q) {
        if (!q)
                return NULL;
        for (size_t i = 0; i < q->count; i++)
                event_clear(&q->ring[(q->head + i) % q->capacity]);
        free(q->ring);
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->not_empty);
        pthread_cond_destroy(&q->not_full);
        free(q);
        return NULL;
}

int queue_push(Queue *q, Event *ev) {
        pthread_mutex_lock(&q->lock);
        while (q->count == q->capacity && !q->closed) {
                q->full_waiters++;
                pthread_cond_wait(&q->not_full, &q->lock);
                q->full_waiters--;
        }
        if (q->closed) {
                pthread_mutex_unlock(&q->lock);
                return -ECANCELED;
        }
        EventKind kind = ev->kind;
        size_t used = event_used_size(kind);
        memcpy(&q->ring[(q->head + q->count) % q->capacity], ev, used);
        q->count++;
        atomic_store_explicit(&q->depth, q->count, memory_order_relaxed);
        memset(ev, 0, used); /* a BEGIN or CHANGE never had a checkpoint to clear */
        if (q->empty_waiters &&
            ((kind != EVENT_BEGIN && kind != EVENT_CHANGE) || q->count >= WAKE_EVENTS || q->count == q->capacity))
                pthread_cond_signal(&q->not_empty);
        pthread_mutex_unlock(&q->lock);
        return 0;
}

int queue_pop(Queue *q, Event *ret, int timeout_ms) {
        struct timespec deadline = {0};
        bool have_deadline = false;
        pthread_mutex_lock(&q->lock);
        while (q->count == 0 && !q->closed) {
                if (timeout_ms >= 0 && !have_deadline) { /* read the clock only when about to wait */
                        deadline = now_after_ms(CLOCK_MONOTONIC, timeout_ms);
                        have_deadline = true;
                }
                q->empty_waiters++;
                int w = timeout_ms < 0 ? pthread_cond_wait(&q->not_empty, &q->lock)
                                       : pthread_cond_timedwait(&q->not_empty, &q->lock, &deadline);
                q->empty_waiters--;
                if (w == ETIMEDOUT) {
                        pthread_mutex_unlock(&q->lock);
                        return -ETIMEDOUT;
                }
        }
        if (q->closed) {
                pthread_mutex_unlock(&q->lock);
                return -ECANCELED;
        }
        /* Only the used part; the slot keeps its stale bytes (queue_free clears live slots only). */
        const Event *slot = &q->ring[q->head];
        size_t used = event_used_size(slot->kind);
        memcpy(ret, slot, used);
        if (used < sizeof(Event)) {
                ret->ckpt.pos = (Position){0};
                ret->ckpt.text[0] = '\0';
        }
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        atomic_store_explicit(&q->depth, q->count, memory_order_relaxed);
        if (q->full_waiters && q->count <= q->capacity / 2)
                pthread_cond_signal(&q->not_full);
        pthread_mutex_unlock(&q->lock);
        return 0;
}

void queue_close(Queue *q) {
        pthread_mutex_lock(&q->lock);
        q->closed = true;
        pthread_cond_broadcast(&q->not_empty);
        pthread_cond_broadcast(&q->not_full);
        pthread_mutex_unlock(&q->lock);
}

size_t queue_depth(Queue *q) {
        return atomic_load_explicit(&q->depth, memory_order_relaxed);
}
