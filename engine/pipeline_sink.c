/* A pipeline's sink thread: applies each batch with its checkpoint, and publishes what the sink
 * reports durable (a database sink at once or when its sender thread committed, Kafka when
 * delivered). The thread model is in pipeline.c's DESIGN comment. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/now.h"
#include "pipeline_int.h"

/* ---- sink thread ---- */

static double elapsed_s(const struct timespec *t0) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

int pipeline_batch_event(Pipeline *p, Sink *k, SinkBatch *b, const Event *ev, CdcError *err) {
        int r;
        switch (ev->kind) {
        case EVENT_BEGIN:
                if (b->open)
                        return 0;
                clock_gettime(CLOCK_MONOTONIC, &b->t0);
                r = p->sink_ops->begin(k, err);
                if (r < 0)
                        return r;
                b->open = true;
                return 0;
        case EVENT_CHANGE:
                r = p->sink_ops->apply(k, &ev->txn, &ev->change, err);
                if (r < 0)
                        return r;
                switch (ev->change.op) {
                case CHANGE_INSERT: b->counts[0]++; break;
                case CHANGE_UPDATE: b->counts[1]++; break;
                case CHANGE_DELETE: b->counts[2]++; break;
                case CHANGE_TRUNCATE: b->counts[3]++; break;
                }
                return 0;
        case EVENT_COMMIT: b->txns++; return 0;
        default: return 0;
        }
}

void pipeline_batch_counted(Pipeline *p, SinkBatch *b) {
        stats_observe_batch(&p->stats, elapsed_s(&b->t0));
        for (int i = 0; i < 4; i++)
                atomic_fetch_add(&p->stats.events[i], b->counts[i]);
        atomic_fetch_add(&p->stats.transactions, b->txns);
        memset(b->counts, 0, sizeof(b->counts));
        b->txns = 0;
}

/* Batches committed and not yet reported durable, oldest first (sink thread only). */
#define PENDING_BATCHES_MAX 16
#define NOTE_EVENTS 64 /* events between two notes of progress and queue depth */
typedef struct {
        Checkpoint ckpt; /* the batch's end */
        uint64_t batch_no;
        size_t txns;
} PendingBatch;
typedef struct {
        PendingBatch b[PENDING_BATCHES_MAX];
        size_t head, count;
} PendingBatches;

/* Asks the sink which pending batches became durable, and makes them so here: position
 * published, row versions done, lag moved on. */
static int poll_durable(Pipeline *p, PendingBatches *pb, int timeout_ms, CdcError *err) {
        Position pos;
        bool found = false;
        int r = p->sink_ops->poll_durable(p->sink, timeout_ms, &pos, &found, err);
        if (r < 0 || !found)
                return r;
        const PendingBatch *newest = NULL;
        size_t txns = 0;
        while (pb->count > 0 && position_cmp(pb->b[pb->head].ckpt.pos, pos) <= 0) {
                newest = &pb->b[pb->head];
                txns += newest->txns;
                pb->head = (pb->head + 1) % PENDING_BATCHES_MAX;
                pb->count--;
        }
        if (!newest)
                return 0;
        atomic_store(&p->stats.oldest_pending_ts, pipeline_pending_pop(&p->pending, txns));
        pipeline_set_durable(p, &newest->ckpt);
        if (p->rows)
                rowstate_batch_done(p->rows, newest->batch_no);
        return 0;
}

void *pipeline_sink_main(void *arg) {
        Pipeline *p = arg;
        Event ev = {0};
        CdcError err = {0};
        SinkBatch b = {0};
        PendingBatches pb = {0};
        unsigned unnoted = 0;
        int r;

        for (;;) {
                /* With batches pending, the wait is spent serving the sink instead. */
                r = queue_pop(p->q_sink, &ev, pb.count ? 0 : 1000);
                /* alive and queue depth: when the queue is idle, and every NOTE_EVENTS events (a
                 * clock read for each was ~2 % of cdcsync's samples on pgbench's backlog) */
                if (r < 0 || ++unnoted >= NOTE_EVENTS) {
                        unnoted = 0;
                        atomic_store(&p->stats.last_progress_ts, now_usec());
                        pipeline_note_depth(p);
                }
                if (r == -ETIMEDOUT && pb.count) {
                        r = poll_durable(p, &pb, 10, &err);
                        if (r < 0)
                                goto fail;
                        continue;
                }
                if (r == -ETIMEDOUT)
                        continue;
                if (r < 0)
                        break;
                switch (ev.kind) {
                case EVENT_BEGIN:
                case EVENT_CHANGE:
                case EVENT_COMMIT:
                        r = pipeline_batch_event(p, p->sink, &b, &ev, &err);
                        if (r < 0)
                                goto fail;
                        break;
                case EVENT_KEEPALIVE:
                        /* Everything before ev.ckpt.pos was emitted and, with no batch open or pending
                         * here, committed: the position may advance past an idle stretch of log. */
                        if (!b.open && pb.count == 0 && queue_depth(p->q_sink) == 0 && !position_is_zero(ev.ckpt.pos))
                                pipeline_set_durable(p, &ev.ckpt);
                        break;
                case EVENT_END: event_clear(&ev); goto out;
                case EVENT_BATCH_END:
                        if (!b.open)
                                break;
                        while (pb.count == PENDING_BATCHES_MAX) {
                                r = poll_durable(p, &pb, 100, &err);
                                if (r < 0)
                                        goto fail;
                        }
                        r = p->sink_ops->commit(p->sink, &ev.ckpt, &ev.txn, &err);
                        if (r < 0)
                                goto fail;
                        b.open = false;
                        pb.b[(pb.head + pb.count++) % PENDING_BATCHES_MAX] =
                                (PendingBatch){ev.ckpt, ev.batch_no, b.txns};
                        pipeline_batch_counted(p, &b);
                        r = poll_durable(p, &pb, 0, &err);
                        if (r < 0)
                                goto fail;
                        break;
                }
                event_clear(&ev);
        }
out:
        /* Stop or end of the attempt: what was committed is waited for (the sink gives up after
         * its delivery timeout) and only what was delivered becomes durable. A half batch is
         * rolled back after that, since a rollback abandons the pending batches too. */
        while (pb.count > 0) {
                r = poll_durable(p, &pb, 100, &err);
                if (r < 0)
                        goto fail;
        }
        if (b.open)
                p->sink_ops->rollback(p->sink);
        return NULL;
fail:
        event_clear(&ev);
        if (b.open)
                p->sink_ops->rollback(p->sink);
        pipeline_fail_attempt(p, &err);
        return NULL;
}
