/* A pipeline: supervisor, source, engine and sink threads joined by bounded queues.
 *
 * DESIGN. Each pipeline has one supervisor thread. An "attempt" is: open the sink, read its
 * checkpoint, recover the row-version state to it, open the source, then run three threads:
 *
 *   source thread  reads the source's log, emits BEGIN/CHANGE/COMMIT/KEEPALIVE into q_src
 *   engine thread  drops transactions the sink already holds, checks row versions (replays and
 *                  echoes are skipped), groups whole transactions into batches, marks a batch's
 *                  end with BATCH_END into q_sink
 *   sink thread    applies a batch in one sink transaction with the checkpoint, commits, then
 *                  publishes the batch's end as the durable position. A sink with commit_async
 *                  (Kafka) is not waited for: the next batch is applied while earlier ones are
 *                  delivered, and a batch's end becomes durable only when poll_durable says so
 *
 * The source acknowledges upstream only pipeline_io_durable(), so nothing is acknowledged that
 * is not committed in the sink. Threads talk only through the two queues and atomics / the small
 * mutex-guarded `durable` position. Any thread that fails records the error and asks the attempt
 * to end; the supervisor joins the threads, and retries with backoff (retriable errors) or marks
 * the pipeline failed. Stopping: the engine ends the open batch at the next transaction boundary
 * (or abandons a half-read transaction: it is rolled back and read again next time), the sink
 * commits what it holds, and only then is the source told to stop and acknowledge.
 *
 * A monitor thread lives as long as the pipeline (across attempts): about once a second it asks
 * the source, over a connection of its own (SourceOps.probe), where its log ends now. With the
 * stream's keepalives these observations and the durable position make lag (lag.h): measured
 * against the source, also while the stream stalls, the sink is frozen or the pipeline is down. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/bidi.h"
#include "cdcsync/connector.h"
#include "cdcsync/copies.h"
#include "cdcsync/guard.h"
#include "cdcsync/lag.h"
#include "cdcsync/log.h"
#include "cdcsync/pipeline.h"
#include "cdcsync/queue.h"
#include "cdcsync/rowstate.h"

#define QUEUE_CAPACITY 4096
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
/* An attempt that streamed this long ended an incident: the next one starts from BACKOFF_MIN_MS. */
#define BACKOFF_RESET_USEC (10 * 1000000LL)
#define PROBE_INTERVAL_MS 1000

/* Commit timestamps of transactions read but not yet committed in the sink, oldest first: the
 * head is what lag_seconds measures from. Bounded: when full, later transactions are not
 * recorded, which can only make lag read older (the head stays), never younger. */
typedef struct {
        pthread_mutex_t lock;
        int64_t *ts; /* owned, cap entries */
        size_t cap, head, count;
} PendingTs;

struct PipelineIO {
        Pipeline *p;
};

struct Pipeline {
        const PipelineConf *conf;
        const SourceOps *source_ops;
        const SinkOps *sink_ops;
        State *state;     /* shared store, borrowed; may be NULL */
        RowState *rows;   /* this pipeline's view of state, NULL when state is NULL */
        time_t pruned_at; /* monotonic seconds of the last tombstone pruning, engine thread only */
        PipelineStats stats;
        BidiPeers peers;     /* echo marks of reverse pipelines (bidirectional sync) */
        uint64_t echoes;     /* echo transactions dropped, engine thread only */
        char ctx[256];       /* "[pipeline=X source=Y sink=Z]" */
        char spill_dir[512]; /* state_dir/spill/<pipeline> */
        pthread_t supervisor;
        atomic_bool stop;    /* the service asked this pipeline to stop */
        atomic_bool settled; /* streaming or failed once */
        /* Per attempt. */
        Queue *q_src, *q_sink;
        atomic_bool attempt_end; /* a thread failed, or stop: engine and sink wind down */
        atomic_bool source_stop; /* sink done: the source may acknowledge and return */
        pthread_mutex_t err_lock;
        CdcError err; /* first error of the attempt, guarded by err_lock */
        bool have_err;
        pthread_mutex_t pos_lock;
        Position durable;   /* guarded by pos_lock */
        Position start_pos; /* sink checkpoint at attempt start */
        bool have_start;
        uint64_t batch_no;
        PendingTs pending;
        PipelineIO io;
        Source *source;
        Sink *sink;
        pthread_mutex_t stop_lock; /* with stop_cond: wakes the supervisor's backoff sleep and the monitor */
        pthread_cond_t stop_cond;
        atomic_int_fast64_t streaming_since; /* usec: this attempt streams since; 0: not yet */
        pthread_mutex_t lag_lock;            /* guards lag */
        LagTracker lag;
        pthread_t monitor;
        bool monitor_started;
};

static int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void pending_push(PendingTs *pt, int64_t ts) {
        pthread_mutex_lock(&pt->lock);
        if (pt->count < pt->cap) {
                pt->ts[(pt->head + pt->count) % pt->cap] = ts;
                pt->count++;
        }
        pthread_mutex_unlock(&pt->lock);
}

/* Drops n entries (transactions committed or skipped); returns the new oldest, 0 if none. */
static int64_t pending_pop(PendingTs *pt, size_t n) {
        pthread_mutex_lock(&pt->lock);
        if (n > pt->count)
                n = pt->count;
        pt->head = (pt->head + n) % pt->cap;
        pt->count -= n;
        int64_t oldest = pt->count ? pt->ts[pt->head] : 0;
        pthread_mutex_unlock(&pt->lock);
        return oldest;
}

/* Publishes the lag view for the metrics (with lag_lock held). */
static void lag_publish(Pipeline *p) {
        LagView v;
        lag_view(&p->lag, &v);
        atomic_store(&p->stats.behind_since_ts, v.behind_since);
        atomic_store(&p->stats.synced_ts, v.synced_at);
        atomic_store(&p->stats.contact_ts, v.contact);
        atomic_store(&p->stats.lag_bytes, v.bytes);
        if (!position_is_zero(v.end)) {
                atomic_store(&p->stats.source_end_hi, v.end.hi);
                atomic_store(&p->stats.source_end_lo, v.end.lo);
        }
}

static void note_source_end(Pipeline *p, Position end, uint64_t bytes_hint) {
        pthread_mutex_lock(&p->lag_lock);
        lag_note_source(&p->lag, end, now_usec(), bytes_hint);
        lag_publish(p);
        pthread_mutex_unlock(&p->lag_lock);
}

static void note_applied(Pipeline *p, Position applied) {
        pthread_mutex_lock(&p->lag_lock);
        lag_note_applied(&p->lag, applied);
        lag_publish(p);
        pthread_mutex_unlock(&p->lag_lock);
}

static void pending_reset(PendingTs *pt) {
        pthread_mutex_lock(&pt->lock);
        pt->head = pt->count = 0;
        pthread_mutex_unlock(&pt->lock);
}

/* Records the attempt's first error (later ones are consequences) and ends the attempt. */
static void fail_attempt(Pipeline *p, const CdcError *err) {
        pthread_mutex_lock(&p->err_lock);
        if (!p->have_err) {
                p->err = *err;
                p->have_err = true;
        }
        pthread_mutex_unlock(&p->err_lock);
        atomic_store(&p->attempt_end, true);
        if (p->q_src)
                queue_close(p->q_src);
        if (p->q_sink)
                queue_close(p->q_sink);
}

/* cdcsync_queue_depth: events waiting in both queues; refreshed by whoever pushes or pops, so
 * it drops back to 0 once the sink has taken everything. */
static void note_depth(Pipeline *p) {
        size_t n = (p->q_src ? queue_depth(p->q_src) : 0) + (p->q_sink ? queue_depth(p->q_sink) : 0);
        atomic_store(&p->stats.queue_depth, (int_fast64_t)n);
}

/* The text of a position: the running source's own form when it has one (it may hold more
 * than the Position, e.g. MySQL's GTID state), else the plain one. p->source is set only while
 * an attempt's threads run. */
static void format_pos(Pipeline *p, Position pos, char *buf, size_t len) {
        if (p->source && p->source_ops->format_checkpoint)
                p->source_ops->format_checkpoint(p->source, pos, buf, len);
        else
                p->source_ops->format_position(pos, buf, len);
}

/* ---- what a source sees (connector.h) ---- */

int pipeline_io_emit(PipelineIO *io, Event *ev) {
        Pipeline *p = io->p;
        if (ev->kind == EVENT_BEGIN) {
                pending_push(&p->pending, ev->txn.commit_ts);
                int64_t zero = 0;
                atomic_compare_exchange_strong(&p->stats.oldest_pending_ts, &zero, ev->txn.commit_ts);
        }
        if (ev->kind == EVENT_COMMIT || ev->kind == EVENT_KEEPALIVE) {
                Position pos = ev->kind == EVENT_COMMIT ? ev->txn.commit_pos : ev->pos;
                char text[96];
                atomic_store(&p->stats.received_hi, pos.hi);
                atomic_store(&p->stats.received_lo, pos.lo);
                format_pos(p, pos, text, sizeof(text));
                stats_set_positions_text(&p->stats, text, NULL);
        }
        atomic_store(&p->stats.last_event_ts, now_usec());
        int r = queue_push(p->q_src, ev);
        if (r < 0)
                event_clear(ev);
        note_depth(p);
        return r;
}

Position pipeline_io_durable(PipelineIO *io) {
        pthread_mutex_lock(&io->p->pos_lock);
        Position pos = io->p->durable;
        pthread_mutex_unlock(&io->p->pos_lock);
        return pos;
}

bool pipeline_io_stopping(PipelineIO *io) {
        return atomic_load(&io->p->source_stop);
}

void pipeline_io_report_source_end(PipelineIO *io, Position end, int64_t server_ts) {
        (void)server_ts;
        note_source_end(io->p, end, UINT64_MAX);
        atomic_store(&io->p->stats.last_progress_ts, now_usec());
}

void pipeline_io_report_backlog(PipelineIO *io, uint64_t unread, uint64_t behind) {
        Pipeline *p = io->p;
        pthread_mutex_lock(&p->lag_lock);
        lag_note_backlog(&p->lag, unread, behind, now_usec());
        lag_publish(p);
        pthread_mutex_unlock(&p->lag_lock);
        atomic_store(&p->stats.last_progress_ts, now_usec());
}

const char *pipeline_io_context(PipelineIO *io) {
        return io->p->ctx;
}

static void set_state(Pipeline *p, PipelineState s) {
        if (s == PIPELINE_STREAMING) {
                int_fast64_t zero = 0;
                atomic_compare_exchange_strong(&p->streaming_since, &zero, now_usec());
        }
        stats_set_state(&p->stats, s);
        if (s == PIPELINE_STREAMING || s == PIPELINE_FAILED)
                atomic_store(&p->settled, true);
}

static void set_durable(Pipeline *p, Position pos) {
        char text[96];
        format_pos(p, pos, text, sizeof(text));
        pthread_mutex_lock(&p->pos_lock);
        if (position_cmp(pos, p->durable) > 0)
                p->durable = pos;
        pthread_mutex_unlock(&p->pos_lock);
        atomic_store(&p->stats.applied_hi, pos.hi);
        atomic_store(&p->stats.applied_lo, pos.lo);
        stats_set_positions_text(&p->stats, NULL, text);
        note_applied(p, pos);
}

/* ---- source thread ---- */

typedef struct {
        Pipeline *p;
        SourceStart start;
        char start_text[512]; /* the checkpoint's text, when the sink keeps it */
        CopiedTable *copied;  /* owned: the sink's copy records (start.copied) */
} SourceArgs;

static void *source_main(void *arg) {
        SourceArgs *a = arg;
        Pipeline *p = a->p;
        CdcError err = {0};
        int r = p->source_ops->run(p->source, &a->start, &p->io, &err);
        if (r < 0 && !atomic_load(&p->source_stop))
                fail_attempt(p, &err);
        else if (!atomic_load(&p->attempt_end) && !atomic_load(&p->source_stop)) {
                /* A source that returns 0 without being asked to stop has nothing more to give;
                 * treat it as a retriable end so the pipeline reconnects. */
                cdc_error(&err, -EPIPE, true, "connection", "source ended its stream unexpectedly");
                fail_attempt(p, &err);
        }
        return NULL;
}

/* ---- engine thread ---- */

/* Ends the open batch after the transaction txn: versions made durable first, then the sink is
 * told to commit. */
static int end_batch(Pipeline *p, const TxnInfo *txn, CdcError *err) {
        if (p->rows) {
                int r = rowstate_batch_commit(p->rows, txn->commit_pos, err);
                if (r < 0)
                        return r;
        }
        Event be = {.kind = EVENT_BATCH_END, .pos = txn->commit_pos, .txn = *txn, .batch_no = p->batch_no};
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
                return cdc_error(err, r, true, "internal", "out of memory");
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
        if (e->skip_txn) {
                e->skip_txn = false;
                atomic_store(&p->stats.oldest_pending_ts, pending_pop(&p->pending, 1));
                return EVENT_CONSUMED;
        }
        /* A MySQL source knows where a transaction ends only at its commit. */
        e->txn = ev->txn;
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
 * batch_max_rows, or as soon as the source has nothing more right now (low latency under light
 * load), or on stop. */
static bool batch_ends_after(Engine *e, EventKind forwarded) {
        Pipeline *p = e->p;
        return e->batch_open && !e->in_txn &&
               ((forwarded == EVENT_COMMIT && e->batch_rows >= (size_t)p->conf->batch_max_rows) ||
                queue_depth(p->q_src) == 0 || atomic_load(&p->stop));
}

/* ... and while waiting: between transactions with nothing more coming (the wait timed out, or
 * only a keepalive came), the open batch is committed now rather than held until the next one. */
static bool batch_ends_idle(const Engine *e, int popped, const Event *ev) {
        return e->batch_open && !e->in_txn && (popped == -ETIMEDOUT || (popped == 0 && ev->kind == EVENT_KEEPALIVE));
}

/* Ends the open batch; returns 0, -ECANCELED on stop, or an error. */
static int engine_end_batch(Engine *e) {
        int r = end_batch(e->p, &e->txn, &e->err);
        if (r == 0) {
                e->batch_open = false;
                e->batch_rows = 0;
        }
        return r;
}

static void *engine_main(void *arg) {
        Engine e = {.p = arg};
        Pipeline *p = e.p;
        Event ev = {0};
        int r;

        for (;;) {
                /* On stop, complete transactions already handed on are committed; a transaction
                 * read only in part is dropped (the sink rolls it back; it is read again later). */
                if (atomic_load(&p->stop)) {
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
                note_depth(p);
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
        fail_attempt(p, &e.err);
        return NULL;
}

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
        atomic_store(&p->stats.oldest_pending_ts, pending_pop(&p->pending, txns));
        set_durable(p, pos);
        if (p->rows)
                rowstate_batch_done(p->rows, batch_no);
        return 0;
}

static void *sink_main(void *arg) {
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
                note_depth(p);
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
                                set_durable(p, ev.pos);
                        break;
                case EVENT_END: event_clear(&ev); goto out;
                case EVENT_BATCH_END:
                        if (!open)
                                break;
                        {
                                /* 256: what every sink's checkpoint column holds */
                                char text[256];
                                format_pos(p, ev.pos, text, sizeof(text));
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
                        atomic_store(&p->stats.oldest_pending_ts, pending_pop(&p->pending, txns));
                        txns = 0;
                        set_durable(p, ev.pos);
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
        fail_attempt(p, &err);
        return NULL;
}

/* ---- supervisor ---- */

/* A pipeline whose sink holds a checkpoint but no copy record was made before the records
 * existed: the tables it streams now (the source's publication, else `tables`) are recorded as
 * copied at the checkpoint, in one sink transaction, before the source may change anything. */
static int record_baseline(Pipeline *p, Position pos, const char *pos_text, SourceArgs *a, CdcError *err) {
        char **names = NULL;
        int n = 0, r = 0;
        if (p->source_ops->streamed_tables) {
                r = p->source_ops->streamed_tables(p->source, &names, &n, err);
                if (r < 0)
                        return r;
        }
        const char *const *list =
                p->source_ops->streamed_tables ? (const char *const *)names : (const char *const *)p->conf->tables;
        if (!p->source_ops->streamed_tables)
                n = p->conf->ntables;
        CopiedTable *v = calloc((size_t)n + 1, sizeof(*v));
        TxnInfo txn = {.commit_pos = pos, .commit_ts = now_usec(), .snapshot = true};
        if (!v)
                r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
        if (r == 0 && n > 0)
                r = p->sink_ops->begin(p->sink, err);
        for (int i = 0; r == 0 && i < n; i++) {
                Change c;
                snprintf(v[i].table, sizeof(v[i].table), "%s", list[i]);
                v[i].pos = pos;
                if (copies_record(p->conf->name, list[i], pos, pos_text, 0, &c) < 0) {
                        r = cdc_error(err, -ENOMEM, false, "internal", "out of memory");
                        break;
                }
                r = p->sink_ops->apply(p->sink, &txn, &c, err);
                change_clear(&c);
        }
        if (r == 0 && n > 0)
                r = p->sink_ops->commit(p->sink, pos, pos_text, &txn, err);
        else if (r < 0 && n > 0)
                p->sink_ops->rollback(p->sink);
        if (r == 0 && n > 0)
                log_info(p->ctx,
                         "recorded the %d table(s) this pipeline streams as copied (its sink had no copy records)", n);
        for (int i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        if (r < 0) {
                free(v);
                return r;
        }
        a->copied = v;
        a->start.copied = v;
        a->start.ncopied = n;
        return 0;
}

/* One attempt: connect both sides and stream until an error or a stop. Returns 0 on a requested
 * stop, or the error. */
/* A pipeline whose source and sink are one database would read its own writes back and apply them
 * again forever: asked of the servers before the sink or the source creates anything. */
static int refuse_loop(Pipeline *p, CdcError *err) {
        ConnectorPlace src, sink;
        char why_src[512], why_sink[512], msg[1024];
        if (!p->source_ops->locate || !p->sink_ops->locate)
                return 0;
        int r = p->source_ops->locate(p->conf->source, &src, err);
        if (r == 0)
                r = p->sink_ops->locate(p->conf->sink, &sink, err);
        if (r < 0)
                return r;
        GuardPlace a = guard_place(&src, why_src, sizeof(why_src)), b = guard_place(&sink, why_sink, sizeof(why_sink));
        if (guard_same_database(p->conf, &a, &b, msg, sizeof(msg)))
                return cdc_error(err, -ELOOP, false, "conf", "%s", msg);
        return 0;
}

static int run_attempt(Pipeline *p, CdcError *err) {
        SourceArgs sargs = {.p = p};
        Position sink_pos = {0};
        bool found = false;
        pthread_t t_src, t_eng, t_sink;
        bool src_started = false, eng_started = false, sink_started = false;
        int r;

        atomic_store(&p->attempt_end, false);
        atomic_store(&p->source_stop, false);
        atomic_store(&p->streaming_since, 0);
        p->have_err = false;
        /* Transactions read but not applied by a failed attempt are read again by this one: lag
         * keeps counting from the oldest of them (it must grow while the sink is down). */
        pending_reset(&p->pending);

        r = refuse_loop(p, err);
        if (r < 0)
                goto out;
        r = p->sink_ops->open(p->conf->sink, p->conf, &p->sink, err);
        if (r < 0)
                goto out;
        r = p->sink_ops->last_position(p->sink, &sink_pos, &found, err);
        if (r < 0)
                goto out;
        if (p->rows) {
                r = rowstate_recover(p->rows, sink_pos, found, err);
                if (r < 0)
                        goto out;
        }
        p->have_start = found;
        p->start_pos = sink_pos;
        pthread_mutex_lock(&p->pos_lock);
        p->durable = sink_pos;
        pthread_mutex_unlock(&p->pos_lock);
        if (found)
                set_durable(p, sink_pos);
        sargs.start.have_position = found;
        sargs.start.position = sink_pos;
        if (found && p->sink_ops->last_position_text) {
                bool have_text = false;
                r = p->sink_ops->last_position_text(p->sink, sargs.start_text, sizeof(sargs.start_text), &have_text,
                                                    err);
                if (r < 0)
                        goto out;
                if (have_text)
                        sargs.start.position_text = sargs.start_text;
        }
        sargs.start.snapshot = !found && p->conf->snapshot;
        sargs.start.spill_dir = p->spill_dir;
        if (!found && !p->conf->snapshot && p->conf->start_position) {
                if (p->source_ops->parse_position(p->conf->start_position, &sargs.start.position) < 0) {
                        r = cdc_error(err, -EINVAL, false, "conf", "start_position %s is not a position of a %s source",
                                      p->conf->start_position, p->conf->source->type);
                        goto out;
                }
                sargs.start.have_position = true;
                sargs.start.position_text = p->conf->start_position;
        }
        r = p->source_ops->open(p->conf->source, p->conf, &p->source, err);
        if (r < 0)
                goto out;
        /* Which tables the sink holds copies of (a table of `tables` without one is copied first). */
        if (p->sink_ops->copied_tables) {
                sargs.start.registry = true;
                r = p->sink_ops->copied_tables(p->sink, &sargs.copied, &sargs.start.ncopied, err);
                if (r < 0)
                        goto out;
                sargs.start.copied = sargs.copied;
                if (found && sargs.start.ncopied == 0 && !p->conf->all_tables) {
                        free(sargs.copied);
                        sargs.copied = NULL;
                        char text[256];
                        if (sargs.start.position_text)
                                snprintf(text, sizeof(text), "%s", sargs.start.position_text);
                        else
                                p->source_ops->format_position(sink_pos, text, sizeof(text));
                        r = record_baseline(p, sink_pos, text, &sargs, err);
                        if (r < 0)
                                goto out;
                }
        }

        r = queue_new(QUEUE_CAPACITY, &p->q_src);
        if (r == 0)
                r = queue_new(QUEUE_CAPACITY, &p->q_sink);
        if (r < 0) {
                cdc_error(err, r, false, "internal", "out of memory");
                goto out;
        }
        if (pthread_create(&t_sink, NULL, sink_main, p) == 0)
                sink_started = true;
        if (pthread_create(&t_eng, NULL, engine_main, p) == 0)
                eng_started = true;
        if (pthread_create(&t_src, NULL, source_main, &sargs) == 0)
                src_started = true;
        if (!sink_started || !eng_started || !src_started) {
                CdcError e;
                cdc_error(&e, -EAGAIN, true, "internal", "cannot start the pipeline's threads");
                fail_attempt(p, &e);
        } else {
                log_info(p->ctx, "%s",
                         found ? "resuming from the sink's checkpoint"
                               : (sargs.start.snapshot ? "new pipeline: initial snapshot" : "new pipeline: streaming"));
        }

        /* The sink ends first (stop, or failure); only then may the source acknowledge and go. */
        if (sink_started)
                pthread_join(t_sink, NULL);
        if (eng_started) {
                if (atomic_load(&p->attempt_end))
                        queue_close(p->q_src);
                pthread_join(t_eng, NULL);
        }
        atomic_store(&p->source_stop, true);
        queue_close(p->q_src);
        if (src_started)
                pthread_join(t_src, NULL);

        pthread_mutex_lock(&p->err_lock);
        if (p->have_err) {
                *err = p->err;
                r = err->code < 0 ? err->code : -EIO;
        } else {
                r = 0;
        }
        pthread_mutex_unlock(&p->err_lock);
out:
        free(sargs.copied);
        if (p->rows)
                rowstate_detach(p->rows);
        p->q_src = queue_free(p->q_src);
        p->q_sink = queue_free(p->q_sink);
        atomic_store(&p->stats.queue_depth, 0);
        if (p->source) {
                p->source = p->source_ops->free(p->source);
        }
        if (p->sink)
                p->sink = p->sink_ops->free(p->sink);
        return r;
}

static void *supervisor_main(void *arg) {
        Pipeline *p = arg;
        int backoff_ms = BACKOFF_MIN_MS;

        while (!atomic_load(&p->stop)) {
                CdcError err = {0};
                set_state(p, PIPELINE_STARTING);
                int r = run_attempt(p, &err);
                if (r == 0 || atomic_load(&p->stop))
                        break;
                /* An attempt that streamed a while ended one incident: the next one (the server
                 * restarted again, much later) starts from the shortest delay, not where the last
                 * incident's doubling stopped. */
                int64_t since = atomic_load(&p->streaming_since);
                if (since && now_usec() - since >= BACKOFF_RESET_USEC)
                        backoff_ms = BACKOFF_MIN_MS;
                stats_count_error(&p->stats, err.kind[0] ? err.kind : "internal", err.message);
                /* Bidirectional: a row the sink lacks or already has is a write on the sink that
                 * the reverse pipeline had not read yet; once it has, the change is decided again. */
                if (p->peers.reverse[0] && strcmp(err.kind, "data") == 0)
                        err.retriable = true;
                if (!err.retriable) {
                        log_error(p->ctx, "%s — the pipeline is stopped until this is fixed", err.message);
                        set_state(p, PIPELINE_FAILED);
                        return NULL;
                }
                log_warn(p->ctx, "%s — retrying in %.1f s", err.message, backoff_ms / 1000.0);
                set_state(p, PIPELINE_RETRYING);
                struct timespec until;
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += backoff_ms / 1000;
                until.tv_nsec += (long)(backoff_ms % 1000) * 1000000L;
                if (until.tv_nsec >= 1000000000L) {
                        until.tv_sec++;
                        until.tv_nsec -= 1000000000L;
                }
                pthread_mutex_lock(&p->stop_lock);
                while (!atomic_load(&p->stop) &&
                       pthread_cond_timedwait(&p->stop_cond, &p->stop_lock, &until) != ETIMEDOUT)
                        ;
                pthread_mutex_unlock(&p->stop_lock);
                backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
        }
        set_state(p, PIPELINE_STOPPED);
        return NULL;
}

void pipeline_io_count_bad_message(PipelineIO *io, bool dead_letter) {
        stats_count_bad_message(&io->p->stats, dead_letter);
}

/* ---- monitor ---- */

/* Sleeps ms on stop_cond; returns false once the pipeline stops. */
static bool monitor_sleep(Pipeline *p, int ms) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (long)(ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&p->stop_lock);
        while (!atomic_load(&p->stop) && pthread_cond_timedwait(&p->stop_cond, &p->stop_lock, &until) != ETIMEDOUT)
                ;
        pthread_mutex_unlock(&p->stop_lock);
        return !atomic_load(&p->stop);
}

/* Asks the source where its log ends now, about once a second, for as long as the pipeline
 * exists. Failures are not the pipeline's errors (its attempts report those): a source that
 * does not answer simply stops being observed, and lag counts from the last contact. */
static void *monitor_main(void *arg) {
        Pipeline *p = arg;
        SourceProbe *pr = NULL;
        char last_err[sizeof(((CdcError *)0)->message)] = "";

        do {
                CdcError err = {0};
                int r = 0;
                if (!pr)
                        r = p->source_ops->probe_open(p->conf->source, p->conf, &pr, &err);
                if (r == 0) {
                        Position applied = pipeline_io_durable(&p->io), end = {0};
                        uint64_t bytes = UINT64_MAX;
                        r = p->source_ops->probe(pr, applied, &end, &bytes, &err);
                        if (r == 0) {
                                note_source_end(p, end, bytes);
                                last_err[0] = '\0';
                        }
                }
                if (r < 0) {
                        pr = pr ? p->source_ops->probe_free(pr) : NULL;
                        if (strcmp(err.message, last_err) != 0)
                                log_debug(p->ctx, "cannot read the source's position: %s", err.message);
                        snprintf(last_err, sizeof(last_err), "%s", err.message);
                }
        } while (monitor_sleep(p, PROBE_INTERVAL_MS));
        if (pr)
                p->source_ops->probe_free(pr);
        return NULL;
}

/* Called by the source when it streams (connector.h has no such call: the first keepalive or
 * event of an attempt marks streaming). */
void pipeline_io_streaming(PipelineIO *io, bool snapshot) {
        set_state(io->p, snapshot ? PIPELINE_SNAPSHOT : PIPELINE_STREAMING);
}

int pipeline_start(const PipelineConf *conf, State *state, const char *state_dir, const BidiPeers *peers,
                   Pipeline **ret) {
        Pipeline *p = calloc(1, sizeof(*p));
        int r;
        if (!p)
                return -ENOMEM;
        p->conf = conf;
        p->io.p = p;
        p->state = state;
        if (peers)
                p->peers = *peers;
        p->source_ops = connector_source(conf->source->type);
        p->sink_ops = connector_sink(conf->sink->type);
        if (!p->source_ops || !p->sink_ops) {
                free(p);
                return -EOPNOTSUPP;
        }
        snprintf(p->ctx, sizeof(p->ctx), "[pipeline=%s source=%s sink=%s]", conf->name, conf->source->name,
                 conf->sink->name);
        snprintf(p->spill_dir, sizeof(p->spill_dir), "%s/spill-%s", state_dir, conf->name);
        stats_init(&p->stats, conf->name);
        pthread_mutex_init(&p->err_lock, NULL);
        pthread_mutex_init(&p->pos_lock, NULL);
        pthread_mutex_init(&p->pending.lock, NULL);
        pthread_mutex_init(&p->stop_lock, NULL);
        pthread_mutex_init(&p->lag_lock, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&p->stop_cond, &ca);
        pthread_condattr_destroy(&ca);
        p->pending.cap = 2 * QUEUE_CAPACITY + (size_t)conf->batch_max_rows + 16;
        p->pending.ts = calloc(p->pending.cap, sizeof(int64_t));
        if (!p->pending.ts) {
                r = -ENOMEM;
                goto fail;
        }
        if (state) {
                CdcError err;
                RowStateBidi bidi = {.reverse = p->peers.reverse, .state_dir = state_dir, .stats = &p->stats};
                r = rowstate_new(state, conf, &bidi, &p->rows);
                if (r < 0) {
                        (void)err;
                        goto fail;
                }
        }
        atomic_store(&p->stats.last_progress_ts, now_usec());
        r = -pthread_create(&p->supervisor, NULL, supervisor_main, p);
        if (r < 0)
                goto fail;
        /* Without its monitor the pipeline still runs; lag then comes from the stream alone. */
        if (p->source_ops->probe_open && p->source_ops->probe && p->source_ops->probe_free)
                p->monitor_started = pthread_create(&p->monitor, NULL, monitor_main, p) == 0;
        *ret = p;
        return 0;
fail:
        p->rows = rowstate_free(p->rows);
        free(p->pending.ts);
        stats_destroy(&p->stats);
        free(p);
        return r;
}

void pipeline_stop(Pipeline *p) {
        if (!p)
                return;
        atomic_store(&p->stop, true);
        pthread_mutex_lock(&p->stop_lock);
        pthread_cond_broadcast(&p->stop_cond);
        pthread_mutex_unlock(&p->stop_lock);
}

Pipeline *pipeline_free(Pipeline *p) {
        if (!p)
                return NULL;
        pipeline_stop(p);
        pthread_join(p->supervisor, NULL);
        if (p->monitor_started)
                pthread_join(p->monitor, NULL);
        p->rows = rowstate_free(p->rows);
        free(p->pending.ts);
        stats_destroy(&p->stats);
        pthread_mutex_destroy(&p->err_lock);
        pthread_mutex_destroy(&p->pos_lock);
        pthread_mutex_destroy(&p->pending.lock);
        pthread_mutex_destroy(&p->stop_lock);
        pthread_mutex_destroy(&p->lag_lock);
        pthread_cond_destroy(&p->stop_cond);
        free(p);
        return NULL;
}

PipelineStats *pipeline_stats(Pipeline *p) {
        return &p->stats;
}

const PipelineConf *pipeline_conf(const Pipeline *p) {
        return p->conf;
}

bool pipeline_settled(Pipeline *p) {
        return atomic_load(&p->settled);
}

int64_t pipeline_alive_ts(Pipeline *p) {
        return atomic_load(&p->stats.last_progress_ts);
}
