/* A pipeline: supervisor, source, engine and sink threads joined by bounded queues.
 *
 * DESIGN. Each pipeline has one supervisor thread. An "attempt" is: open the sink, read its
 * checkpoint, recover the row-version state to it, open the source, then run three threads:
 *
 *   source thread  reads the source's log, emits BEGIN/CHANGE/COMMIT/KEEPALIVE into q_src; a
 *                  COMMIT carries its Checkpoint (position and text) as the sink is to store it
 *   engine thread  drops transactions the sink already holds, checks row versions (replays and
 *                  echoes are skipped), groups whole transactions into batches, marks a batch's
 *                  end with BATCH_END into q_sink, with the Checkpoint of its last COMMIT
 *   sink thread    applies a batch with that checkpoint and commits it, then publishes the
 *                  batch's end as the durable position once the sink reports it durable
 *                  (SinkOps.poll_durable): a database sink at once (the MySQL sink's sender
 *                  thread: when its COMMIT returned), Kafka when delivered, while the next
 *                  batches are applied
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

#include "cdcsync/copies.h"
#include "cdcsync/guard.h"
#include "cdcsync/lease.h"
#include "cdcsync/log.h"
#include "cdcsync/now.h"
#include "cdcsync/rowstate.h"
#include "pipeline_int.h"

static void pending_push(PendingTs *pt, int64_t ts) {
        pthread_mutex_lock(&pt->lock);
        if (pt->count < pt->cap) {
                pt->ts[(pt->head + pt->count) % pt->cap] = ts;
                pt->count++;
        }
        pthread_mutex_unlock(&pt->lock);
}

/* Drops n entries (transactions committed or skipped); returns the new oldest, 0 if none. */
int64_t pipeline_pending_pop(PendingTs *pt, size_t n) {
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

static void note_source_end_at(Pipeline *p, Position end, uint64_t bytes_hint, int64_t now) {
        pthread_mutex_lock(&p->lag_lock);
        lag_note_source(&p->lag, end, now, bytes_hint);
        lag_publish(p);
        pthread_mutex_unlock(&p->lag_lock);
}

static void note_source_end(Pipeline *p, Position end, uint64_t bytes_hint) {
        note_source_end_at(p, end, bytes_hint, now_usec());
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
void pipeline_fail_attempt(Pipeline *p, const CdcError *err) {
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
void pipeline_note_depth(Pipeline *p) {
        size_t n = (p->q_src ? queue_depth(p->q_src) : 0) + (p->q_sink ? queue_depth(p->q_sink) : 0);
        atomic_store(&p->stats.queue_depth, (int_fast64_t)n);
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
                Checkpoint *c = &ev->ckpt;
                if (ev->kind == EVENT_COMMIT)
                        c->pos = ev->txn.commit_pos;
                if (!c->text[0])
                        p->source_ops->format_position(c->pos, c->text, sizeof(c->text));
                atomic_store(&p->stats.received_hi, c->pos.hi);
                atomic_store(&p->stats.received_lo, c->pos.lo);
                stats_set_positions_text(&p->stats, c->text, NULL);
        }
        int r = queue_push(p->q_src, ev);
        if (r < 0)
                event_clear(ev);
        pipeline_note_depth(p);
        return r;
}

Position pipeline_io_durable(PipelineIO *io) {
        pthread_mutex_lock(&io->p->pos_lock);
        Position pos = io->p->durable;
        pthread_mutex_unlock(&io->p->pos_lock);
        return pos;
}

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool pipeline_io_stopping(PipelineIO *io) {
        return atomic_load(&io->p->source_stop);
}

bool pipeline_io_lease_current(PipelineIO *io) {
        Pipeline *p = io->p;
        if (!p->ha)
                return true;
        return atomic_load(&p->lease_gen) > 0 &&
               !lease_self_expired(atomic_load(&p->lease_renewed_ms), mono_ms(), p->conf->conf->ha_takeover_s);
}

void pipeline_io_report_source_end(PipelineIO *io, Position end, int64_t server_ts) {
        (void)server_ts;
        int64_t now = now_usec();
        note_source_end_at(io->p, end, UINT64_MAX, now);
        atomic_store(&io->p->stats.last_progress_ts, now);
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
        if (s == PIPELINE_STREAMING || s == PIPELINE_FAILED || s == PIPELINE_PAUSED || s == PIPELINE_STANDBY)
                atomic_store(&p->settled, true);
}

void pipeline_set_durable(Pipeline *p, const Checkpoint *ckpt) {
        pthread_mutex_lock(&p->pos_lock);
        if (position_cmp(ckpt->pos, p->durable) > 0)
                p->durable = ckpt->pos;
        pthread_mutex_unlock(&p->pos_lock);
        atomic_store(&p->stats.applied_hi, ckpt->pos.hi);
        atomic_store(&p->stats.applied_lo, ckpt->pos.lo);
        stats_set_positions_text(&p->stats, NULL, ckpt->text);
        note_applied(p, ckpt->pos);
}

/* ---- source thread ---- */

typedef struct {
        Pipeline *p;
        SourceStart start;
        CopiedTable *copied; /* owned: the sink's copy records (start.copied) */
} SourceArgs;

static void *source_main(void *arg) {
        SourceArgs *a = arg;
        Pipeline *p = a->p;
        CdcError err = {0};
        int r = p->source_ops->run(p->source, &a->start, &p->io, &err);
        if (r < 0 && !atomic_load(&p->source_stop))
                pipeline_fail_attempt(p, &err);
        else if (!atomic_load(&p->attempt_end) && !atomic_load(&p->source_stop)) {
                /* A source that returns 0 without being asked to stop has nothing more to give;
                 * treat it as a retriable end so the pipeline reconnects. */
                cdc_error(&err, -EPIPE, true, CDC_ERR_CONNECTION, "source ended its stream unexpectedly");
                pipeline_fail_attempt(p, &err);
        }
        return NULL;
}

/* ---- supervisor ---- */

/* Commits the open batch from the supervisor (no sink thread runs yet) and waits until the sink
 * reports it durable: a database sink at once or when its sender committed it, any other within
 * its delivery timeout. */
static int commit_durably(Pipeline *p, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        Position pos = {0};
        bool found = false;
        int r = p->sink_ops->commit(p->sink, ckpt, last, err);
        while (r == 0 && !(found && position_cmp(pos, ckpt->pos) >= 0))
                r = p->sink_ops->poll_durable(p->sink, 100, &pos, &found, err);
        return r;
}

/* A pipeline whose sink holds a checkpoint but no copy record was made before the records
 * existed: the tables it streams now (SourceOps.streamed_tables) are recorded as
 * copied at the checkpoint, in one sink transaction, before the source may change anything. */
static int record_baseline(Pipeline *p, const Checkpoint *ckpt, SourceArgs *a, CdcError *err) {
        Position pos = ckpt->pos;
        char **names = NULL;
        int n = 0;
        int r = p->source_ops->streamed_tables(p->source, &names, &n, err);
        if (r < 0)
                return r;
        const char *const *list = (const char *const *)names;
        CopiedTable *v = calloc((size_t)n + 1, sizeof(*v));
        TxnInfo txn = {.commit_pos = pos, .commit_ts = now_usec(), .snapshot = true};
        if (!v)
                r = cdc_oom(err);
        if (r == 0 && n > 0)
                r = p->sink_ops->begin(p->sink, err);
        for (int i = 0; r == 0 && i < n; i++) {
                Change c;
                snprintf(v[i].table, sizeof(v[i].table), "%s", list[i]);
                v[i].pos = pos;
                if (copies_record(p->conf->name, list[i], pos, ckpt->text, 0, &c) < 0) {
                        r = cdc_oom(err);
                        break;
                }
                r = p->sink_ops->apply(p->sink, &txn, &c, err);
                change_clear(&c);
        }
        if (r == 0 && n > 0)
                r = commit_durably(p, ckpt, &txn, err);
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

/* A pipeline whose source and sink are one database would read its own writes back and apply them
 * again forever: asked of the servers before the sink or the source creates anything. Only two
 * types that hold tables can be one database (no server is asked otherwise). */
static int refuse_loop(Pipeline *p, CdcError *err) {
        ConnectorPlace src, sink;
        char why_src[512], why_sink[512], msg[1024];
        if (!connector_type(p->conf->source->type)->holds_tables || !connector_type(p->conf->sink->type)->holds_tables)
                return 0;
        int r = p->source_ops->locate(p->conf->source, &src, err);
        if (r == 0)
                r = p->sink_ops->locate(p->conf->sink, &sink, err);
        if (r < 0)
                return r;
        GuardPlace a = guard_place(&src, why_src, sizeof(why_src)), b = guard_place(&sink, why_sink, sizeof(why_sink));
        if (guard_same_database(p->conf, &a, &b, msg, sizeof(msg)))
                return cdc_error(err, -ELOOP, false, CDC_ERR_CONF, "%s", msg);
        return 0;
}

/* One attempt: connect both sides and stream until an error or a stop. Returns 0 on a requested
 * stop, or the error. */
static int run_attempt(Pipeline *p, int64_t fence, CdcError *err) {
        SourceArgs sargs = {.p = p};
        Checkpoint sink_ckpt = {0};
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
        if (p->conf->apply_workers > 1 && !p->sink_ops->open_worker) {
                r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                              "apply_workers = %d: a %s sink applies with one session only — set apply_workers = 1",
                              p->conf->apply_workers, p->conf->sink->type);
                goto out;
        }
        p->fence = fence;
        r = p->sink_ops->open(p->conf->sink, p->conf, &p->sink, err);
        if (r < 0)
                goto out;
        if (fence > 0 && p->sink_ops->set_fence) {
                r = p->sink_ops->set_fence(p->sink, fence, err);
                if (r < 0)
                        goto out;
        }
        r = p->sink_ops->last_position(p->sink, &sink_ckpt, &found, err);
        if (r < 0)
                goto out;
        if (!found)
                sink_ckpt = (Checkpoint){0};
        if (p->rows) {
                r = rowstate_recover(p->rows, sink_ckpt.pos, found, err);
                if (r < 0)
                        goto out;
        }
        p->have_start = found;
        p->start_pos = sink_ckpt.pos;
        pthread_mutex_lock(&p->pos_lock);
        p->durable = sink_ckpt.pos;
        pthread_mutex_unlock(&p->pos_lock);
        if (found) {
                /* Until the source's own events come, the applied position reads in its plain form. */
                Checkpoint shown = {.pos = sink_ckpt.pos};
                p->source_ops->format_position(shown.pos, shown.text, sizeof(shown.text));
                pipeline_set_durable(p, &shown);
        }
        sargs.start.have_position = found;
        sargs.start.checkpoint = sink_ckpt;
        sargs.start.snapshot = !found && p->conf->snapshot;
        sargs.start.spill_dir = p->spill_dir;
        if (!found && !p->conf->snapshot && p->conf->start_position) {
                Checkpoint *c = &sargs.start.checkpoint;
                if (p->source_ops->parse_position(p->conf->start_position, &c->pos) < 0) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF,
                                      "start_position %s is not a position of a %s source", p->conf->start_position,
                                      p->conf->source->type);
                        goto out;
                }
                /* The source starts from its text (MySQL: a GTID state), which a checkpoint holds. */
                if (strlen(p->conf->start_position) >= sizeof(c->text)) {
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_CONF, "start_position is longer than %zu characters",
                                      sizeof(c->text) - 1);
                        goto out;
                }
                snprintf(c->text, sizeof(c->text), "%s", p->conf->start_position);
                sargs.start.have_position = true;
        }
        r = p->source_ops->open(p->conf->source, p->conf, &p->source, err);
        if (r < 0)
                goto out;
        /* Which tables the sink holds copies of (a table of `tables` without one is copied first). */
        sargs.start.registry = p->sink_ops->copy_records;
        r = p->sink_ops->copied_tables(p->sink, &sargs.copied, &sargs.start.ncopied, err);
        if (r < 0)
                goto out;
        sargs.start.copied = sargs.copied;
        if (sargs.start.registry && found && sargs.start.ncopied == 0 && !p->conf->all_tables) {
                free(sargs.copied);
                sargs.copied = NULL;
                Checkpoint base = sink_ckpt;
                if (!base.text[0])
                        p->source_ops->format_position(base.pos, base.text, sizeof(base.text));
                r = record_baseline(p, &base, &sargs, err);
                if (r < 0)
                        goto out;
        }

        r = queue_new(QUEUE_CAPACITY, &p->q_src);
        if (r == 0)
                r = queue_new(QUEUE_CAPACITY, &p->q_sink);
        if (r < 0) {
                cdc_error(err, r, false, CDC_ERR_INTERNAL, "out of memory");
                goto out;
        }
        if (pthread_create(&t_sink, NULL, p->conf->apply_workers > 1 ? pipeline_apply_main : pipeline_sink_main, p) ==
            0)
                sink_started = true;
        if (pthread_create(&t_eng, NULL, pipeline_engine_main, p) == 0)
                eng_started = true;
        if (pthread_create(&t_src, NULL, source_main, &sargs) == 0)
                src_started = true;
        if (!sink_started || !eng_started || !src_started) {
                CdcError e;
                cdc_error(&e, -EAGAIN, true, CDC_ERR_INTERNAL, "cannot start the pipeline's threads");
                pipeline_fail_attempt(p, &e);
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

/* The CLOCK_MONOTONIC time ms from now (stop_cond waits on that clock). */
static struct timespec after_ms(int ms) {
        return now_after_ms(CLOCK_MONOTONIC, ms);
}

/* Sleeps until an operator request after `seen` (requests), a stop, or the deadline (NULL:
 * none). */
static void wait_request(Pipeline *p, unsigned seen, const struct timespec *until) {
        pthread_mutex_lock(&p->stop_lock);
        while (!atomic_load(&p->stop) && atomic_load(&p->requests) == seen) {
                if (!until)
                        pthread_cond_wait(&p->stop_cond, &p->stop_lock);
                else if (pthread_cond_timedwait(&p->stop_cond, &p->stop_lock, until) == ETIMEDOUT)
                        break;
        }
        pthread_mutex_unlock(&p->stop_lock);
}

static void *supervisor_main(void *arg) {
        Pipeline *p = arg;
        int backoff_ms = BACKOFF_MIN_MS;
        bool failed = false;      /* a fatal error: nothing runs until an operator asks (restart, resume) */
        unsigned failed_seen = 0; /* the requests counted before the state said FAILED */
        int64_t led = 0;          /* ha: the lease generation of the last attempt, until it stepped down */

        while (!atomic_load(&p->stop)) {
                unsigned seen = atomic_load(&p->requests);
                CdcError err = {0};
                if (atomic_load(&p->paused)) {
                        if (atomic_load(&p->stats.state) != PIPELINE_PAUSED)
                                log_info(p->ctx, "paused: the source is not read until the pipeline is resumed");
                        set_state(p, PIPELINE_PAUSED);
                        wait_request(p, seen, NULL);
                        failed = false;
                        backoff_ms = BACKOFF_MIN_MS;
                        continue;
                }
                if (failed) {
                        /* not `seen`: a restart asked for between FAILED showing and here is
                         * counted in it already, and would be waited past */
                        wait_request(p, failed_seen, NULL);
                        failed = false;
                        continue;
                }
                int64_t fence = 0;
                if (p->ha) {
                        fence = atomic_load(&p->lease_gen);
                        if (fence == 0) {
                                /* an attempt that failed (its session ended by the taker) before the
                                 * lease thread saw the lease move on: it steps down here */
                                if (led > 0)
                                        log_warn(p->ctx,
                                                 "stepping down: the lease of generation %" PRId64
                                                 " was lost; what was committed stays, nothing after",
                                                 led);
                                led = 0;
                                if (atomic_load(&p->stats.state) != PIPELINE_STANDBY)
                                        log_info(p->ctx, "standby: another instance holds the pipeline's lease");
                                set_state(p, PIPELINE_STANDBY);
                                struct timespec until = after_ms(1000);
                                wait_request(p, seen, &until);
                                continue;
                        }
                        log_info(p->ctx, "leader: holding the pipeline's lease, generation %" PRId64, fence);
                }
                atomic_store(&p->attempt_stop, false);
                set_state(p, PIPELINE_STARTING);
                led = fence;
                int r = run_attempt(p, fence, &err);
                if (atomic_load(&p->stop))
                        break;
                if (fence > 0 && (atomic_load(&p->lease_gen) != fence || strcmp(err.kind, "lease") == 0)) {
                        log_warn(p->ctx, "stepping down: %s",
                                 r < 0 ? err.message : "the lease was lost; what was committed stays, nothing after");
                        led = 0;
                        continue;
                }
                /* Ended by an operator (pause, restart): what it held is committed; go on at once. */
                if (r == 0 || atomic_load(&p->attempt_stop)) {
                        backoff_ms = BACKOFF_MIN_MS;
                        continue;
                }
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
                        failed_seen = atomic_load(&p->requests);
                        set_state(p, PIPELINE_FAILED);
                        failed = true;
                        continue;
                }
                log_warn(p->ctx, "%s — retrying in %.1f s", err.message, backoff_ms / 1000.0);
                set_state(p, PIPELINE_RETRYING);
                struct timespec until = after_ms(backoff_ms);
                wait_request(p, seen, &until);
                backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
        }
        set_state(p, PIPELINE_STOPPED);
        atomic_store(&p->supervisor_done, true);
        return NULL;
}

static void request(Pipeline *p);

/* Sleeps ms on stop_cond; with wake_on_stop, less once the pipeline stops (at once if it has).
 * Returns false once the pipeline stops. */
static bool stop_wait(Pipeline *p, int ms, bool wake_on_stop) {
        struct timespec until = after_ms(ms);
        pthread_mutex_lock(&p->stop_lock);
        while (!(wake_on_stop && atomic_load(&p->stop)) &&
               pthread_cond_timedwait(&p->stop_cond, &p->stop_lock, &until) != ETIMEDOUT)
                ;
        pthread_mutex_unlock(&p->stop_lock);
        return !atomic_load(&p->stop);
}

/* ha = on: holds the pipeline's lease (lease.h). A standby polls every takeover_s / 3 and takes
 * an expired lease over; the leader renews at that pace and, when renewals fail until its own
 * clock says the lease may have expired on the server, or the lease moved on, ends the attempt
 * (the sink's fence refuses any later commit in any case). On stop, once the supervisor's last
 * attempt committed, the lease is released so that a standby takes over at once. */
static void *leaser_main(void *arg) {
        Pipeline *p = arg;
        const Conf *c = p->conf->conf;
        SinkLease *l = NULL;
        int64_t held = 0, renewed = 0;
        int interval = lease_renew_interval_ms(c->ha_takeover_s);
        while (!atomic_load(&p->stop)) {
                CdcError err = {0};
                int r = 0;
                if (!l)
                        r = p->sink_ops->lease_open(p->conf->sink, p->conf, c->ha_takeover_s, &l, &err);
                int64_t now_held = 0;
                LeaseSeen seen = {0};
                if (r == 0)
                        r = p->sink_ops->lease_step(l, c->instance, held, &now_held, &seen, &err);
                if (r == 0 && seen.took && seen.took_from[0])
                        log_info(p->ctx, "took the lease over from %s, %s", seen.took_from,
                                 seen.released ? "which released it (graceful hand-over)"
                                               : "whose lease expired unrenewed");
                if (r < 0) {
                        l = p->sink_ops->lease_free(l);
                        log_warn(p->ctx, "%s", err.message);
                        if (held > 0 && lease_self_expired(renewed, mono_ms(), c->ha_takeover_s)) {
                                log_warn(p->ctx, "lease not renewed for too long: stepping down before a standby "
                                                 "may take over");
                                now_held = 0;
                        } else {
                                now_held = held;
                        }
                } else if (now_held > 0) {
                        renewed = mono_ms();
                        atomic_store(&p->lease_renewed_ms, renewed);
                }
                if (now_held != held) {
                        atomic_store(&p->lease_gen, now_held);
                        if (held > 0)
                                atomic_store(&p->attempt_stop, true);
                        held = now_held;
                        request(p);
                }
                /* after lease_gen: who sees 0 here finds the supervisor told */
                if (r == 0)
                        stats_set_lease(&p->stats, now_held > 0, seen.holder);
                else if (now_held == 0)
                        stats_set_lease(&p->stats, false, NULL);
                stop_wait(p, interval, true);
        }
        /* Graceful hand-over: after the last commit (pipeline_free joins the supervisor first). */
        while (held > 0 && !atomic_load(&p->supervisor_done))
                stop_wait(p, 50, false); /* stop is set: a plain 50 ms, not a spin */
        if (held > 0 && l) {
                CdcError err = {0};
                if (p->sink_ops->lease_release(l, held, &err) < 0)
                        log_warn(p->ctx, "%s", err.message);
                else
                        log_info(p->ctx, "lease released: a standby takes the pipeline over at once");
                stats_set_lease(&p->stats, false, NULL);
        }
        p->sink_ops->lease_free(l);
        return NULL;
}

/* Counts the request and wakes the supervisor (and the monitor, which only looks at stop). */
static void request(Pipeline *p) {
        pthread_mutex_lock(&p->stop_lock);
        atomic_fetch_add(&p->requests, 1);
        pthread_cond_broadcast(&p->stop_cond);
        pthread_mutex_unlock(&p->stop_lock);
}

void pipeline_pause(Pipeline *p) {
        atomic_store(&p->paused, true);
        atomic_store(&p->attempt_stop, true);
        request(p);
}

void pipeline_resume(Pipeline *p) {
        atomic_store(&p->paused, false);
        request(p);
}

void pipeline_restart(Pipeline *p) {
        atomic_store(&p->attempt_stop, true);
        request(p);
}

void pipeline_sync_sequences(Pipeline *p) {
        seqsync_request(p->seqsync);
}

bool pipeline_paused(Pipeline *p) {
        return atomic_load(&p->paused);
}

void pipeline_io_count_bad_message(PipelineIO *io, bool dead_letter) {
        stats_count_bad_message(&io->p->stats, dead_letter);
}

/* ---- monitor ---- */

/* Every HEALTH_EVERY probes (about 5 s), what the source's server keeps for the pipeline
 * (SourceOps.probe_health), with a warning when it passes retained_warn_bytes: said once when
 * it passes, once when it is back under. */
#define HEALTH_EVERY 5

static void sample_health(Pipeline *p, SourceProbe *pr, bool *warned) {
        SourceHealth h;
        CdcError err = {0};
        if (p->source_ops->probe_health(pr, pipeline_io_durable(&p->io), &h, &err) < 0) {
                log_debug(p->ctx, "cannot read what the source keeps for the pipeline: %s", err.message);
                return;
        }
        atomic_store(&p->stats.retained_bytes, h.retained_bytes);
        atomic_store(&p->stats.slot_active, h.slot_active);
        int64_t limit = p->conf->conf ? p->conf->conf->retained_warn_bytes : 0;
        atomic_store(&p->stats.retained_warn_bytes, limit);
        bool over = limit > 0 && h.retained_bytes > limit;
        if (over && !*warned)
                log_warn(p->ctx,
                         "the source keeps %lld bytes of log for this pipeline, more than retained_warn_bytes "
                         "(%lld): its disk fills while the pipeline is behind or down",
                         (long long)h.retained_bytes, (long long)limit);
        else if (!over && *warned && h.retained_bytes >= 0)
                log_info(p->ctx,
                         "the source keeps %lld bytes of log for this pipeline, under retained_warn_bytes again",
                         (long long)h.retained_bytes);
        if (h.retained_bytes >= 0)
                *warned = over;
}

/* Asks the source where its log ends now, about once a second, for as long as the pipeline
 * exists. Failures are not the pipeline's errors (its attempts report those): a source that
 * does not answer simply stops being observed, and lag counts from the last contact. */
static void *monitor_main(void *arg) {
        Pipeline *p = arg;
        SourceProbe *pr = NULL;
        char last_err[sizeof(((CdcError *)0)->message)] = "";
        unsigned probes = 0;
        bool warned = false;

        do {
                CdcError err = {0};
                int r = 0;
                if (!pr) {
                        r = p->source_ops->probe_open(p->conf->source, p->conf, &pr, &err);
                        if (r == 0 && !pr)
                                return NULL; /* the source has no probe: lag comes from its stream */
                }
                if (r == 0) {
                        Position applied = pipeline_io_durable(&p->io), end = {0};
                        uint64_t bytes = UINT64_MAX;
                        r = p->source_ops->probe(pr, applied, &end, &bytes, &err);
                        if (r == 0) {
                                note_source_end(p, end, bytes);
                                last_err[0] = '\0';
                                if (p->source_ops->probe_health && probes++ % HEALTH_EVERY == 0)
                                        sample_health(p, pr, &warned);
                        }
                }
                if (r < 0) {
                        pr = p->source_ops->probe_free(pr);
                        if (strcmp(err.message, last_err) != 0)
                                log_debug(p->ctx, "cannot read the source's position: %s", err.message);
                        snprintf(last_err, sizeof(last_err), "%s", err.message);
                }
        } while (stop_wait(p, PROBE_INTERVAL_MS, true));
        p->source_ops->probe_free(pr);
        return NULL;
}

/* Called by the source when it streams (connector.h has no such call: the first keepalive or
 * event of an attempt marks streaming). */
void pipeline_io_report_snapshot(PipelineIO *io, const char *table, bool begin, uint64_t rows, uint64_t rows_est,
                                 int chunks_done, int chunks_total) {
        stats_snapshot_table(&io->p->stats, table, begin, rows, rows_est, chunks_done, chunks_total);
}

void pipeline_io_streaming(PipelineIO *io, bool snapshot) {
        set_state(io->p, snapshot ? PIPELINE_SNAPSHOT : PIPELINE_STREAMING);
}

int pipeline_start(const PipelineConf *conf, State *state, const char *state_dir, const BidiPeers *peers,
                   Pipeline **ret) {
        return pipeline_start_paused(conf, state, state_dir, peers, false, ret);
}

int pipeline_start_paused(const PipelineConf *conf, State *state, const char *state_dir, const BidiPeers *peers,
                          bool paused, Pipeline **ret) {
        Pipeline *p = calloc(1, sizeof(*p));
        int r;
        if (!p)
                return -ENOMEM;
        p->conf = conf;
        atomic_store(&p->paused, paused);
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
        resnap_requests_init(&p->resnap);
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
        {
                char msg[1024];
                r = shape_new(conf, &p->shape, msg, sizeof(msg));
                if (r < 0) {
                        log_error(p->ctx, "%s", msg); /* conf_load refuses such a conf first */
                        goto fail;
                }
        }
        atomic_store(&p->stats.last_progress_ts, now_usec());
        /* ha = on: the pipeline runs only while the lease thread holds its lease; a sink without
         * a lease (a Kafka sink) keeps it on standby rather than run it unfenced. */
        p->ha = conf->conf && conf->conf->ha;
        if (p->ha)
                stats_set_lease(&p->stats, false, NULL); /* a standby until the lease thread holds it */
        if (p->ha && !p->sink_ops->lease_open)
                log_error(p->ctx,
                          "ha = on: a %s sink holds no lease yet — the pipeline stays on standby; run it "
                          "with ha = off",
                          conf->sink->type);
        else if (p->ha)
                p->leaser_started = pthread_create(&p->leaser, NULL, leaser_main, p) == 0;
        if (p->ha && p->sink_ops->lease_open && !p->leaser_started)
                log_error(p->ctx, "cannot start the lease thread: the pipeline stays on standby");
        r = -pthread_create(&p->supervisor, NULL, supervisor_main, p);
        if (r < 0) {
                if (p->leaser_started) {
                        atomic_store(&p->supervisor_done, true);
                        pipeline_stop(p);
                        pthread_join(p->leaser, NULL);
                }
                goto fail;
        }
        /* Without its monitor the pipeline still runs; lag then comes from the stream alone. */
        p->monitor_started = pthread_create(&p->monitor, NULL, monitor_main, p) == 0;
        /* Without it the pipeline still runs; `cdcsync sync-sequences` can carry them. */
        if (seqsync_start(conf, p->ctx, &p->seqsync) < 0)
                log_error(p->ctx, "cannot start the thread that syncs sequence values: they are not carried");
        *ret = p;
        return 0;
fail:
        p->rows = rowstate_free(p->rows);
        p->shape = shape_free(p->shape);
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
        if (p->leaser_started)
                pthread_join(p->leaser, NULL);
        if (p->monitor_started)
                pthread_join(p->monitor, NULL);
        p->seqsync = seqsync_free(p->seqsync); /* its last sync: after the pipeline's last batch */
        p->rows = rowstate_free(p->rows);
        p->shape = shape_free(p->shape);
        free(p->pending.ts);
        stats_destroy(&p->stats);
        pthread_mutex_destroy(&p->err_lock);
        pthread_mutex_destroy(&p->pos_lock);
        pthread_mutex_destroy(&p->pending.lock);
        pthread_mutex_destroy(&p->stop_lock);
        pthread_mutex_destroy(&p->lag_lock);
        pthread_cond_destroy(&p->stop_cond);
        resnap_requests_destroy(&p->resnap);
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
