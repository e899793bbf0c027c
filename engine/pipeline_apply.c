/* Parallel apply (apply_workers = N > 1): a pipeline's sink thread becomes a dispatcher that
 * hands whole batches to N workers, each with its own sink session, and the workers commit in
 * the batches' order.
 *
 * Why it is correct (the same argument as MariaDB's in-order parallel replication):
 * - Batches are numbered in source order (seq). The dispatcher holds a batch until its end (or
 *   until it is too big to hold: see below), then hands it whole to one worker; each worker
 *   applies its batches one after another, in seq order.
 * - Commits happen strictly in seq order: a worker that ended batch seq waits until seq - 1 is
 *   committed, then writes the checkpoint in the batch's transaction and commits. The sink's one
 *   checkpoint row is therefore only ever written by the batch whose turn it is (no lock fight),
 *   it only moves forward, and after a crash everything up to it is committed and nothing after
 *   it: the resume is the serial one.
 * - Rows: the dispatcher looks up every change's row keys (table and key values; for a table
 *   without key, the whole table) among the keys of batches not yet committed. A batch that
 *   touches no such row goes to the next worker in turn and applies concurrently with them. A
 *   batch whose rows only batches of one worker touched goes to that worker, behind them: its
 *   session sees their changes committed first, so nothing waits. A batch whose rows batches of
 *   several workers touched waits until all but the newest of those are committed, then goes to
 *   the newest one's worker. Since a batch is dispatched whole before the next one starts, every
 *   key of every earlier batch is known by then: two batches never apply changes of one row out
 *   of order, and no two open sink transactions touch one row.
 * - What keys cannot show (a TRUNCATE, a table the sink may have to create or alter, a batch of
 *   more than KEYS_PER_BATCH_MAX rows or HOLD_BYTES_MAX bytes, which is not held whole either)
 *   makes the batch exclusive: it starts after every earlier batch committed, and no later one
 *   starts before it commits.
 * - Chunks of a chunked copy (TxnInfo.chunk) hold rows no other chunk of the copy holds, so a
 *   batch of chunks only claims its copy records (the registry's rows, which chunks do share),
 *   not its rows, and a big one streams to a worker without becoming exclusive: the chunks of an
 *   initial load apply side by side. Since their rows are not claimed, batches of chunks and other
 *   batches never overlap: a batch of one kind starts once every batch of the other kind before
 *   it committed, and a batch that mixes both kinds is exclusive. While a batch of chunks streams,
 *   a record it claims that another worker's uncommitted batch touched waits for that batch.
 * - What no key shows at all (a unique index other than the key, a foreign key, a trigger) may
 *   make a later batch fail or wait on a lock an earlier one needs. Any failure while more than
 *   one batch is in flight therefore ends the attempt as retriable, rolls every uncommitted batch
 *   back, and the next attempt applies the next SERIAL_AFTER_CONFLICT batches one at a time from
 *   the sink's checkpoint: a real error then shows as it would without workers, and a conflict of
 *   parallelism alone goes away. Lock waits end with the sink's own timeouts.
 * Memory: every worker queue is bounded, the batch held is at most KEYS_PER_BATCH_MAX changes
 * and HOLD_BYTES_MAX bytes of values, and the key map holds only keys of batches in flight (at
 * most IN_FLIGHT_MAX batches of at most KEYS_PER_BATCH_MAX keys each). */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/copies.h"
#include "cdcsync/hash.h"
#include "cdcsync/log.h"
#include "cdcsync/now.h"
#include "pipeline_int.h"

#define WORKER_QUEUE_CAPACITY 2048
#define KEYS_PER_BATCH_MAX 20000
#define SERIAL_AFTER_CONFLICT 1000
#define NOTE_EVENTS 64
#define HOLD_BYTES_MAX (16u << 20)
#define IN_FLIGHT_MAX 256 /* batches dispatched and not yet committed; a power of 2 */

enum { KIND_NONE, KIND_CHUNKS, KIND_OTHER, KIND_MIXED };

/* Key hash → seq of the newest batch that touched it. Open addressing; 0 is an empty slot (a
 * hash of 0 is stored as 1: a false match only makes a change wait, never reorders). */
typedef struct {
        uint64_t *hash;
        uint64_t *seq;
        size_t cap, n;
} KeyMap;

/* A table as last seen by the dispatcher: a new shape may make the sink create or alter it. */
typedef struct TableSeen {
        struct TableSeen *next;
        uint64_t hash; /* of schema.name */
        Table *shape;  /* one reference */
} TableSeen;

typedef struct Apply Apply;

typedef struct {
        Apply *a;
        int id;
        Sink *sink; /* worker 0: the pipeline's own sink (borrowed); others owned */
        Queue *q;
        pthread_t thread;
        bool started;
        /* The seqs of the batches handed to this worker, in order: the dispatcher writes one
         * before the batch's BATCH_END, the worker reads it at the BATCH_END (one writer, one
         * reader; at most IN_FLIGHT_MAX in it). */
        uint64_t seqs[IN_FLIGHT_MAX];
        atomic_uint_fast64_t seqs_in, seqs_out;
} Worker;

struct Apply {
        Pipeline *p;
        int n;
        Worker *w;
        pthread_mutex_t lock; /* guards committed, failed, inflight_fail */
        pthread_cond_t cond;
        uint64_t committed;  /* the newest seq committed; batches commit in seq order */
        uint64_t dispatched; /* the newest seq begun (written by the dispatcher) */
        bool failed;         /* a worker failed or the attempt ends: nothing commits any more */
        /* dispatcher only */
        KeyMap keys;
        TableSeen *tables;
        uint64_t exclusive;       /* a batch that must commit before any later one starts; 0: none */
        int owner[IN_FLIGHT_MAX]; /* the worker of batch seq, at seq % IN_FLIGHT_MAX (in flight) */
        uint64_t *touched;        /* per worker: the newest uncommitted seq of it the held batch touches */
        int turn;                 /* the worker a batch touching nothing in flight goes to */
        Event *held;              /* the batch held until its end */
        size_t nheld, held_cap, held_bytes;
        bool streaming; /* the batch is too big to hold: its worker gets it change by change */
        bool shared;    /* ... and, a batch of chunks, not exclusive */
        int streaming_to;
        int kind;                         /* the batch's: KIND_NONE (no change yet), KIND_CHUNKS, ... */
        uint64_t last_chunks, last_other; /* the newest seq of a batch of chunks; of any other batch */
        uint64_t waits, exclusives;       /* batches that waited for another worker's batch; exclusive batches */
        uint64_t chunk_batches, chunk_exclusives; /* batches of chunks only; those of them exclusive */
};

static int keymap_init(KeyMap *m, size_t cap) {
        m->hash = calloc(cap, sizeof(*m->hash));
        m->seq = calloc(cap, sizeof(*m->seq));
        m->cap = cap;
        m->n = 0;
        return m->hash && m->seq ? 0 : -ENOMEM;
}

static void keymap_free(KeyMap *m) {
        free(m->hash);
        free(m->seq);
        *m = (KeyMap){0};
}

/* The slot of h: where it is, or the empty slot where it would go. */
static size_t keymap_slot(const KeyMap *m, uint64_t h) {
        size_t i = (size_t)h & (m->cap - 1);
        while (m->hash[i] && m->hash[i] != h)
                i = (i + 1) & (m->cap - 1);
        return i;
}

/* Drops the keys of committed batches and makes room (cap doubles while live keys fill half). */
static int keymap_rebuild(KeyMap *m, uint64_t committed) {
        size_t live = 0;
        for (size_t i = 0; i < m->cap; i++)
                live += m->hash[i] && m->seq[i] > committed;
        size_t cap = m->cap;
        while (live * 2 >= cap)
                cap *= 2;
        KeyMap nm;
        if (keymap_init(&nm, cap) < 0) {
                keymap_free(&nm);
                return -ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
                if (!m->hash[i] || m->seq[i] <= committed)
                        continue;
                size_t j = keymap_slot(&nm, m->hash[i]);
                nm.hash[j] = m->hash[i];
                nm.seq[j] = m->seq[i];
                nm.n++;
        }
        keymap_free(m);
        *m = nm;
        return 0;
}

static uint64_t table_hash(const Table *t) {
        uint64_t h = hash_fnv1a(HASH_FNV1A_INIT, t->schema, strlen(t->schema) + 1);
        return hash_fnv1a(h, t->name, strlen(t->name) + 1);
}

/* The row key of img (key columns; a table without key: the table itself). */
static uint64_t row_hash(const Table *t, const Value *img) {
        uint64_t h = table_hash(t);
        bool keyed = table_nkeys(t) > 0;
        for (int i = 0; keyed && img && i < t->ncols; i++) {
                if (!t->cols[i].key)
                        continue;
                uint8_t kind = (uint8_t)img[i].kind;
                uint32_t len = img[i].kind == VALUE_TEXT ? img[i].len : 0;
                h = hash_fnv1a(h, &kind, 1);
                h = hash_fnv1a(h, &len, sizeof(len));
                if (len)
                        h = hash_fnv1a(h, img[i].data, len);
        }
        return h ? h : 1;
}

/* Waits until batch seq is committed (or the attempt ends: looked at every 100 ms, since what
 * ends it need not wake this condition). Returns false when it ended. */
static bool wait_committed(Apply *a, uint64_t seq) {
        pthread_mutex_lock(&a->lock);
        while (!a->failed && a->committed < seq && !atomic_load(&a->p->attempt_end)) {
                struct timespec until = now_after_ms(CLOCK_REALTIME, 100);
                pthread_cond_timedwait(&a->cond, &a->lock, &until);
        }
        bool ok = !a->failed && a->committed >= seq;
        pthread_mutex_unlock(&a->lock);
        return ok;
}

static uint64_t committed_now(Apply *a) {
        pthread_mutex_lock(&a->lock);
        uint64_t c = a->committed;
        pthread_mutex_unlock(&a->lock);
        return c;
}

static void apply_fail(Apply *a) {
        pthread_mutex_lock(&a->lock);
        a->failed = true;
        pthread_cond_broadcast(&a->cond);
        pthread_mutex_unlock(&a->lock);
}

/* Whether t is a shape the dispatcher has not seen for its table (the sink may create or alter
 * the table for it); remembers it. */
static int table_is_new(Apply *a, Table *t, bool *ret) {
        uint64_t h = table_hash(t);
        TableSeen *s = a->tables;
        while (s && s->hash != h)
                s = s->next;
        /* the copy records' table is made anew for each record (copies.c), always the same */
        if (s && (s->shape == t || copies_is_registry(t))) {
                *ret = false;
                return 0;
        }
        if (!s) {
                s = calloc(1, sizeof(*s));
                if (!s)
                        return -ENOMEM;
                s->hash = h;
                s->next = a->tables;
                a->tables = s;
        }
        table_unref(s->shape);
        s->shape = table_ref(t);
        *ret = true;
        return 0;
}

/* ---- workers ---- */

static void *worker_main(void *arg) {
        Worker *w = arg;
        Apply *a = w->a;
        Pipeline *p = a->p;
        Event ev = {0};
        CdcError err = {0};
        SinkBatch b = {0};
        int r;

        for (;;) {
                r = queue_pop(w->q, &ev, -1);
                if (r < 0)
                        break;
                switch (ev.kind) {
                case EVENT_BEGIN:
                case EVENT_CHANGE:
                case EVENT_COMMIT:
                        r = pipeline_batch_event(p, w->sink, &b, &ev, &err);
                        if (r < 0)
                                goto fail;
                        break;
                case EVENT_BATCH_END: {
                        uint64_t out = atomic_load_explicit(&w->seqs_out, memory_order_relaxed);
                        uint64_t seq = w->seqs[out % IN_FLIGHT_MAX];
                        atomic_store_explicit(&w->seqs_out, out + 1, memory_order_release);
                        if (b.open && p->sink_ops->prepare) {
                                r = p->sink_ops->prepare(w->sink, &err);
                                if (r < 0)
                                        goto fail;
                        }
                        if (!wait_committed(a, seq - 1))
                                goto out;
                        if (b.open) {
                                r = p->sink_ops->commit(w->sink, &ev.ckpt, &ev.txn, &err);
                                if (r < 0)
                                        goto fail;
                                b.open = false;
                                /* A database sink's commit is durable when it returns
                                 * (SinkOps.open_worker). */
                                atomic_store(&p->stats.oldest_pending_ts, pipeline_pending_pop(&p->pending, b.txns));
                                pipeline_set_durable(p, &ev.ckpt);
                                if (p->rows)
                                        rowstate_batch_done(p->rows, ev.batch_no);
                                pipeline_batch_counted(p, &b);
                        } else {
                                b = (SinkBatch){0};
                        }
                        /* the turn passes on even for a batch that opened nothing */
                        pthread_mutex_lock(&a->lock);
                        a->committed = seq;
                        pthread_cond_broadcast(&a->cond);
                        pthread_mutex_unlock(&a->lock);
                        break;
                }
                default: break;
                }
                event_clear(&ev);
        }
out:
        event_clear(&ev);
        if (b.open)
                p->sink_ops->rollback(w->sink);
        return NULL;
fail:
        event_clear(&ev);
        if (b.open)
                p->sink_ops->rollback(w->sink);
        pthread_mutex_lock(&a->lock);
        bool others = a->dispatched > a->committed + 1;
        pthread_mutex_unlock(&a->lock);
        if (others) {
                /* Possibly a conflict only parallelism made: tried again in source order. */
                size_t ml = strlen(err.message);
                snprintf(err.message + ml, sizeof(err.message) - ml,
                         " — with other batches in flight (apply_workers = %d): the next %d batches are applied "
                         "one at a time from the sink's checkpoint",
                         a->n, SERIAL_AFTER_CONFLICT);
                err.retriable = true;
                atomic_store(&p->serial_batches, SERIAL_AFTER_CONFLICT);
        }
        pipeline_fail_attempt(p, &err);
        apply_fail(a);
        return NULL;
}

/* ---- dispatcher ---- */

/* Hands ev to worker w (a BATCH_END: with its seq). False when the attempt ended. */
static bool hand_to(Apply *a, int w, uint64_t seq, Event *ev) {
        Worker *wk = &a->w[w];
        if (ev->kind == EVENT_BATCH_END) {
                uint64_t in = atomic_load_explicit(&wk->seqs_in, memory_order_relaxed);
                wk->seqs[in % IN_FLIGHT_MAX] = seq;
                atomic_store_explicit(&wk->seqs_in, in + 1, memory_order_release);
        }
        if (queue_push(wk->q, ev) < 0) {
                event_clear(ev);
                return false;
        }
        return true;
}

/* Makes batch seq exclusive: everything before it committed first, nothing after it starts
 * before it commits. */
static bool go_exclusive(Apply *a, uint64_t seq) {
        a->exclusive = seq;
        a->exclusives++;
        return wait_committed(a, seq - 1);
}

/* Records row h as batch seq's, and which worker's uncommitted batch touched it before. */
static int claim_key(Apply *a, uint64_t seq, uint64_t h) {
        if (a->keys.n * 2 >= a->keys.cap && keymap_rebuild(&a->keys, committed_now(a)) < 0)
                return -ENOMEM;
        size_t i = keymap_slot(&a->keys, h);
        uint64_t before = a->keys.hash[i] ? a->keys.seq[i] : 0;
        if (before && before < seq) {
                int w = a->owner[before % IN_FLIGHT_MAX];
                if (before > a->touched[w])
                        a->touched[w] = before;
        }
        if (!a->keys.hash[i]) {
                a->keys.hash[i] = h;
                a->keys.n++;
        }
        a->keys.seq[i] = seq;
        return 0;
}

/* Waits until every batch that a worker other than w was given has committed (counted as a
 * wait when one had not); committed: the last batch committed, as the caller read it. False
 * when the attempt ended. */
static bool wait_others(Apply *a, int w, uint64_t committed) {
        uint64_t others = 0;
        for (int i = 0; i < a->n; i++)
                if (i != w && a->touched[i] > others)
                        others = a->touched[i];
        if (others <= committed)
                return true;
        a->waits++;
        atomic_fetch_add(&a->p->stats.apply_waits, 1);
        return wait_committed(a, others);
}

/* The worker for batch seq, held whole: see the file's first comment. -1 when the attempt ended. */
static int choose_worker(Apply *a) {
        uint64_t committed = committed_now(a), newest = 0;
        int w = -1;
        for (int i = 0; i < a->n; i++)
                if (a->touched[i] > committed && a->touched[i] > newest)
                        newest = a->touched[i], w = i;
        if (w < 0) {
                w = a->turn;
                a->turn = (a->turn + 1) % a->n;
                return w;
        }
        return wait_others(a, w, committed) ? w : -1;
}

/* Hands on the held batch to worker w and empties the hold. False when the attempt ended. */
static bool release_held(Apply *a, int w, uint64_t seq) {
        bool ok = true;
        for (size_t i = 0; i < a->nheld; i++) {
                if (ok)
                        ok = hand_to(a, w, seq, &a->held[i]);
                else
                        event_clear(&a->held[i]);
        }
        a->nheld = 0;
        a->held_bytes = 0;
        return ok;
}

static void drop_held(Apply *a) {
        for (size_t i = 0; i < a->nheld; i++)
                event_clear(&a->held[i]);
        a->nheld = 0;
        a->held_bytes = 0;
}

static size_t change_bytes(const Change *c) {
        size_t n = sizeof(*c);
        for (int i = 0; c->table && i < c->table->ncols; i++)
                n += (c->before ? c->before[i].len : 0) + (c->after ? c->after[i].len : 0);
        return n;
}

/* Holds ev (or, once the batch streams, hands it on). 0, -ENOMEM, or -ECANCELED when the attempt
 * ended. */
static int hold(Apply *a, uint64_t seq, Event *ev) {
        if (a->streaming)
                return hand_to(a, a->streaming_to, seq, ev) ? 0 : -ECANCELED;
        if (a->nheld == a->held_cap) {
                size_t cap = a->held_cap ? a->held_cap * 2 : 256;
                Event *h = realloc(a->held, cap * sizeof(*h));
                if (!h) {
                        event_clear(ev);
                        return -ENOMEM;
                }
                a->held = h;
                a->held_cap = cap;
        }
        if (ev->kind == EVENT_CHANGE)
                a->held_bytes += change_bytes(&ev->change);
        a->held[a->nheld++] = *ev;
        *ev = (Event){0};
        return 0;
}

/* The held batch becomes exclusive and is handed on change by change from here. */
static int start_streaming(Apply *a, uint64_t seq) {
        if (a->exclusive != seq && !go_exclusive(a, seq))
                return -ECANCELED;
        a->streaming = true;
        a->streaming_to = a->turn;
        a->turn = (a->turn + 1) % a->n;
        a->owner[seq % IN_FLIGHT_MAX] = a->streaming_to;
        return release_held(a, a->streaming_to, seq) ? 0 : -ECANCELED;
}

/* The held batch of chunks goes to the worker its records choose and is handed on change by
 * change from here, beside other batches. */
static int start_streaming_shared(Apply *a, uint64_t seq) {
        int w = choose_worker(a);
        if (w < 0)
                return -ECANCELED;
        a->streaming = true;
        a->shared = true;
        a->streaming_to = w;
        a->owner[seq % IN_FLIGHT_MAX] = w;
        return release_held(a, w, seq) ? 0 : -ECANCELED;
}

/* A batch of chunks streaming beside others claimed a record: waits for any other worker's
 * uncommitted batch that touched it (all are earlier: they commit without this one). */
static bool settle_shared_claim(Apply *a) {
        return wait_others(a, a->streaming_to, committed_now(a));
}

/* The first change of batch seq, or one of another kind than the batch's so far: a batch of
 * chunks starts after every other batch before it committed, any other after every batch of
 * chunks; a batch of both kinds is exclusive. False when the attempt ended. */
static bool settle_kind(Apply *a, uint64_t seq, bool chunk) {
        int kind = chunk ? KIND_CHUNKS : KIND_OTHER;
        if (a->kind == kind || a->kind == KIND_MIXED)
                return true;
        if (a->kind == KIND_NONE) {
                a->kind = kind;
                uint64_t before = chunk ? a->last_other : a->last_chunks;
                if (chunk)
                        a->last_chunks = seq;
                else
                        a->last_other = seq;
                return before <= committed_now(a) || wait_committed(a, before);
        }
        a->kind = KIND_MIXED;
        a->last_chunks = a->last_other = seq;
        return a->exclusive == seq || go_exclusive(a, seq);
}

static int dispatch(Apply *a) {
        Pipeline *p = a->p;
        Event ev = {0};
        uint64_t seq = 0;
        bool in_batch = false;
        size_t batch_keys = 0;
        unsigned unnoted = 0;
        int r;

        for (;;) {
                r = queue_pop(p->q_sink, &ev, 1000);
                if (r < 0 || ++unnoted >= NOTE_EVENTS) {
                        unnoted = 0;
                        atomic_store(&p->stats.last_progress_ts, now_usec());
                        pipeline_note_depth(p);
                }
                if (r == -ETIMEDOUT)
                        continue;
                if (r < 0)
                        return 0;
                if (!in_batch && (ev.kind == EVENT_BEGIN || ev.kind == EVENT_CHANGE || ev.kind == EVENT_COMMIT)) {
                        pthread_mutex_lock(&a->lock); /* workers read dispatched under it */
                        seq = ++a->dispatched;
                        pthread_mutex_unlock(&a->lock);
                        in_batch = true;
                        batch_keys = 0;
                        a->streaming = false;
                        a->shared = false;
                        a->kind = KIND_NONE;
                        memset(a->touched, 0, (size_t)a->n * sizeof(*a->touched));
                        bool serial = atomic_load(&p->serial_batches) > 0;
                        if (serial)
                                atomic_fetch_sub(&p->serial_batches, 1);
                        if ((serial && !wait_committed(a, seq - 1)) ||
                            (a->exclusive && !wait_committed(a, a->exclusive)) ||
                            (seq > IN_FLIGHT_MAX && !wait_committed(a, seq - IN_FLIGHT_MAX))) {
                                event_clear(&ev);
                                return 0;
                        }
                }
                switch (ev.kind) {
                case EVENT_CHANGE: {
                        const Change *c = &ev.change;
                        bool fresh = false;
                        if (table_is_new(a, c->table, &fresh) < 0) {
                                event_clear(&ev);
                                return -ENOMEM;
                        }
                        if (!settle_kind(a, seq, ev.txn.chunk)) {
                                event_clear(&ev);
                                return 0;
                        }
                        bool alone =
                                fresh || c->op == CHANGE_TRUNCATE || (c->flags & CHANGE_RANGE) || a->exclusive == seq;
                        bool big = ++batch_keys > KEYS_PER_BATCH_MAX || a->held_bytes > HOLD_BYTES_MAX;
                        r = 0;
                        if (!a->streaming && (alone || (big && a->kind != KIND_CHUNKS)))
                                r = start_streaming(a, seq);
                        else if (!a->streaming && big)
                                r = start_streaming_shared(a, seq);
                        else if (a->shared && alone && a->exclusive != seq)
                                r = go_exclusive(a, seq) ? 0 : -ECANCELED;
                        if (r < 0) {
                                event_clear(&ev);
                                return r == -ECANCELED ? 0 : r;
                        }
                        /* rows of chunks are no other chunk's; copy records are claimed */
                        bool claim = a->kind != KIND_CHUNKS || copies_is_registry(c->table);
                        if (claim && (!a->streaming || (a->shared && a->exclusive != seq))) {
                                const Value *imgs[2] = {c->before, c->after};
                                for (int i = 0; i < 2; i++) {
                                        if (!imgs[i] || (i == 1 && c->before && table_nkeys(c->table) == 0))
                                                continue;
                                        r = claim_key(a, seq, row_hash(c->table, imgs[i]));
                                        if (r < 0) {
                                                event_clear(&ev);
                                                return r;
                                        }
                                }
                                if (a->streaming && !settle_shared_claim(a)) {
                                        event_clear(&ev);
                                        return 0;
                                }
                        }
                        r = hold(a, seq, &ev);
                        if (r < 0)
                                return r == -ECANCELED ? 0 : r;
                        break;
                }
                case EVENT_BEGIN:
                case EVENT_COMMIT:
                        /* transactions without changes count too: what is held stays bounded */
                        if (!a->streaming && a->nheld >= 3 * (size_t)KEYS_PER_BATCH_MAX) {
                                r = a->kind == KIND_CHUNKS ? start_streaming_shared(a, seq) : start_streaming(a, seq);
                                if (r < 0) {
                                        event_clear(&ev);
                                        return r == -ECANCELED ? 0 : r;
                                }
                        }
                        r = hold(a, seq, &ev);
                        if (r < 0)
                                return r == -ECANCELED ? 0 : r;
                        break;
                case EVENT_BATCH_END:
                        if (!in_batch) {
                                event_clear(&ev);
                                break;
                        }
                        in_batch = false;
                        if (a->kind == KIND_CHUNKS) {
                                a->chunk_batches++;
                                a->chunk_exclusives += a->exclusive == seq;
                        }
                        if (!a->streaming) {
                                int w = choose_worker(a);
                                if (w < 0) {
                                        event_clear(&ev);
                                        return 0;
                                }
                                a->owner[seq % IN_FLIGHT_MAX] = w;
                                if (!release_held(a, w, seq)) {
                                        event_clear(&ev);
                                        return 0;
                                }
                                a->streaming_to = w;
                        }
                        a->streaming = false;
                        if (!hand_to(a, a->streaming_to, seq, &ev))
                                return 0;
                        break;
                case EVENT_KEEPALIVE:
                        /* As the serial sink thread: only with nothing open or uncommitted. */
                        if (!in_batch && committed_now(a) == a->dispatched && queue_depth(p->q_sink) == 0 &&
                            !position_is_zero(ev.ckpt.pos))
                                pipeline_set_durable(p, &ev.ckpt);
                        event_clear(&ev);
                        break;
                case EVENT_END:
                        event_clear(&ev);
                        /* what was dispatched whole commits; an open batch is rolled back (a held
                         * one was never handed on) */
                        drop_held(a);
                        wait_committed(a, in_batch ? seq - 1 : seq);
                        return 0;
                }
        }
}

void *pipeline_apply_main(void *arg) {
        Pipeline *p = arg;
        Apply a = {.p = p, .n = p->conf->apply_workers};
        CdcError err = {0};
        int r = 0;

        pthread_mutex_init(&a.lock, NULL);
        pthread_cond_init(&a.cond, NULL);
        a.w = calloc((size_t)a.n, sizeof(*a.w));
        a.touched = calloc((size_t)a.n, sizeof(*a.touched));
        if (!a.w || !a.touched || keymap_init(&a.keys, 4096) < 0) {
                r = cdc_oom(&err);
                goto out;
        }
        for (int i = 0; i < a.n; i++) {
                a.w[i] = (Worker){.a = &a, .id = i};
                r = queue_new(WORKER_QUEUE_CAPACITY, &a.w[i].q);
                if (r < 0) {
                        r = cdc_oom(&err);
                        goto out;
                }
                if (i == 0)
                        a.w[i].sink = p->sink;
                else
                        r = p->sink_ops->open_worker(p->conf->sink, p->conf, i, &a.w[i].sink, &err);
                /* ha = on: every worker's session fences its commits and is listed with the
                 * lease (a taker ends it), like the pipeline's own. */
                if (r == 0 && i > 0 && p->fence > 0 && p->sink_ops->set_fence)
                        r = p->sink_ops->set_fence(a.w[i].sink, p->fence, &err);
                if (r < 0)
                        goto out;
        }
        for (int i = 0; i < a.n; i++) {
                a.w[i].started = pthread_create(&a.w[i].thread, NULL, worker_main, &a.w[i]) == 0;
                if (!a.w[i].started) {
                        r = cdc_error(&err, -EAGAIN, true, CDC_ERR_INTERNAL, "cannot start apply worker %d", i);
                        goto out;
                }
        }
        r = dispatch(&a);
        if (r == -ENOMEM)
                r = cdc_oom(&err);
        log_info(p->ctx,
                 "apply_workers = %d: %" PRIu64 " batches dispatched, %" PRIu64 " committed; %" PRIu64
                 " batches waited for another worker's batch touching their rows, %" PRIu64
                 " batches applied alone; %" PRIu64 " batches of a copy's chunks, %" PRIu64 " of them alone",
                 a.n, a.dispatched, committed_now(&a), a.waits, a.exclusives, a.chunk_batches, a.chunk_exclusives);
out:
        if (r < 0)
                pipeline_fail_attempt(p, &err);
        apply_fail(&a); /* nothing commits from here on: what is open is rolled back */
        for (int i = 0; a.w && i < a.n; i++)
                if (a.w[i].q)
                        queue_close(a.w[i].q);
        for (int i = 0; a.w && i < a.n; i++) {
                if (a.w[i].started)
                        pthread_join(a.w[i].thread, NULL);
                a.w[i].q = queue_free(a.w[i].q);
                if (i > 0 && a.w[i].sink)
                        p->sink_ops->free(a.w[i].sink);
        }
        free(a.w);
        free(a.touched);
        drop_held(&a);
        free(a.held);
        keymap_free(&a.keys);
        while (a.tables) {
                TableSeen *s = a.tables;
                a.tables = s->next;
                table_unref(s->shape);
                free(s);
        }
        pthread_cond_destroy(&a.cond);
        pthread_mutex_destroy(&a.lock);
        return NULL;
}
