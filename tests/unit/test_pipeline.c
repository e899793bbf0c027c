/* The pipeline (supervisor, source, engine and sink threads) driven by in-memory fake connectors:
 * whole transactions per sink commit, the checkpoint committed with the data it covers, nothing
 * acknowledged upstream before the sink holds it, replays up to the checkpoint skipped, retriable
 * errors retried to an exact result, fatal ones stopping with data and checkpoint in agreement,
 * a stop mid-stream resumed without loss or repeat, and a sink that delivers later (Kafka-style:
 * durable when a later poll_durable says so) acknowledged only once delivered.
 *
 * The fakes: a source log of generated transactions (insert, update, delete on 64 keys, computed
 * against the source's own table so every change is valid exactly once), and a sink "database"
 * that applies them strictly (an insert of a present key, an update or delete of a missing one is
 * a violation), stages a batch and commits it with its checkpoint atomically. This file defines
 * the connector registry itself (connector_type), so the engine's own registry
 * (engine/registry.c) is not linked in. Waits are for events, bounded only to fail a hung run. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cdcsync/connector.h"
#include "cdcsync/log.h"
#include "cdcsync/metrics.h"
#include "cdcsync/pipeline.h"

#define NKEYS 64
#define MAX_TXNS 400
#define WAIT_LIMIT_S 60 /* only to end a hung run with a message, never a measure */

typedef struct {
        char op; /* CHANGE_INSERT, CHANGE_UPDATE, CHANGE_DELETE */
        int key;
        char val[24];
} FakeChange;

typedef struct {
        uint64_t xid;
        Position pos;
        int n;
        FakeChange *ch; /* owned */
        bool chunk;     /* a chunk of a chunked copy (TxnInfo.chunk): inserts no other chunk makes */
} FakeTxn;

/* A table state: which keys are present, with which value. */
typedef struct {
        bool present[NKEYS];
        char val[NKEYS][24];
} Rows;

/* One batch the deliver-later sink took, not yet durable. */
typedef struct {
        Position pos;
        Rows rows;
} AsyncBatch;

static struct {
        pthread_mutex_t lock;
        /* source */
        FakeTxn log[MAX_TXNS];
        int ntxns;
        int emit_delay_us; /* pause after each transaction emitted */
        Position acked;    /* what the source was last told is durable */
        /* sink */
        Rows committed, stage;
        bool in_txn;
        Position ckpt; /* durable checkpoint */
        bool found;
        uint64_t applies, commits, rollbacks, opens;
        uint64_t batch_applies, committed_applies; /* applies of the open batch; of committed batches */
        uint64_t fail_at_apply; /* the apply with this number (1-based, over all attempts) fails once */
        bool fail_retriable;
        bool async; /* the sink delivers later: durable on a later poll_durable */
        AsyncBatch pending[32];
        int npending;
        /* per staged batch: changes seen per transaction index */
        int batch_count[MAX_TXNS];
        int batch_first, batch_last; /* txn index range seen in the staged batch, -1 none */
        int max_commit_changes;      /* most changes in one sink commit */
        char violation[512];         /* first broken rule, "" none */
        /* probe: where the source's log ends, as the pipeline's monitor asks it */
        bool probe_on; /* off: the source has no probe (lag comes from the stream) */
        Position probe_end;
        /* the parallel fake ("fakepar", apply_workers > 1): sessions with row locks */
        struct ParSess {
                bool in_txn;
                int nst; /* staged changes, applied to committed at commit */
                struct {
                        int key;
                        bool present;
                        char val[24];
                } st[256];
                int count[MAX_TXNS]; /* changes per transaction index in the open transaction */
                int first, last;
                uint64_t applies;
                bool chunks, others; /* the open transaction holds changes of chunks; of the log */
        } par[8];
        int npar;
        int held_by[NKEYS];     /* 1 + the session whose open transaction changed the row; 0: none */
        int max_open;           /* most sessions in a transaction with changes at once */
        int max_open_chunks;    /* most sessions in a transaction with changes of chunks at once */
        int commit_delay_us;    /* a commit takes this long: later batches overlap it */
        bool fail_when_overlap; /* the first apply made while another session holds changes fails (data) */
        bool failed_on_overlap;
        int hot_keys; /* log_generate: transactions touch only this many keys (0: all NKEYS) */
        bool hot_row; /* log_generate: every transaction's first change is of row 0 (as pgbench's
                       * branches), its others of rows 1.. */
} g;

static Table *table;

struct Source {
        int unused;
};
struct Sink {
        int sess; /* the parallel fake: its session in g.par */
};
struct SourceProbe {
        int unused;
};

static void violate(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violate(const char *fmt, ...) {
        if (g.violation[0])
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g.violation, sizeof(g.violation), fmt, ap);
        va_end(ap);
}

/* ---- the source log ---- */

static Position txn_pos(int i) {
        return (Position){0, (uint64_t)(i + 1) * 100};
}

/* Appends n transactions; the i-th has sizes(i) changes (or `each` when > 0). */
static void log_generate(int n, int each, Rows *src) {
        for (int t = 0; t < n; t++) {
                int i = g.ntxns++;
                FakeTxn *x = &g.log[i];
                x->xid = (uint64_t)i + 1000;
                x->pos = txn_pos(i);
                x->n = each > 0 ? each : 1 + (i * 7) % 5;
                x->ch = calloc((size_t)x->n, sizeof(*x->ch));
                assert_non_null(x->ch);
                for (int j = 0; j < x->n; j++) {
                        FakeChange *c = &x->ch[j];
                        c->key = g.hot_row && j == 0 ? 0
                                 : g.hot_row         ? 1 + (i * 31 + j * 7) % (NKEYS - 1)
                                 : g.hot_keys        ? (i * 5 + j * 3) % g.hot_keys
                                                     : (i * 31 + j * 7) % NKEYS;
                        snprintf(c->val, sizeof(c->val), "v%d.%d", i, j);
                        if (!src->present[c->key])
                                c->op = CHANGE_INSERT;
                        else
                                c->op = (i + j) % 4 == 0 ? CHANGE_DELETE : CHANGE_UPDATE;
                        src->present[c->key] = c->op != CHANGE_DELETE;
                        if (c->op != CHANGE_DELETE)
                                memcpy(src->val[c->key], c->val, sizeof(c->val));
                }
        }
}

/* The table as of transaction index `upto` (inclusive; -1: empty). */
static void rows_as_of(int upto, Rows *ret) {
        memset(ret, 0, sizeof(*ret));
        for (int i = 0; i <= upto; i++)
                for (int j = 0; j < g.log[i].n; j++) {
                        const FakeChange *c = &g.log[i].ch[j];
                        ret->present[c->key] = c->op != CHANGE_DELETE;
                        if (c->op != CHANGE_DELETE)
                                memcpy(ret->val[c->key], c->val, sizeof(c->val));
                }
}

static int txn_index(Position pos) {
        for (int i = 0; i < g.ntxns; i++)
                if (position_cmp(g.log[i].pos, pos) == 0)
                        return i;
        return -2;
}

static void assert_rows_equal(const Rows *a, const Rows *b) {
        for (int k = 0; k < NKEYS; k++) {
                assert_int_equal(a->present[k], b->present[k]);
                if (a->present[k])
                        assert_string_equal(a->val[k], b->val[k]);
        }
}

/* ---- fake source ---- */

static int fsrc_open(const ConnectorConf *conn, const PipelineConf *pipe, Source **ret, CdcError *err) {
        (void)conn;
        (void)pipe;
        (void)err;
        *ret = calloc(1, sizeof(Source));
        return *ret ? 0 : -ENOMEM;
}

static int emit_change(PipelineIO *io, const FakeChange *fc) {
        Event ev = {.kind = EVENT_CHANGE};
        Change *c = &ev.change;
        char key[16];
        snprintf(key, sizeof(key), "%d", fc->key);
        c->op = (ChangeOp)fc->op;
        c->table = table_ref(table);
        Value *v = values_new(2);
        if (!v || value_set(&v[0], key, strlen(key)) < 0)
                return -ENOMEM;
        if (fc->op == CHANGE_DELETE) {
                c->before = v;
        } else {
                c->after = v;
                if (value_set(&v[1], fc->val, strlen(fc->val)) < 0)
                        return -ENOMEM;
        }
        return pipeline_io_emit(io, &ev);
}

/* Sends the whole log from its start, as a slot resends what its confirmed position trails: the
 * engine must skip what the sink holds. Then keepalives at the log's end until told to stop. */
static int fsrc_run(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err) {
        (void)s;
        (void)start;
        (void)err;
        pipeline_io_streaming(io, false);
        int i = 0;
        while (!pipeline_io_stopping(io)) {
                pthread_mutex_lock(&g.lock);
                int n = g.ntxns;
                int delay = g.emit_delay_us;
                pthread_mutex_unlock(&g.lock);
                int r = 0;
                if (i < n) {
                        const FakeTxn *x = &g.log[i++];
                        TxnInfo txn = {.xid = x->xid,
                                       .commit_pos = x->pos,
                                       .commit_ts = 1700000000000000LL,
                                       .snapshot = x->chunk,
                                       .chunk = x->chunk};
                        Event ev = {.kind = EVENT_BEGIN, .txn = txn};
                        r = pipeline_io_emit(io, &ev);
                        for (int j = 0; r == 0 && j < x->n; j++)
                                r = emit_change(io, &x->ch[j]);
                        if (r == 0) {
                                Event cm = {.kind = EVENT_COMMIT, .txn = txn};
                                r = pipeline_io_emit(io, &cm);
                        }
                        if (delay)
                                usleep((useconds_t)delay);
                } else {
                        Event ka = {.kind = EVENT_KEEPALIVE, .ckpt.pos = n ? g.log[n - 1].pos : (Position){0, 1}};
                        r = pipeline_io_emit(io, &ka);
                        usleep(1000);
                }
                if (r == -ECANCELED)
                        return 0;
                if (r < 0)
                        return cdc_error(err, r, false, CDC_ERR_INTERNAL, "emit failed");
                /* What a source acknowledges upstream must already be durable in the sink. */
                Position d = pipeline_io_durable(io);
                pthread_mutex_lock(&g.lock);
                if (position_cmp(d, g.ckpt) > 0)
                        violate("source told %" PRIu64 " is durable, the sink holds %" PRIu64, d.lo, g.ckpt.lo);
                g.acked = d;
                pthread_mutex_unlock(&g.lock);
        }
        return 0;
}

static void fsrc_format(Position p, char *buf, size_t len) {
        snprintf(buf, len, "%" PRIu64 "/%" PRIu64, p.hi, p.lo);
}

static int fsrc_parse(const char *text, Position *ret) {
        return sscanf(text, "%" SCNu64 "/%" SCNu64, &ret->hi, &ret->lo) == 2 ? 0 : -EINVAL;
}

static int fake_check(const ConnectorConf *conn, const PipelineConf *pipe, CdcError *err) {
        (void)conn;
        (void)pipe;
        (void)err;
        return 0;
}

static Source *fsrc_free(Source *s) {
        free(s);
        return NULL;
}

/* The fakes hold no tables: no server to ask where they are, none to list; no probe (lag comes
 * from the stream) unless a test turns it on (g.probe_on: the source's end is g.probe_end). */
static int fake_locate(const ConnectorConf *conn, ConnectorPlace *ret, CdcError *err) {
        (void)conn, (void)err;
        *ret = (ConnectorPlace){.server = "", .database = ""};
        return 0;
}

/* Asked only of a pipeline whose sink keeps copy records, which no fake sink does. */
static int fsrc_streamed_tables(Source *s, char ***ret, int *ret_n, CdcError *err) {
        (void)s, (void)err;
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

static int fsrc_list_tables(const ConnectorConf *conn, char ***ret, int *ret_n, CdcError *err) {
        (void)conn, (void)err;
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

static int fsrc_probe_open(const ConnectorConf *conn, const PipelineConf *pipe, SourceProbe **ret, CdcError *err) {
        (void)conn, (void)pipe;
        pthread_mutex_lock(&g.lock);
        bool on = g.probe_on;
        pthread_mutex_unlock(&g.lock);
        *ret = on ? calloc(1, sizeof(SourceProbe)) : NULL;
        return on && !*ret ? cdc_oom(err) : 0;
}

static int fsrc_probe(SourceProbe *pr, Position applied, Position *ret_end, uint64_t *ret_bytes, CdcError *err) {
        (void)applied, (void)ret_bytes;
        if (!pr)
                return cdc_error(err, -EOPNOTSUPP, false, CDC_ERR_INTERNAL, "the fake source has no probe");
        pthread_mutex_lock(&g.lock);
        *ret_end = g.probe_end;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static SourceProbe *fsrc_probe_free(SourceProbe *pr) {
        free(pr);
        return NULL;
}

static const SourceOps fake_source_ops = {
        .type = "fake",
        .open = fsrc_open,
        .run = fsrc_run,
        .format_position = fsrc_format,
        .parse_position = fsrc_parse,
        .check = fake_check,
        .free = fsrc_free,
        .streamed_tables = fsrc_streamed_tables,
        .locate = fake_locate,
        .list_tables = fsrc_list_tables,
        .probe_open = fsrc_probe_open,
        .probe = fsrc_probe,
        .probe_free = fsrc_probe_free,
};

/* ---- fake sink ---- */

static int fsink_open(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err) {
        (void)conn;
        (void)pipe;
        (void)err;
        pthread_mutex_lock(&g.lock);
        g.opens++;
        g.npending = 0; /* a new session: what was not delivered is gone */
        pthread_mutex_unlock(&g.lock);
        *ret = calloc(1, sizeof(Sink));
        return *ret ? 0 : -ENOMEM;
}

static int fsink_last_position(Sink *k, Checkpoint *ret, bool *found, CdcError *err) {
        (void)k;
        (void)err;
        pthread_mutex_lock(&g.lock);
        *ret = (Checkpoint){.pos = g.ckpt};
        *found = g.found;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static int fsink_begin(Sink *k, CdcError *err) {
        (void)k;
        (void)err;
        pthread_mutex_lock(&g.lock);
        if (g.in_txn)
                violate("begin inside an open sink transaction");
        g.in_txn = true;
        g.stage = g.committed;
        for (int i = 0; i < MAX_TXNS; i++)
                g.batch_count[i] = 0;
        g.batch_first = g.batch_last = -1;
        g.batch_applies = 0;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static int fsink_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        (void)k;
        pthread_mutex_lock(&g.lock);
        uint64_t n = ++g.applies;
        if (g.fail_at_apply && n == g.fail_at_apply) {
                bool retriable = g.fail_retriable;
                pthread_mutex_unlock(&g.lock);
                return cdc_error(err, -EIO, retriable, retriable ? CDC_ERR_CONNECTION : CDC_ERR_DATA,
                                 "injected failure at apply %" PRIu64, n);
        }
        if (!g.in_txn)
                violate("apply outside a sink transaction");
        int ti = txn_index(txn->commit_pos);
        const Value *row = c->op == CHANGE_DELETE ? c->before : c->after;
        int key = atoi(row[0].data);
        if (ti < 0) {
                violate("change of an unknown transaction %" PRIu64, txn->commit_pos.lo);
        } else {
                if (g.batch_first < 0)
                        g.batch_first = ti;
                if (ti < g.batch_last)
                        violate("transaction %d applied after %d", ti, g.batch_last);
                g.batch_last = ti;
                g.batch_count[ti]++;
        }
        switch (c->op) {
        case CHANGE_INSERT:
                if (g.stage.present[key])
                        violate("insert of present key %d (a change applied twice)", key);
                break;
        case CHANGE_UPDATE:
        case CHANGE_DELETE:
                if (!g.stage.present[key])
                        violate("%c of missing key %d (a change lost or applied twice)", c->op, key);
                break;
        default: violate("unexpected op %c", c->op);
        }
        g.batch_applies++;
        g.stage.present[key] = c->op != CHANGE_DELETE;
        if (c->op != CHANGE_DELETE)
                snprintf(g.stage.val[key], sizeof(g.stage.val[key]), "%s", row[1].data);
        pthread_mutex_unlock(&g.lock);
        return 0;
}

/* The batch staged must be whole transactions ending at `pos` (lock held). */
static void check_batch(Position pos, const TxnInfo *last) {
        int end = txn_index(pos);
        if (end < 0 || position_cmp(last->commit_pos, pos) != 0)
                violate("checkpoint %" PRIu64 " is not the batch's last commit", pos.lo);
        int changes = 0;
        for (int i = g.batch_first; i >= 0 && i <= g.batch_last; i++) {
                if (g.batch_count[i] && g.batch_count[i] != g.log[i].n)
                        violate("transaction %d split: %d of %d changes in one commit", i, g.batch_count[i],
                                g.log[i].n);
                changes += g.batch_count[i];
        }
        if (g.batch_last >= 0 && g.batch_last != end)
                violate("batch holds transaction %d but its checkpoint is %d", g.batch_last, end);
        if (changes > g.max_commit_changes)
                g.max_commit_changes = changes;
}

static int fsink_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        (void)k;
        (void)err;
        Position pos = ckpt->pos;
        pthread_mutex_lock(&g.lock);
        char want[64];
        fsrc_format(pos, want, sizeof(want));
        if (strcmp(ckpt->text, want) != 0)
                violate("checkpoint text %s for position %s", ckpt->text, want);
        if (g.found && position_cmp(pos, g.ckpt) <= 0)
                violate("checkpoint went back from %" PRIu64 " to %" PRIu64, g.ckpt.lo, pos.lo);
        check_batch(pos, last);
        g.committed = g.stage;
        g.committed_applies += g.batch_applies;
        g.ckpt = pos;
        g.found = true;
        g.in_txn = false;
        g.commits++;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static int fsink_rollback(Sink *k) {
        (void)k;
        pthread_mutex_lock(&g.lock);
        g.in_txn = false;
        g.rollbacks++;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static Sink *fsink_free(Sink *k) {
        free(k);
        return NULL;
}

/* A database sink: what commit() committed is durable at once. */
static int fsink_poll_durable(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err) {
        (void)k;
        (void)timeout_ms;
        (void)err;
        pthread_mutex_lock(&g.lock);
        *ret = g.ckpt;
        *ret_found = g.found;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

/* Kafka-style: the batch is handed over now and durable only when a later poll says so. */
static int fsink_commit_later(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        (void)k;
        (void)err;
        Position pos = ckpt->pos;
        pthread_mutex_lock(&g.lock);
        check_batch(pos, last);
        if (g.npending == (int)(sizeof(g.pending) / sizeof(g.pending[0])))
                violate("more batches pending than the engine may hold");
        else
                g.pending[g.npending++] = (AsyncBatch){pos, g.stage};
        g.committed = g.stage; /* what later batches build on */
        g.committed_applies += g.batch_applies;
        g.in_txn = false;
        g.commits++;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

/* A poll that may wait delivers the oldest pending batch; one that may not (timeout 0) only
 * reports: delivery lags behind the engine's commits, as a broker's acknowledgements do. */
static int fsink_poll_delivered(Sink *k, int timeout_ms, Position *ret, bool *ret_found, CdcError *err) {
        (void)k;
        (void)err;
        pthread_mutex_lock(&g.lock);
        if (timeout_ms > 0 && g.npending > 0) {
                g.ckpt = g.pending[0].pos;
                g.found = true;
                memmove(&g.pending[0], &g.pending[1], (size_t)(g.npending - 1) * sizeof(g.pending[0]));
                g.npending--;
        }
        *ret = g.ckpt;
        *ret_found = g.found;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

/* The fake sink keeps no copy records. */
static int fsink_copied_tables(Sink *k, CopiedTable **ret, int *ret_n, CdcError *err) {
        (void)k, (void)err;
        *ret = NULL;
        *ret_n = 0;
        return 0;
}

static const SinkOps fake_sink_ops = {
        .type = "fake",
        .open = fsink_open,
        .last_position = fsink_last_position,
        .begin = fsink_begin,
        .apply = fsink_apply,
        .commit = fsink_commit,
        .poll_durable = fsink_poll_durable,
        .rollback = fsink_rollback,
        .check = fake_check,
        .free = fsink_free,
        .copy_records = false,
        .copied_tables = fsink_copied_tables,
        .locate = fake_locate,
};

static const SinkOps fake_async_sink_ops = {
        .type = "fakeasync",
        .open = fsink_open,
        .last_position = fsink_last_position,
        .begin = fsink_begin,
        .apply = fsink_apply,
        .commit = fsink_commit_later,
        .poll_durable = fsink_poll_delivered,
        .rollback = fsink_rollback,
        .check = fake_check,
        .free = fsink_free,
        .copy_records = false,
        .copied_tables = fsink_copied_tables,
        .locate = fake_locate,
};

/* ---- parallel fake sink: one session per worker, row locks, commits in any order checked ---- */

static int fpar_open_worker(const ConnectorConf *conn, const PipelineConf *pipe, int worker, Sink **ret,
                            CdcError *err) {
        (void)conn, (void)pipe, (void)worker, (void)err;
        Sink *k = calloc(1, sizeof(Sink));
        if (!k)
                return -ENOMEM;
        pthread_mutex_lock(&g.lock);
        g.opens++;
        if (g.npar == (int)(sizeof(g.par) / sizeof(g.par[0])))
                violate("more sessions than the fake has");
        else
                k->sess = g.npar++;
        pthread_mutex_unlock(&g.lock);
        *ret = k;
        return 0;
}

static int fpar_open(const ConnectorConf *conn, const PipelineConf *pipe, Sink **ret, CdcError *err) {
        return fpar_open_worker(conn, pipe, 0, ret, err);
}

static int fpar_begin(Sink *k, CdcError *err) {
        (void)err;
        pthread_mutex_lock(&g.lock);
        struct ParSess *s = &g.par[k->sess];
        if (s->in_txn)
                violate("begin inside an open sink transaction");
        memset(s, 0, sizeof(*s));
        s->in_txn = true;
        s->first = s->last = -1;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static int open_with_changes(void) {
        int n = 0;
        for (int i = 0; i < g.npar; i++)
                n += g.par[i].in_txn && g.par[i].nst > 0;
        return n;
}

/* As fsink_apply, on this session's view (the committed rows and its own changes); a row another
 * open transaction changed is a violation: the engine must never let two batches touch one row
 * at once (a database would make one wait, and commit order could then invert them). */
static int fpar_apply(Sink *k, const TxnInfo *txn, const Change *c, CdcError *err) {
        pthread_mutex_lock(&g.lock);
        struct ParSess *s = &g.par[k->sess];
        const Value *row = c->op == CHANGE_DELETE ? c->before : c->after;
        int key = atoi(row[0].data), ti = txn_index(txn->commit_pos);
        if (g.fail_when_overlap && !g.failed_on_overlap && open_with_changes() - (s->nst > 0) > 0) {
                g.failed_on_overlap = true;
                pthread_mutex_unlock(&g.lock);
                return cdc_error(err, -EINVAL, false, CDC_ERR_DATA, "injected failure while batches overlap");
        }
        if (!s->in_txn)
                violate("apply outside a sink transaction");
        /* rows of chunks are not claimed (pipeline_apply.c): chunks and the log never overlap */
        for (int i = 0; i < g.npar; i++)
                if (i != k->sess && g.par[i].in_txn && (txn->chunk ? g.par[i].others : g.par[i].chunks))
                        violate("a change of %s applied while session %d holds changes of %s",
                                txn->chunk ? "a chunk" : "the log", i, txn->chunk ? "the log" : "chunks");
        if (txn->chunk)
                s->chunks = true;
        else
                s->others = true;
        if (g.held_by[key] && g.held_by[key] != k->sess + 1)
                violate("row %d changed by two open transactions", key);
        g.held_by[key] = k->sess + 1;
        bool present = g.committed.present[key];
        for (int i = 0; i < s->nst; i++)
                if (s->st[i].key == key)
                        present = s->st[i].present;
        if (c->op == CHANGE_INSERT ? present : !present)
                violate("%c of key %d %s (a change out of order, lost or applied twice)", c->op, key,
                        present ? "present" : "missing");
        if (s->nst == (int)(sizeof(s->st) / sizeof(s->st[0]))) {
                violate("batch larger than the parallel fake holds");
        } else {
                s->st[s->nst].key = key;
                s->st[s->nst].present = c->op != CHANGE_DELETE;
                snprintf(s->st[s->nst].val, sizeof(s->st[s->nst].val), "%s", c->op != CHANGE_DELETE ? row[1].data : "");
                s->nst++;
        }
        if (ti >= 0) {
                if (s->first < 0)
                        s->first = ti;
                if (ti < s->last)
                        violate("transaction %d applied after %d", ti, s->last);
                s->last = ti;
                s->count[ti]++;
        }
        s->applies++;
        int open = open_with_changes(), open_chunks = 0;
        if (open > g.max_open)
                g.max_open = open;
        for (int i = 0; i < g.npar; i++)
                open_chunks += g.par[i].in_txn && g.par[i].chunks;
        if (open_chunks > g.max_open_chunks)
                g.max_open_chunks = open_chunks;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static int fpar_commit(Sink *k, const Checkpoint *ckpt, const TxnInfo *last, CdcError *err) {
        (void)err;
        if (g.commit_delay_us)
                usleep((useconds_t)g.commit_delay_us);
        pthread_mutex_lock(&g.lock);
        struct ParSess *s = &g.par[k->sess];
        if (g.found && position_cmp(ckpt->pos, g.ckpt) <= 0)
                violate("checkpoint went back from %" PRIu64 " to %" PRIu64 " (commits out of order)", g.ckpt.lo,
                        ckpt->pos.lo);
        if (position_cmp(last->commit_pos, ckpt->pos) != 0 || (s->last >= 0 && s->last != txn_index(ckpt->pos)))
                violate("checkpoint %" PRIu64 " is not the batch's last commit", ckpt->pos.lo);
        for (int i = s->first; i >= 0 && i <= s->last; i++)
                if (s->count[i] && s->count[i] != g.log[i].n)
                        violate("transaction %d split: %d of %d changes in one commit", i, s->count[i], g.log[i].n);
        for (int i = 0; i < s->nst; i++) {
                g.committed.present[s->st[i].key] = s->st[i].present;
                memcpy(g.committed.val[s->st[i].key], s->st[i].val, sizeof(s->st[i].val));
                g.held_by[s->st[i].key] = 0;
        }
        g.committed_applies += s->applies;
        g.ckpt = ckpt->pos;
        g.found = true;
        g.commits++;
        s->in_txn = false;
        s->nst = 0;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static int fpar_rollback(Sink *k) {
        pthread_mutex_lock(&g.lock);
        struct ParSess *s = &g.par[k->sess];
        for (int i = 0; i < s->nst; i++)
                g.held_by[s->st[i].key] = 0;
        s->in_txn = false;
        s->nst = 0;
        g.rollbacks++;
        pthread_mutex_unlock(&g.lock);
        return 0;
}

static const SinkOps fake_par_sink_ops = {
        .type = "fakepar",
        .open = fpar_open,
        .last_position = fsink_last_position,
        .begin = fpar_begin,
        .apply = fpar_apply,
        .commit = fpar_commit,
        .poll_durable = fsink_poll_durable,
        .rollback = fpar_rollback,
        .check = fake_check,
        .free = fsink_free,
        .copy_records = false,
        .copied_tables = fsink_copied_tables,
        .locate = fake_locate,
        .open_worker = fpar_open_worker,
};

/* The registry, for this test: every type is the fake ("fakeasync": the deliver-later sink). */
static int fake_write_mark(const PipelineConf *writer, char *buf, size_t len) {
        (void)writer, (void)buf, (void)len;
        return -1; /* no reverse pipelines here */
}

static int fake_shared_source(const PipelineConf *earlier, const PipelineConf *later, char *msg, size_t len) {
        (void)earlier, (void)later, (void)msg, (void)len;
        return 0;
}

static int fake_conf_source(const ConnectorConf *conn, const char *const *set, const PipelineConf *reader, char *msg,
                            size_t len) {
        (void)conn, (void)set, (void)reader, (void)msg, (void)len;
        return 0;
}

static int fake_conf_place(const ConnectorConf *conn, char *buf, size_t len, struct GuardPlace *ret) {
        (void)conn, (void)buf, (void)len, (void)ret;
        return -1;
}

static bool fake_shares_stream(const PipelineConf *a, const PipelineConf *b) {
        (void)a, (void)b;
        return false;
}

static int fake_conf_database(const ConnectorConf *conn, char **ret) {
        (void)conn;
        *ret = NULL;
        return 0;
}

#define FAKE_TYPE(name, sink_ops)                                                                                      \
        {                                                                                                              \
                .type = name, .source = &fake_source_ops, .sink = sink_ops, .holds_tables = false,                     \
                .sink_versions_in_messages = false, .write_mark = fake_write_mark,                                     \
                .conf_shared_source = fake_shared_source, .conf_source = fake_conf_source,                             \
                .conf_place = fake_conf_place, .shares_stream = fake_shares_stream,                                    \
                .source_slot_and_publication = false, .source_passes_bad_messages = false,                             \
                .sink_database_is_schema = false, .source_dialect = CONNECTOR_DIALECT_NONE,                            \
                .source_relation_ids = false, .source_lsn_is_position = false, .debezium_name = name,                  \
                .conf_database = fake_conf_database,                                                                   \
        }
static const ConnectorType fake_type = FAKE_TYPE("fake", &fake_sink_ops);
static const ConnectorType fake_async_type = FAKE_TYPE("fakeasync", &fake_async_sink_ops);
static const ConnectorType fake_par_type = FAKE_TYPE("fakepar", &fake_par_sink_ops);

const ConnectorType *connector_type(const char *type) {
        return strcmp(type, "fakeasync") == 0 ? &fake_async_type
               : strcmp(type, "fakepar") == 0 ? &fake_par_type
                                              : &fake_type;
}

/* ---- harness ---- */

static ConnectorConf src_conf = {.name = "src", .type = "fake"};
static ConnectorConf sink_conf = {.name = "dst", .type = "fake"};
static PipelineConf pipe_conf = {.name = "p", .source = &src_conf, .sink = &sink_conf, .batch_max_rows = 50};

static int setup(void **state) {
        (void)state;
        for (int i = 0; i < g.ntxns; i++)
                free(g.log[i].ch);
        memset(&g, 0, sizeof(g));
        pthread_mutex_init(&g.lock, NULL);
        sink_conf.type = "fake";
        pipe_conf.batch_max_rows = 50;
        pipe_conf.apply_workers = 1;
        if (!table) {
                table = table_new("public", "t", 2);
                assert_non_null(table);
                table->cols[0].name = strdup("id");
                table->cols[0].cls = TYPE_INTEGER;
                table->cols[0].key = true;
                table->cols[1].name = strdup("v");
                table->cols[1].cls = TYPE_TEXT;
        }
        log_set_level(LOG_LEVEL_ERROR);
        return 0;
}

static int teardown(void **state) {
        (void)state;
        for (int i = 0; i < g.ntxns; i++)
                free(g.log[i].ch);
        g.ntxns = 0;
        pthread_mutex_destroy(&g.lock);
        return 0;
}

static int64_t mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the sink's checkpoint and the source's acknowledgement reach `pos` (or a
 * violation shows); fails a hung run after WAIT_LIMIT_S. */
static void wait_acked(Position pos) {
        int64_t until = mono_ms() + WAIT_LIMIT_S * 1000;
        for (;;) {
                pthread_mutex_lock(&g.lock);
                bool done = g.violation[0] || (position_cmp(g.ckpt, pos) >= 0 && position_cmp(g.acked, pos) >= 0);
                pthread_mutex_unlock(&g.lock);
                if (done)
                        return;
                if (mono_ms() > until)
                        fail_msg("checkpoint %" PRIu64 " / acknowledged %" PRIu64 " never reached %" PRIu64, g.ckpt.lo,
                                 g.acked.lo, pos.lo);
                usleep(1000);
        }
}

static void wait_state(Pipeline *p, PipelineState s) {
        int64_t until = mono_ms() + WAIT_LIMIT_S * 1000;
        while (atomic_load(&pipeline_stats(p)->state) != (int)s) {
                if (mono_ms() > until)
                        fail_msg("pipeline never reached state %s", pipeline_state_name(s));
                usleep(1000);
        }
}

static Pipeline *start(void) {
        Pipeline *p = NULL;
        assert_int_equal(pipeline_start(&pipe_conf, NULL, "/tmp", NULL, &p), 0);
        return p;
}

static void assert_no_violation(void) {
        if (g.violation[0])
                fail_msg("%s", g.violation);
}

static uint64_t changes_in(int from, int to) {
        uint64_t n = 0;
        for (int i = from; i <= to; i++)
                n += (uint64_t)g.log[i].n;
        return n;
}

static uint64_t errors_counted(Pipeline *p) {
        uint64_t n = 0;
        for (int i = 0; i < STATS_ERROR_KINDS; i++)
                n += atomic_load(&pipeline_stats(p)->errors[i]);
        return n;
}

/* Runs a pipeline until the source's whole log is acknowledged, and stops it: the sink must then
 * hold exactly the source's table, every rule kept on the way. */
static void run_to_end(const Rows *src) {
        Pipeline *p = start();
        wait_acked(g.log[g.ntxns - 1].pos);
        pipeline_free(p);
        assert_no_violation();
        assert_rows_equal(&g.committed, src);
}

/* The sink holds exactly the transactions up to its checkpoint; returns the checkpoint's
 * transaction index (-1: none yet). */
static int assert_sink_as_of_checkpoint(void) {
        Rows want;
        assert_no_violation();
        int at = g.found ? txn_index(g.ckpt) : -1;
        assert_true(at >= -1);
        rows_as_of(at, &want);
        assert_rows_equal(&g.committed, &want);
        return at;
}

/* ---- tests ---- */

static void test_streams_whole_transactions(void **state) {
        (void)state;
        Rows src = {0}, sink;
        log_generate(300, 0, &src);
        Pipeline *p = start();
        wait_acked(g.log[299].pos);
        assert_true(pipeline_settled(p));
        assert_int_equal(atomic_load(&pipeline_stats(p)->transactions), 300);
        p = pipeline_free(p);
        assert_no_violation();
        pthread_mutex_lock(&g.lock);
        sink = g.committed;
        pthread_mutex_unlock(&g.lock);
        assert_rows_equal(&sink, &src);
        assert_int_equal(g.committed_applies, changes_in(0, 299));
        assert_int_equal(g.rollbacks, 0);
        assert_true(g.commits >= 1);
}

/* The sink already holds transactions 0..149: the resent ones are skipped, not applied again
 * (an insert applied twice would be a violation). */
static void test_resume_skips_what_the_sink_holds(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        rows_as_of(149, &g.committed);
        g.ckpt = g.log[149].pos;
        g.found = true;
        run_to_end(&src);
        assert_int_equal(g.committed_applies, changes_in(150, 299));
}

/* A retriable sink error mid-batch: the batch is rolled back, the attempt retried, and every
 * change arrives exactly once. */
static void test_retriable_error_retried_to_exact(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        g.fail_at_apply = 123;
        g.fail_retriable = true;
        Pipeline *p = start();
        wait_acked(g.log[299].pos);
        assert_int_equal(errors_counted(p), 1);
        p = pipeline_free(p);
        assert_no_violation();
        assert_rows_equal(&g.committed, &src);
        assert_true(g.rollbacks >= 1);
        assert_int_equal(g.opens, 2);
}

/* A fatal error stops the pipeline; what the sink holds is exactly what its checkpoint says. */
static void test_fatal_error_stops_with_data_and_checkpoint_agreeing(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        g.fail_at_apply = 123;
        g.fail_retriable = false;
        g.emit_delay_us = 200; /* several batches commit before the failure */
        Pipeline *p = start();
        wait_state(p, PIPELINE_FAILED);
        assert_true(pipeline_settled(p));
        assert_int_equal(errors_counted(p), 1);
        p = pipeline_free(p);
        assert_sink_as_of_checkpoint();
        assert_int_equal(g.opens, 1);
        assert_true(position_cmp(g.ckpt, g.log[299].pos) < 0);
}

/* cdcsync_pipeline_lag_seconds of pipeline "p" as the endpoint renders it; -1 if absent. */
static double rendered_lag_seconds(Metrics *m) {
        char *body = metrics_render_prometheus(m);
        assert_non_null(body);
        const char *at = strstr(body, "\ncdcsync_pipeline_lag_seconds{pipeline=\"p\"} ");
        double lag = at ? strtod(strchr(at + 1, ' ') + 1, NULL) : -1;
        free(body);
        return lag;
}

/* A pipeline stopped for good by a non-retriable error still tells how far the sink falls behind
 * the source: its monitor goes on asking the source where its log ends, lag_bytes follows the
 * source as it moves on after the failure, and lag_seconds grows (it never reads 0). */
static void test_failed_pipeline_lag_grows(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        g.fail_at_apply = 123;
        g.fail_retriable = false;
        g.emit_delay_us = 200;
        g.probe_end = g.log[299].pos;
        g.probe_on = true;
        Metrics *m = NULL;
        assert_int_equal(metrics_start(&(MetricsOptions){.listen = "127.0.0.1:0"}, &m), 0);
        Pipeline *p = start();
        assert_int_equal(metrics_attach(m, pipeline_stats(p)), 0);
        wait_state(p, PIPELINE_FAILED);
        pthread_mutex_lock(&g.lock);
        Position held = g.ckpt;
        g.probe_end = (Position){0, g.log[299].pos.lo + 5000}; /* the source moves on */
        uint64_t want = g.probe_end.lo - held.lo;
        pthread_mutex_unlock(&g.lock);
        assert_true(g.found && position_cmp(held, g.log[299].pos) < 0);

        int64_t until = mono_ms() + WAIT_LIMIT_S * 1000;
        while (atomic_load(&pipeline_stats(p)->lag_bytes) != want) {
                if (mono_ms() > until)
                        fail_msg("lag_bytes of the failed pipeline is %" PRIu64 ", not %" PRIu64,
                                 (uint64_t)atomic_load(&pipeline_stats(p)->lag_bytes), want);
                usleep(10000);
        }
        double l1 = rendered_lag_seconds(m);
        assert_true(l1 > 0);
        while (rendered_lag_seconds(m) < l1 + 1.0) {
                if (mono_ms() > until)
                        fail_msg("lag_seconds of the failed pipeline stays at %f", rendered_lag_seconds(m));
                usleep(50000);
        }
        assert_int_equal(atomic_load(&pipeline_stats(p)->state), PIPELINE_FAILED);
        assert_int_equal(metrics_detach(m, pipeline_stats(p)), 0);
        m = metrics_free(m);
        p = pipeline_free(p);
        assert_sink_as_of_checkpoint();
}

/* Paused mid-stream (admin API): the attempt ends as on stop, the sink holding whole transactions
 * up to its checkpoint and nothing more arriving while paused; resumed, the pipeline goes on from
 * there and ends exact, nothing lost and nothing applied twice. */
static void test_pause_midway_then_resume(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        g.emit_delay_us = 300;
        Pipeline *p = start();
        wait_acked(g.log[50].pos);
        pipeline_pause(p);
        wait_state(p, PIPELINE_PAUSED);
        assert_true(pipeline_paused(p));
        assert_true(pipeline_settled(p));
        pthread_mutex_lock(&g.lock);
        int at = assert_sink_as_of_checkpoint();
        int opens = g.opens;
        uint64_t applies = g.committed_applies;
        pthread_mutex_unlock(&g.lock);
        assert_true(at >= 50 && at < 299);
        /* Still paused after a request that is not a resume. */
        pipeline_restart(p);
        wait_state(p, PIPELINE_PAUSED);
        assert_int_equal(g.opens, opens);
        assert_int_equal(g.committed_applies, applies);
        g.emit_delay_us = 0;
        pipeline_resume(p);
        wait_acked(g.log[299].pos);
        p = pipeline_free(p);
        assert_no_violation();
        assert_rows_equal(&g.committed, &src);
        assert_int_equal(g.committed_applies, changes_in(0, 299));
}

/* Started paused (a pause kept in the state store): nothing opens until resumed. */
static void test_start_paused(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(100, 0, &src);
        Pipeline *p = NULL;
        assert_int_equal(pipeline_start_paused(&pipe_conf, NULL, "/tmp", NULL, true, &p), 0);
        wait_state(p, PIPELINE_PAUSED);
        assert_true(pipeline_settled(p));
        assert_int_equal(g.opens, 0);
        pipeline_resume(p);
        wait_acked(g.log[99].pos);
        p = pipeline_free(p);
        assert_no_violation();
        assert_rows_equal(&g.committed, &src);
}

/* A pipeline stopped by a fatal error runs again on restart (its cause fixed) and ends exact. */
static void test_restart_after_fatal_error(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        g.fail_at_apply = 123;
        g.fail_retriable = false;
        Pipeline *p = start();
        wait_state(p, PIPELINE_FAILED);
        assert_int_equal(g.opens, 1);
        pipeline_restart(p);
        wait_acked(g.log[299].pos);
        assert_int_equal(g.opens, 2);
        p = pipeline_free(p);
        assert_no_violation();
        assert_rows_equal(&g.committed, &src);
}

/* A transaction larger than both queues together travels as one sink commit, never split, however
 * small batch_max_rows is. */
static void test_large_transaction_is_one_commit(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(1, 3 * 4096, &src);
        log_generate(2, 0, &src);
        pipe_conf.batch_max_rows = 10;
        run_to_end(&src);
        assert_true(g.max_commit_changes >= 3 * 4096);
}

/* Stopped mid-stream: the sink holds whole transactions up to its checkpoint; a new pipeline
 * resumes there and ends exact, nothing lost and nothing applied twice. */
static void test_stop_midway_then_resume(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        g.emit_delay_us = 300;
        Pipeline *p = start();
        wait_acked(g.log[50].pos);
        pipeline_free(p);
        assert_true(g.found);
        assert_true(assert_sink_as_of_checkpoint() >= 50);
        g.emit_delay_us = 0;
        run_to_end(&src);
        assert_int_equal(g.committed_applies, changes_in(0, 299));
}

/* A sink that delivers later: nothing is acknowledged to the source before the sink reports it
 * durable (checked on every acknowledgement the source reads), and all of it arrives. */
static void test_async_sink_acknowledged_only_when_durable(void **state) {
        (void)state;
        Rows src = {0};
        log_generate(300, 0, &src);
        sink_conf.type = "fakeasync";
        pipe_conf.batch_max_rows = 5;
        run_to_end(&src);
        assert_int_equal(g.npending, 0);
}

/* apply_workers = 3 (pipeline_apply.c): batches overlap in the sink (several sessions hold open
 * transactions with changes at once), yet no row is touched by two open transactions, each
 * session sees every row as the source had it, commits keep source order and the sink ends
 * exact. */
static void test_parallel_apply_overlaps_in_order(void **state) {
        (void)state;
        Rows src = {0};
        g.hot_keys = 24; /* transactions a few apart touch common rows */
        log_generate(300, 0, &src);
        sink_conf.type = "fakepar";
        pipe_conf.apply_workers = 3;
        pipe_conf.batch_max_rows = 2;
        g.commit_delay_us = 2000;
        run_to_end(&src);
        assert_int_equal(g.committed_applies, changes_in(0, 299));
        assert_int_equal(g.npar, 3);
        assert_true(g.max_open >= 2);
}

/* Every transaction changes one hot row (as each of pgbench's changes its branch row): every
 * batch touches a row of the batch before it, so each goes behind that one on the same worker
 * (pipeline_apply.c) while that one is not committed, where its session sees it committed first:
 * none waits for another worker's batch, and the sink ends exact. */
static void test_parallel_apply_chain_stays_on_one_worker(void **state) {
        (void)state;
        Rows src = {0};
        g.hot_row = true;
        log_generate(200, 0, &src);
        sink_conf.type = "fakepar";
        pipe_conf.apply_workers = 3;
        pipe_conf.batch_max_rows = 3;
        g.commit_delay_us = 1000;
        Pipeline *p = start();
        wait_acked(g.log[g.ntxns - 1].pos);
        assert_int_equal(atomic_load(&pipeline_stats(p)->apply_waits), 0);
        pipeline_free(p);
        assert_no_violation();
        assert_rows_equal(&g.committed, &src);
        assert_int_equal(g.committed_applies, changes_in(0, 199));
}

/* Stopped midway with several batches in flight: the sink holds exactly the source's rows up to
 * its checkpoint (what was not committed in order was rolled back), and a resume ends exact. */
static void test_parallel_apply_stop_midway_then_resume(void **state) {
        (void)state;
        Rows src = {0};
        g.hot_keys = 24; /* transactions a few apart touch common rows */
        log_generate(300, 0, &src);
        sink_conf.type = "fakepar";
        pipe_conf.apply_workers = 3;
        pipe_conf.batch_max_rows = 2;
        g.commit_delay_us = 500;
        g.emit_delay_us = 300;
        Pipeline *p = start();
        wait_acked(g.log[60].pos);
        pipeline_free(p);
        assert_true(assert_sink_as_of_checkpoint() >= 60);
        g.npar = 0;
        g.emit_delay_us = 0;
        run_to_end(&src);
        assert_int_equal(g.committed_applies, changes_in(0, 299));
}

/* Appends n chunks of a copy (TxnInfo.chunk), each inserting `each` keys from `from` on that no
 * other chunk has. */
static void log_chunks(int from, int n, int each, Rows *src) {
        for (int t = 0; t < n; t++) {
                int i = g.ntxns++;
                FakeTxn *x = &g.log[i];
                x->xid = (uint64_t)i + 1000;
                x->pos = txn_pos(i);
                x->n = each;
                x->chunk = true;
                x->ch = calloc((size_t)x->n, sizeof(*x->ch));
                assert_non_null(x->ch);
                for (int j = 0; j < x->n; j++) {
                        FakeChange *c = &x->ch[j];
                        c->key = from + t * each + j;
                        assert_true(c->key < NKEYS && !src->present[c->key]);
                        c->op = CHANGE_INSERT;
                        snprintf(c->val, sizeof(c->val), "c%d.%d", i, j);
                        src->present[c->key] = true;
                        memcpy(src->val[c->key], c->val, sizeof(c->val));
                }
        }
}

/* The chunks of a copy apply side by side although their rows are not claimed (pipeline_apply.c),
 * and the log's transactions before and after them never apply beside them: the fake sink
 * flags a change of the log while another session holds changes of chunks, and the reverse. */
static void test_parallel_apply_chunks_side_by_side(void **state) {
        (void)state;
        Rows src = {0};
        g.hot_keys = 16;
        log_generate(40, 0, &src);   /* rows 0..15 */
        log_chunks(16, 10, 4, &src); /* rows 16..55 */
        g.hot_keys = 0;
        log_generate(150, 0, &src); /* every row */
        sink_conf.type = "fakepar";
        pipe_conf.apply_workers = 3;
        pipe_conf.batch_max_rows = 2;
        g.commit_delay_us = 2000;
        run_to_end(&src);
        assert_int_equal(g.committed_applies, changes_in(0, g.ntxns - 1));
        assert_true(g.max_open_chunks >= 2);
}

/* An error while batches overlap may be one of parallelism alone (a unique index no key shows):
 * it is retried, the next batches one at a time, and the pipeline ends exact instead of stopping
 * on a non-retriable error. */
static void test_parallel_apply_error_in_overlap_retried_in_order(void **state) {
        (void)state;
        Rows src = {0};
        g.hot_keys = 24; /* transactions a few apart touch common rows */
        log_generate(300, 0, &src);
        sink_conf.type = "fakepar";
        pipe_conf.apply_workers = 2;
        pipe_conf.batch_max_rows = 2;
        g.commit_delay_us = 2000;
        g.fail_when_overlap = true;
        Pipeline *p = start();
        wait_acked(g.log[299].pos);
        assert_true(g.failed_on_overlap);
        assert_int_equal(errors_counted(p), 1);
        p = pipeline_free(p);
        assert_no_violation();
        assert_rows_equal(&g.committed, &src);
        assert_true(g.rollbacks >= 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_streams_whole_transactions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_resume_skips_what_the_sink_holds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retriable_error_retried_to_exact, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fatal_error_stops_with_data_and_checkpoint_agreeing, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_failed_pipeline_lag_grows, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pause_midway_then_resume, setup, teardown),
                cmocka_unit_test_setup_teardown(test_start_paused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_after_fatal_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_large_transaction_is_one_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_midway_then_resume, setup, teardown),
                cmocka_unit_test_setup_teardown(test_async_sink_acknowledged_only_when_durable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_apply_overlaps_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_apply_chunks_side_by_side, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_apply_stop_midway_then_resume, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_apply_error_in_overlap_retried_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_parallel_apply_chain_stays_on_one_worker, setup, teardown),
        };
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        table_unref(table);
        return r;
}
