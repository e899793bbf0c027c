/* A pipeline's sink thread: applies each batch in one sink transaction with its checkpoint, and
 * publishes what is durable (at once for a database sink, when delivered for one that commits
 * asynchronously, Kafka). The thread model is in pipeline.c's DESIGN comment. */
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

/* Batches committed with commit_async and not yet durable, oldest first (sink thread only). */
#define PENDING_BATCHES_MAX 16
typedef struct {
        Position pos;
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
        bool any = false;
        uint64_t batch_no = 0;
        size_t txns = 0;
        while (pb->count > 0 && position_cmp(pb->b[pb->head].pos, pos) <= 0) {
                batch_no = pb->b[pb->head].batch_no;
                txns += pb->b[pb->head].txns;
                pb->head = (pb->head + 1) % PENDING_BATCHES_MAX;
                pb->count--;
                any = true;
        }
        if (!any)
                return 0;
        atomic_store(&p->stats.oldest_pending_ts, pipeline_pending_pop(&p->pending, txns));
        pipeline_set_durable(p, pos);
        if (p->rows)
                rowstate_batch_done(p->rows, batch_no);
        return 0;
}

void *pipeline_sink_main(void *arg) {
        Pipeline *p = arg;
        Event ev = {0};
        CdcError err = {0};
        bool open = false;
        uint64_t counts[4] = {0};
        size_t txns = 0;
        struct timespec t0 = {0};
        bool async = p->sink_ops->commit_async && p->sink_ops->poll_durable;
        PendingBatches pb = {0};
        int r;

        for (;;) {
                /* With batches pending, the wait is spent serving the sink instead. */
                r = queue_pop(p->q_sink, &ev, pb.count ? 0 : 1000);
                atomic_store(&p->stats.last_progress_ts, now_usec());
                pipeline_note_depth(p);
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
                        if (!open) {
                                clock_gettime(CLOCK_MONOTONIC, &t0);
                                r = p->sink_ops->begin(p->sink, &err);
                                if (r < 0)
                                        goto fail;
                                open = true;
                        }
                        break;
                case EVENT_CHANGE:
                        r = p->sink_ops->apply(p->sink, &ev.txn, &ev.change, &err);
                        if (r < 0)
                                goto fail;
                        switch (ev.change.op) {
                        case CHANGE_INSERT: counts[0]++; break;
                        case CHANGE_UPDATE: counts[1]++; break;
                        case CHANGE_DELETE: counts[2]++; break;
                        case CHANGE_TRUNCATE: counts[3]++; break;
                        }
                        break;
                case EVENT_COMMIT: txns++; break;
                case EVENT_KEEPALIVE:
                        /* Everything before ev.pos was emitted and, with no batch open or pending
                         * here, committed: the position may advance past an idle stretch of log. */
                        if (!open && pb.count == 0 && queue_depth(p->q_sink) == 0 && !position_is_zero(ev.pos))
                                pipeline_set_durable(p, ev.pos);
                        break;
                case EVENT_END: event_clear(&ev); goto out;
                case EVENT_BATCH_END:
                        if (!open)
                                break;
                        {
                                /* 256: what every sink's checkpoint column holds */
                                char text[256];
                                pipeline_format_pos(p, ev.pos, text, sizeof(text));
                                if (async) {
                                        while (pb.count == PENDING_BATCHES_MAX) {
                                                r = poll_durable(p, &pb, 100, &err);
                                                if (r < 0)
                                                        goto fail;
                                        }
                                        r = p->sink_ops->commit_async(p->sink, ev.pos, text, &ev.txn, &err);
                                } else {
                                        r = p->sink_ops->commit(p->sink, ev.pos, text, &ev.txn, &err);
                                }
                                if (r < 0)
                                        goto fail;
                        }
                        open = false;
                        stats_observe_batch(&p->stats, elapsed_s(&t0));
                        atomic_fetch_add(&p->stats.events[0], counts[0]);
                        atomic_fetch_add(&p->stats.events[1], counts[1]);
                        atomic_fetch_add(&p->stats.events[2], counts[2]);
                        atomic_fetch_add(&p->stats.events[3], counts[3]);
                        atomic_fetch_add(&p->stats.transactions, txns);
                        memset(counts, 0, sizeof(counts));
                        if (async) {
                                size_t i = (pb.head + pb.count++) % PENDING_BATCHES_MAX;
                                pb.b[i] = (PendingBatch){ev.pos, ev.batch_no, txns};
                                txns = 0;
                                r = poll_durable(p, &pb, 0, &err);
                                if (r < 0)
                                        goto fail;
                                break;
                        }
                        atomic_store(&p->stats.oldest_pending_ts, pipeline_pending_pop(&p->pending, txns));
                        txns = 0;
                        pipeline_set_durable(p, ev.pos);
                        if (p->rows)
                                rowstate_batch_done(p->rows, ev.batch_no);
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
        if (open)
                p->sink_ops->rollback(p->sink);
        return NULL;
fail:
        event_clear(&ev);
        if (open)
                p->sink_ops->rollback(p->sink);
        pipeline_fail_attempt(p, &err);
        return NULL;
}
