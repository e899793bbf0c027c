/* A bounded, blocking FIFO of events between two pipeline threads. */
#pragma once

#include <stddef.h>

#include "cdcsync/connector.h"

typedef struct Queue Queue;

/* capacity: maximum number of events held; a full queue blocks the producer (bounded memory). */
int queue_new(size_t capacity, Queue **ret);
/* Frees the queue and every event still in it. Accepts NULL, returns NULL. */
Queue *queue_free(Queue *q);
/* Moves *ev into the queue (ev is zeroed, but for a BEGIN or CHANGE only up to its unused
 * checkpoint: event_used_size). Blocks while full. Returns 0, or -ECANCELED once the
 * queue is closed (ev is left untouched: the caller still owns it). */
int queue_push(Queue *q, Event *ev);
/* Moves the oldest event into *ret (a BEGIN or CHANGE with an empty checkpoint). Waits at most timeout_ms (-1:
 * forever). Returns 0, -ETIMEDOUT, or -ECANCELED when the queue is closed (remaining events are dropped by queue_free).
 * A waiting consumer is woken by an event that ends something (every kind but BEGIN and CHANGE) or by a run of queued
 * events, not by each BEGIN or CHANGE (see queue.c). */
int queue_pop(Queue *q, Event *ret, int timeout_ms);
/* Wakes every waiter; later pushes and pops fail with -ECANCELED. */
void queue_close(Queue *q);
/* Events queued as of a moment just past (read without the lock: it is called for every event). */
size_t queue_depth(Queue *q);
