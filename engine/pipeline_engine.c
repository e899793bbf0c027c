/* A pipeline's engine thread: which transactions and changes go on to the sink (what the sink
 * already holds, echoes, row versions), and where batches end (the batching policy). The thread
 * model is in pipeline.c's DESIGN comment. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/copies.h"
#include "cdcsync/log.h"
#include "pipeline_int.h"

/* ---- engine thread ---- */

/* Ends the open batch at ckpt, after the transaction txn: versions made durable first, then the
 * sink is told to commit. */
static int end_batch(Pipeline *p, const TxnInfo *txn, const Checkpoint *ckpt, CdcError *err) {
        if (p->rows) {
                int r = rowstate_batch_commit(p->rows, ckpt->pos, err);
                if (r < 0)
                        return r;
        }
        Event be = {.kind = EVENT_BATCH_END, .ckpt = *ckpt, .txn = *txn, .batch_no = p->batch_no};
        return queue_push(p->q_sink, &be);
}

/* Versions of deleted rows are kept tombstone_days, then dropped: at most hourly, when the
 * source is idle and no batch holds the store's write lock. */
static void prune_tombstones(Pipeline *p, bool batch_open) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!p->rows || batch_open || (p->pruned_at && now.tv_sec - p->pruned_at < 3600))
                return;
        p->pruned_at = now.tv_sec;
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        int r = rowstate_prune(p->rows, (int64_t)wall.tv_sec * 1000000 + wall.tv_nsec / 1000);
        if (r > 0)
                log_info(p->ctx, "pruned %d row version(s) of rows deleted more than %d day(s) ago", r,
                         p->conf->tombstone_days);
        else if (r < 0)
                log_warn(p->ctx, "cannot prune old tombstones: %s", strerror(-r));
}

/* Bidirectional sync: the version tag of the change just decided goes to the sink just before
 * it. Returns 1 when a tag was sent, 0 when there is none, -ECANCELED on stop, or an error. */
static int push_tag(Pipeline *p, const TxnInfo *txn, CdcError *err) {
        Event tag = {.kind = EVENT_CHANGE, .txn = *txn};
        int r = rowstate_tag(p->rows, &tag.change);
        if (r < 0)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "out of memory");
        if (r == 0)
                return 0;
        r = queue_push(p->q_sink, &tag);
        if (r < 0) {
                event_clear(&tag);
                return -ECANCELED;
        }
        return 1;
}

/* A change the engine itself sends (a delete decided from a tag), after its tag. */
static int push_tagged(Pipeline *p, Event *ev, CdcError *err) {
        int r = push_tag(p, &ev->txn, err);
        if (r >= 0)
                r = queue_push(p->q_sink, ev) < 0 ? -ECANCELED : 0;
        if (r < 0)
                event_clear(ev);
        return r;
}

/* The engine thread's view of the stream: the transaction being read and the batch being built. */
typedef struct {
        Pipeline *p;
        TxnInfo txn;       /* the transaction being read, or the last one read */
        Checkpoint ckpt;   /* the last COMMIT read: where the open batch ends */
        bool in_txn;       /* between its BEGIN and its COMMIT */
        bool skip_txn;     /* dropped whole: the sink holds it, or it is our own write coming back */
        bool echo_txn;     /* the reverse pipeline's write coming back (bidirectional sync) */
        uint32_t seq;      /* changes of txn decided so far */
        bool batch_open;   /* a batch was begun towards the sink and not ended */
        size_t batch_rows; /* changes (version tags included) in the open batch */
        CdcError err;
} Engine;

/* What an event handler did with the event: hand it on to the sink, or it is done with. */
enum { EVENT_FORWARD = 0, EVENT_CONSUMED = 1 };

static int on_begin(Engine *e, const Event *ev) {
        Pipeline *p = e->p;
        e->in_txn = true;
        e->txn = ev->txn;
        e->seq = 0;
        /* The slot may resend transactions up to its confirmed position, which can trail the
         * sink's checkpoint. */
        e->skip_txn = p->have_start && position_cmp(e->txn.commit_pos, p->start_pos) <= 0 && !e->txn.snapshot;
        /* Our reverse pipeline's own write coming back: never sent back. */
        e->echo_txn = !e->skip_txn && bidi_is_echo(&p->peers, e->txn.origin);
        if (e->echo_txn) {
                /* With row versions its changes still tell what the source holds. */
                e->skip_txn = !p->rows;
                p->echoes++;
                log_debug(p->ctx, "dropped echo transaction %llu (origin %s, %llu so far)",
                          (unsigned long long)e->txn.xid, e->txn.origin, (unsigned long long)p->echoes);
        }
        if (e->skip_txn)
                return EVENT_CONSUMED;
        if (!e->batch_open && p->rows) {
                int r = rowstate_batch_begin(p->rows, p->batch_no + 1, &e->err);
                if (r < 0)
                        return r;
        }
        if (!e->batch_open)
                p->batch_no++;
        e->batch_open = true;
        return EVENT_FORWARD;
}

/* A row of our own bookkeeping in the source (bidirectional sync's version tags) is read, never
 * copied; a delete it tells of may have to go on to the sink. */
static int on_tag_row(Engine *e, Event *ev) {
        Pipeline *p = e->p;
        Event fw = {.kind = EVENT_CHANGE, .txn = e->txn};
        int r = e->echo_txn && p->rows       ? rowstate_echo_tag(p->rows, &e->txn, &ev->change, &fw.change, &e->err)
                : e->txn.snapshot && p->rows ? rowstate_copy_tag(p->rows, &ev->change, &e->err)
                                             : 0;
        if (r <= 0)
                return r < 0 ? r : EVENT_CONSUMED;
        r = push_tagged(p, &fw, &e->err);
        if (r < 0)
                return r;
        e->batch_rows += 2;
        return EVENT_CONSUMED;
}

static int on_change(Engine *e, Event *ev) {
        Pipeline *p = e->p;
        if (e->skip_txn)
                return EVENT_CONSUMED;
        /* Sinks read the transaction header from each change (Kafka: position, txId, snapshot); a
         * binlog source sends it only with BEGIN/COMMIT. */
        ev->txn = e->txn;
        if (copies_is_registry(ev->change.table)) {
                /* The source's copy records go to the sink with the copy; the table itself, read
                 * from a log, is not synced. */
                if (!e->txn.snapshot)
                        return EVENT_CONSUMED;
                e->batch_rows++;
                return EVENT_FORWARD;
        }
        if (rowstate_is_tag_table(ev->change.table))
                return on_tag_row(e, ev);
        if (p->shape) {
                change_drop_text(&ev->change); /* the images may change: the sink escapes them */
                int r = shape_apply(p->shape, &ev->change, e->txn.commit_ts, e->txn.snapshot, &e->err);
                if (r < 0)
                        return r;
                if (r == SHAPE_DROP)
                        return EVENT_CONSUMED;
        }
        if (p->rows) {
                bool apply = true;
                int r = e->echo_txn ? rowstate_echo(p->rows, &e->txn, &ev->change, e->seq, &apply, &e->err)
                                    : rowstate_check(p->rows, &e->txn, &ev->change, e->seq, &apply, &e->err);
                if (r < 0)
                        return r;
                e->seq++;
                if (!apply)
                        return EVENT_CONSUMED;
                r = push_tag(p, &e->txn, &e->err);
                if (r < 0)
                        return r;
                e->batch_rows += (size_t)r;
        }
        e->batch_rows++;
        return EVENT_FORWARD;
}

static int on_commit(Engine *e, const Event *ev) {
        Pipeline *p = e->p;
        e->in_txn = false;
        /* A MySQL source knows where a transaction ends only at its commit. A batch that ends now
         * ends after this transaction, also when it was skipped (it is in the sink, or an echo). */
        e->txn = ev->txn;
        e->ckpt = ev->ckpt;
        if (e->skip_txn) {
                e->skip_txn = false;
                atomic_store(&p->stats.oldest_pending_ts, pipeline_pending_pop(&p->pending, 1));
                return EVENT_CONSUMED;
        }
        return EVENT_FORWARD;
}

static int engine_handle(Engine *e, Event *ev) {
        switch (ev->kind) {
        case EVENT_BEGIN: return on_begin(e, ev);
        case EVENT_CHANGE: return on_change(e, ev);
        case EVENT_COMMIT: return on_commit(e, ev);
        case EVENT_KEEPALIVE: return e->in_txn ? EVENT_CONSUMED : EVENT_FORWARD;
        default: return EVENT_CONSUMED;
        }
}

/* Batching policy. A batch ends only between transactions: at the COMMIT that brings it to
 * batch_max_rows, or as soon as the source has nothing more right now and the sink has taken
 * all it was given (low latency under light load), or on stop. While the sink is still busy
 * with what came before (its queue holds more than this COMMIT), ending the batch would not
 * apply it any sooner: it grows instead, so a sink that falls behind gets fewer, larger
 * batches rather than one commit per source transaction (in a catch-up the source's queue
 * runs empty for moments, and with the sink's own commits handed to a sender thread those
 * moments had cut 3,000-row batches into 350-row ones). */
static bool batch_ends_after(Engine *e, EventKind forwarded) {
        Pipeline *p = e->p;
        return e->batch_open && !e->in_txn &&
               ((forwarded == EVENT_COMMIT && e->batch_rows >= (size_t)p->conf->batch_max_rows) ||
                (queue_depth(p->q_src) == 0 && queue_depth(p->q_sink) <= 1) || pipeline_ending(p));
}

/* ... and while waiting: between transactions with nothing more coming (the wait timed out, or
 * only a keepalive came), the open batch is committed now rather than held until the next one. */
static bool batch_ends_idle(const Engine *e, int popped, const Event *ev) {
        return e->batch_open && !e->in_txn && (popped == -ETIMEDOUT || (popped == 0 && ev->kind == EVENT_KEEPALIVE));
}

/* Ends the open batch; returns 0, -ECANCELED on stop, or an error. */
static int engine_end_batch(Engine *e) {
        int r = end_batch(e->p, &e->txn, &e->ckpt, &e->err);
        if (r == 0) {
                e->batch_open = false;
                e->batch_rows = 0;
        }
        return r;
}

void *pipeline_engine_main(void *arg) {
        Engine e = {.p = arg};
        Pipeline *p = e.p;
        Event ev = {0};
        int r;

        for (;;) {
                /* On stop, complete transactions already handed on are committed; a transaction
                 * read only in part is dropped (the sink rolls it back; it is read again later). */
                if (pipeline_ending(p)) {
                        if (e.batch_open && !e.in_txn) {
                                r = engine_end_batch(&e);
                                if (r < 0 && r != -ECANCELED)
                                        goto fail;
                        }
                        break;
                }
                r = queue_pop(p->q_src, &ev, 200);
                if (batch_ends_idle(&e, r, &ev)) {
                        int x = engine_end_batch(&e);
                        if (x < 0 && x != -ECANCELED) {
                                r = x;
                                goto fail;
                        }
                        e.batch_open = false;
                        e.batch_rows = 0;
                }
                pipeline_note_depth(p);
                if (r == -ETIMEDOUT) {
                        prune_tombstones(p, e.batch_open);
                        continue;
                }
                if (r < 0)
                        break;
                r = engine_handle(&e, &ev);
                if (r == -ECANCELED) {
                        event_clear(&ev);
                        break;
                }
                if (r < 0)
                        goto fail;
                if (r == EVENT_CONSUMED) {
                        event_clear(&ev);
                        continue;
                }
                EventKind kind = ev.kind;
                if (queue_push(p->q_sink, &ev) < 0) {
                        event_clear(&ev);
                        break;
                }
                if (batch_ends_after(&e, kind)) {
                        r = engine_end_batch(&e);
                        if (r == -ECANCELED)
                                break;
                        if (r < 0)
                                goto fail;
                }
        }
        if (e.batch_open && p->rows)
                rowstate_batch_abort(p->rows);
        /* Tell the sink nothing more comes: it rolls back an incomplete batch. */
        Event end = {.kind = EVENT_END};
        queue_push(p->q_sink, &end);
        return NULL;
fail:
        event_clear(&ev);
        if (e.batch_open && p->rows)
                rowstate_batch_abort(p->rows);
        pipeline_fail_attempt(p, &e.err);
        return NULL;
}
