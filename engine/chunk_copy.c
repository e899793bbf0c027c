/* The chunked, parallel initial copy of any source (chunk_copy.h): readers, one chunk's events at
 * a time, the copy records and the progress log.
 *
 * DESIGN: chunk_copy_run() starts one thread per reader connection (the connector's, borrowed). A
 * reader takes the next chunk of the plan (lock) and has the connector read it (ops->read_chunk),
 * holding the rows as Changes (at most CHUNK_BUFFER_MAX bytes; past that it takes `emit`, hands on
 * what it holds and streams the rest), then takes `emit` and hands the chunk on through
 * pipeline_io_emit (which blocks while the queue is full, so memory stays bounded: readers ×
 * CHUNK_BUFFER_MAX plus the queues). Only one chunk's events go into the pipeline at a time, so
 * each chunk is one whole transaction. The calling (source) thread waits, logging progress every
 * PROGRESS_USEC, until every reader is done. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdcsync/chunk_copy.h"
#include "cdcsync/log.h"
#include "cdcsync/now.h"

#define CHUNK_BUFFER_MAX (32u << 20) /* bytes of rows a reader holds before it streams a chunk */
#define PROGRESS_USEC (5 * 1000000LL)

typedef struct {
        char key[COPIES_NAME_MAX]; /* "schema.table" */
        Table *t;                  /* one reference */
        void *ud;                  /* owned (ops->table_free) */
        bool truncate;             /* a TRUNCATE (truncate_flags) goes with its first chunk */
        uint32_t truncate_flags;
        char note[64];      /* added to the "copying" record's text, or "" */
        bool started;       /* its first chunk went out (emit) */
        bool finalized;     /* its final record went out (emit) */
        ChunkRange *done;   /* owned: chunks done, kept ones included (emit) */
        int ndone, capdone; /* (emit) */
        int chunks_total;   /* kept + planned */
        ChunkRange *forget; /* owned: chunk records of an earlier attempt dropped with the final record */
        int nforget;
        uint64_t rows, rows_est; /* copied so far, kept ones included (emit); the estimate */
        CopyState final_state;   /* the record once every chunk is done */
        Position final_pos;
} CopyTab;

typedef struct {
        int tab;
        ChunkRange r;
} CopyChunk;

struct ChunkCopy {
        ChunkCopyOptions o;
        char ckpt_text[CHECKPOINT_TEXT_MAX];
        CopyTab *tabs;
        int ntabs;
        CopyChunk *chunks;
        int nchunks;
        pthread_mutex_t lock; /* next, failed, err, running */
        pthread_cond_t cv;
        int next, running, failed;
        CdcError err;
        pthread_mutex_t emit; /* everything below, and one chunk's events at a time */
        bool begun;           /* unchunked: the one transaction's BEGIN went out */
        bool registry_written;
        TxnInfo txn;
        uint32_t seq;
        int chunks_done;
        uint64_t rows_done, rows_est;
        uint64_t rows_before; /* rows_done when the run began (kept chunks): the rate counts this run's */
        const char *current;  /* the table whose chunk went out last */
};

struct ChunkCopyReader {
        ChunkCopy *cp;
        void *conn;   /* borrowed */
        CopyTab *tb;  /* the chunk's table */
        Change *held; /* the chunk's rows read and not handed on yet */
        int nheld, capheld;
        size_t bytes;
        uint64_t rows; /* the chunk's, so far */
        bool locked;   /* holds emit: the chunk streams */
};

int chunk_copy_new(const ChunkCopyOptions *opts, ChunkCopy **ret, CdcError *err) {
        ChunkCopy *cp = calloc(1, sizeof(*cp));
        if (!cp)
                return cdc_oom(err);
        cp->o = *opts;
        if (opts->ckpt_text) {
                snprintf(cp->ckpt_text, sizeof(cp->ckpt_text), "%s", opts->ckpt_text);
                cp->o.ckpt_text = cp->ckpt_text;
        }
        pthread_mutex_init(&cp->lock, NULL);
        pthread_mutex_init(&cp->emit, NULL);
        pthread_cond_init(&cp->cv, NULL);
        *ret = cp;
        return 0;
}

ChunkCopy *chunk_copy_free(ChunkCopy *cp) {
        if (!cp)
                return NULL;
        for (int i = 0; i < cp->ntabs; i++) {
                table_unref(cp->tabs[i].t);
                if (cp->tabs[i].ud)
                        cp->o.ops->table_free(cp->tabs[i].ud);
                free(cp->tabs[i].done);
                free(cp->tabs[i].forget);
        }
        free(cp->tabs);
        free(cp->chunks);
        pthread_mutex_destroy(&cp->lock);
        pthread_mutex_destroy(&cp->emit);
        pthread_cond_destroy(&cp->cv);
        free(cp);
        return NULL;
}

static int done_add(CopyTab *tb, ChunkRange r) {
        if (tb->ndone == tb->capdone) {
                int nc = tb->capdone ? tb->capdone * 2 : 16;
                ChunkRange *g = realloc(tb->done, sizeof(*g) * (size_t)nc);
                if (!g)
                        return -ENOMEM;
                tb->done = g;
                tb->capdone = nc;
        }
        tb->done[tb->ndone++] = r;
        return 0;
}

int chunk_copy_add_table(ChunkCopy *cp, const ChunkCopyTable *tab, const ChunkRange *done, int ndone,
                         uint64_t done_rows, const ChunkRange *plan, int nplan, CdcError *err) {
        CopyTab *g = realloc(cp->tabs, sizeof(*g) * (size_t)(cp->ntabs + 1));
        if (!g) {
                if (tab->ud)
                        cp->o.ops->table_free(tab->ud);
                return cdc_oom(err);
        }
        cp->tabs = g;
        CopyTab *tb = &cp->tabs[cp->ntabs++];
        memset(tb, 0, sizeof(*tb));
        snprintf(tb->key, sizeof(tb->key), "%s", tab->key);
        tb->t = table_ref(tab->t);
        tb->ud = tab->ud;
        tb->truncate = tab->truncate;
        tb->truncate_flags = tab->truncate_flags;
        snprintf(tb->note, sizeof(tb->note), "%s", tab->copying_note ? tab->copying_note : "");
        tb->final_state = tab->final_state;
        tb->final_pos = tab->final_pos;
        tb->rows = done_rows;
        tb->rows_est = tab->rows_est > done_rows ? tab->rows_est : done_rows;
        for (int i = 0; i < ndone; i++)
                if (done_add(tb, done[i]) < 0)
                        return cdc_oom(err);
        CopyChunk *c = realloc(cp->chunks, sizeof(*c) * (size_t)(cp->nchunks + nplan + 1));
        if (!c)
                return cdc_oom(err);
        cp->chunks = c;
        for (int i = 0; i < nplan; i++)
                cp->chunks[cp->nchunks++] = (CopyChunk){.tab = cp->ntabs - 1, .r = plan[i]};
        tb->chunks_total = tb->ndone + nplan;
        pipeline_io_report_snapshot(cp->o.io, tb->key, true, tb->rows, tb->rows_est, tb->ndone, tb->chunks_total);
        cp->chunks_done += tb->ndone;
        cp->rows_done += done_rows;
        cp->rows_est += tb->rows_est;
        return 0;
}

int chunk_copy_forget_chunk(ChunkCopy *cp, ChunkRange r, CdcError *err) {
        CopyTab *tb = cp->ntabs > 0 ? &cp->tabs[cp->ntabs - 1] : NULL;
        ChunkRange *g = tb ? realloc(tb->forget, sizeof(*g) * (size_t)(tb->nforget + 1)) : NULL;
        if (!g)
                return cdc_oom(err);
        (tb->forget = g)[tb->nforget++] = r;
        return 0;
}

static int emit(ChunkCopy *cp, Event *ev, CdcError *err) {
        ev->txn = cp->txn;
        int r = pipeline_io_emit(cp->o.io, ev);
        if (r < 0)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "pipeline stopping");
        return 0;
}

static int emit_change(ChunkCopy *cp, Change *c, CdcError *err) {
        Event ev = {.kind = EVENT_CHANGE, .change = *c};
        *c = (Change){0};
        return emit(cp, &ev, err);
}

static int emit_begin(ChunkCopy *cp, CdcError *err) {
        cp->txn = (TxnInfo){.xid = ++cp->seq,
                            .commit_pos = cp->o.pos,
                            .commit_ts = now_usec(),
                            .snapshot = true,
                            .chunk = cp->o.chunked};
        cp->begun = true;
        Event ev = {.kind = EVENT_BEGIN};
        return emit(cp, &ev, err);
}

static int emit_commit(ChunkCopy *cp, CdcError *err) {
        Event ev = {.kind = EVENT_COMMIT};
        if (cp->o.ckpt_text) {
                ev.ckpt.pos = cp->o.pos;
                snprintf(ev.ckpt.text, sizeof(ev.ckpt.text), "%s", cp->o.ckpt_text);
        }
        return emit(cp, &ev, err);
}

static bool bookkeeping(const CopyTab *tb) {
        return strncmp(tb->key, "cdcsync.", 8) == 0; /* cdcsync.versions: copied, never recorded */
}

/* Under emit: what goes before a chunk's rows: its transaction's BEGIN, with the first one the
 * "copying" records of every new table, with a table's first chunk its TRUNCATE. */
static int chunk_head(ChunkCopy *cp, CopyTab *tb, CdcError *err) {
        int r = 0;
        if (cp->o.chunked || !cp->begun)
                r = emit_begin(cp, err);
        if (r == 0 && cp->o.chunked && !cp->registry_written) {
                char pos[96], text[96 + 64 + 1]; /* pos, a space, the note */
                cp->o.ops->format_position(cp->o.pos, pos, sizeof(pos));
                for (int i = 0; r == 0 && i < cp->ntabs; i++) {
                        const CopyTab *ti = &cp->tabs[i];
                        if (bookkeeping(ti) || ti->final_state != COPY_STATE_COPIED ||
                            position_cmp(ti->final_pos, cp->o.pos) != 0)
                                continue; /* a resumed table's record is there already */
                        snprintf(text, sizeof(text), "%s%s%s", pos, ti->note[0] ? " " : "", ti->note);
                        Change c;
                        if (copies_record_state(cp->o.pipeline, ti->key, COPY_STATE_COPYING, cp->o.pos, text, 0, &c) <
                            0)
                                return cdc_oom(err);
                        r = emit_change(cp, &c, err);
                }
                cp->registry_written = true;
        }
        if (r == 0 && !tb->started) {
                tb->started = true;
                if (tb->truncate) {
                        Change c = {.op = CHANGE_TRUNCATE, .flags = tb->truncate_flags, .table = table_ref(tb->t)};
                        r = emit_change(cp, &c, err);
                }
        }
        return r;
}

/* Under emit: forgets the chunk records of ranges (n). */
static int forget_chunks(ChunkCopy *cp, CopyTab *tb, const ChunkRange *ranges, int n, CdcError *err) {
        char key[COPIES_NAME_MAX + 64];
        int r = 0;
        Change c;
        for (int i = 0; r == 0 && i < n; i++) {
                cp->o.ops->chunk_key(tb->ud, tb->key, ranges[i], key, sizeof(key));
                if (copies_forget(cp->o.pipeline, key, &c) < 0)
                        return cdc_oom(err);
                r = emit_change(cp, &c, err);
        }
        return r;
}

/* Under emit, in an open transaction: the table's final record, its chunk records dropped. */
static int table_final(ChunkCopy *cp, CopyTab *tb, CdcError *err) {
        char text[96];
        int r = 0;
        Change c;
        tb->finalized = true;
        if (bookkeeping(tb) || !cp->o.pipeline)
                return 0;
        if (cp->o.chunked)
                r = forget_chunks(cp, tb, tb->done, tb->ndone, err);
        if (r == 0 && cp->o.chunked)
                r = forget_chunks(cp, tb, tb->forget, tb->nforget, err);
        cp->o.ops->format_position(tb->final_pos, text, sizeof(text));
        if (r == 0 &&
            copies_record_state(cp->o.pipeline, tb->key, tb->final_state, tb->final_pos, text, tb->rows, &c) < 0)
                return cdc_oom(err);
        if (r == 0)
                r = emit_change(cp, &c, err);
        if (r == 0)
                log_info(cp->o.ctx, "snapshot of %s: %" PRIu64 " rows", tb->key, tb->rows);
        return r;
}

/* Under emit: what follows a chunk's rows: its record (with the table's last chunk, the table's
 * final record instead), its COMMIT. */
static int chunk_tail(ChunkCopy *cp, CopyTab *tb, ChunkRange range, uint64_t rows, CdcError *err) {
        char text[96], key[COPIES_NAME_MAX + 64];
        int r = 0;
        Change c;
        if (done_add(tb, range) < 0)
                return cdc_oom(err);
        tb->rows += rows;
        cp->rows_done += rows;
        cp->chunks_done++;
        cp->current = tb->key;
        pipeline_io_report_snapshot(cp->o.io, tb->key, false, tb->rows, tb->rows_est, tb->ndone, tb->chunks_total);
        bool last = tb->ndone == tb->chunks_total;
        if (!bookkeeping(tb) && cp->o.chunked && !last) {
                cp->o.ops->format_position(cp->o.pos, text, sizeof(text));
                cp->o.ops->chunk_key(tb->ud, tb->key, range, key, sizeof(key));
                if (copies_record_state(cp->o.pipeline, key, COPY_STATE_CHUNK, cp->o.pos, text, rows, &c) < 0)
                        return cdc_oom(err);
                r = emit_change(cp, &c, err);
        }
        if (r == 0 && last)
                r = table_final(cp, tb, err);
        if (r == 0 && cp->o.chunked)
                r = emit_commit(cp, err);
        return r;
}

static void reader_drop_held(ChunkCopyReader *rd) {
        for (int i = 0; i < rd->nheld; i++)
                change_clear(&rd->held[i]);
        rd->nheld = 0;
        rd->bytes = 0;
}

/* Under emit: hands on the rows held. */
static int reader_flush(ChunkCopyReader *rd, CdcError *err) {
        int r = 0;
        for (int i = 0; r == 0 && i < rd->nheld; i++)
                r = emit_change(rd->cp, &rd->held[i], err);
        reader_drop_held(rd);
        return r;
}

/* Takes emit and hands on the chunk's head and the rows held: from now on the chunk streams. */
static int reader_lock(ChunkCopyReader *rd, CdcError *err) {
        pthread_mutex_lock(&rd->cp->emit);
        rd->locked = true;
        int r = chunk_head(rd->cp, rd->tb, err);
        if (r == 0)
                r = reader_flush(rd, err);
        return r;
}

int chunk_copy_row(ChunkCopyReader *rd, Change *c, size_t bytes, CdcError *err) {
        rd->rows++;
        if (rd->locked)
                return emit_change(rd->cp, c, err);
        if (rd->nheld == rd->capheld) {
                int nc = rd->capheld ? rd->capheld * 2 : 1024;
                Change *g = realloc(rd->held, sizeof(*g) * (size_t)nc);
                if (!g) {
                        change_clear(c);
                        return cdc_oom(err);
                }
                rd->held = g;
                rd->capheld = nc;
        }
        rd->held[rd->nheld++] = *c;
        *c = (Change){0};
        rd->bytes += bytes;
        /* A large chunk (wide rows, a table read whole): hand on what is held, stream the rest. */
        return rd->bytes > CHUNK_BUFFER_MAX ? reader_lock(rd, err) : 0;
}

/* Reads chunk ci on rd's connection and hands it on. */
static int copy_chunk(ChunkCopyReader *rd, int ci, CdcError *err) {
        ChunkCopy *cp = rd->cp;
        const CopyChunk *ch = &cp->chunks[ci];
        CopyTab *tb = &cp->tabs[ch->tab];
        rd->tb = tb;
        rd->rows = 0;
        rd->locked = false;
        int r = cp->o.ops->read_chunk(cp->o.ud, rd->conn, tb->ud, ch->r, rd, err);
        if (r == 0 && !rd->locked)
                r = reader_lock(rd, err);
        if (r == 0)
                r = chunk_tail(cp, tb, ch->r, rd->rows, err);
        reader_drop_held(rd);
        if (rd->locked)
                pthread_mutex_unlock(&cp->emit);
        rd->locked = false;
        return r;
}

static void *reader_main(void *arg) {
        ChunkCopyReader *rd = arg;
        ChunkCopy *cp = rd->cp;
        for (;;) {
                pthread_mutex_lock(&cp->lock);
                int ci = cp->failed || pipeline_io_stopping(cp->o.io) ? cp->nchunks : cp->next;
                if (ci < cp->nchunks)
                        cp->next++;
                pthread_mutex_unlock(&cp->lock);
                if (ci >= cp->nchunks)
                        break;
                CdcError e = {0};
                int r = copy_chunk(rd, ci, &e);
                if (r < 0) {
                        pthread_mutex_lock(&cp->lock);
                        if (!cp->failed) {
                                cp->failed = r;
                                cp->err = e;
                        }
                        pthread_mutex_unlock(&cp->lock);
                        break;
                }
        }
        pthread_mutex_lock(&cp->lock);
        cp->running--;
        pthread_cond_signal(&cp->cv);
        pthread_mutex_unlock(&cp->lock);
        return NULL;
}

/* Under emit: chunks done and planned, rows copied and estimated. */
static void progress(const ChunkCopy *cp, int *ret_done, int *ret_total, uint64_t *ret_rows, uint64_t *ret_est) {
        int total = 0;
        for (int i = 0; i < cp->ntabs; i++)
                total += cp->tabs[i].chunks_total;
        *ret_done = cp->chunks_done;
        *ret_total = total;
        *ret_rows = cp->rows_done;
        *ret_est = cp->rows_est > cp->rows_done ? cp->rows_est : cp->rows_done;
}

static void log_progress(ChunkCopy *cp, int64_t started) {
        int done, total;
        uint64_t rows, est;
        pthread_mutex_lock(&cp->emit);
        progress(cp, &done, &total, &rows, &est);
        const char *current = cp->current;
        pthread_mutex_unlock(&cp->emit);
        double secs = (double)(now_usec() - started) / 1e6;
        double rate = secs > 0 ? (double)(rows - cp->rows_before) / secs : 0;
        log_info(cp->o.ctx, "snapshot: %d of %d chunks, %" PRIu64 " of ~%" PRIu64 " rows, %.0f rows/s, ETA %.0f s%s%s",
                 done, total, rows, est, rate, rate > 0 ? (double)(est - rows) / rate : 0,
                 current ? "; last chunk of " : "", current ? current : "");
}

/* Starts the readers and waits for them, logging progress. Returns the number started. */
static int readers_run(ChunkCopy *cp, ChunkCopyReader *rds, pthread_t *th, void **readers, int nreaders, int64_t t0) {
        int started = 0;
        int64_t last_log = t0;
        pthread_mutex_lock(&cp->lock);
        for (int i = 0; i < nreaders; i++) {
                rds[i] = (ChunkCopyReader){.cp = cp, .conn = readers[i]};
                cp->running++;
                if (pthread_create(&th[i], NULL, reader_main, &rds[i]) != 0) {
                        cp->running--;
                        if (!cp->failed)
                                cp->failed = cdc_error(&cp->err, -EAGAIN, true, CDC_ERR_INTERNAL,
                                                       "cannot start a snapshot reader thread");
                        break;
                }
                started++;
        }
        while (cp->running > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += 1;
                pthread_cond_timedwait(&cp->cv, &cp->lock, &ts);
                if (cp->running > 0 && now_usec() - last_log >= PROGRESS_USEC) {
                        pthread_mutex_unlock(&cp->lock);
                        log_progress(cp, t0);
                        last_log = now_usec();
                        pthread_mutex_lock(&cp->lock);
                }
        }
        pthread_mutex_unlock(&cp->lock);
        for (int i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        return started;
}

int chunk_copy_run(ChunkCopy *cp, void **readers, int nreaders, CdcError *err) {
        ChunkCopyReader *rds = calloc((size_t)nreaders, sizeof(*rds));
        pthread_t *th = calloc((size_t)nreaders, sizeof(*th));
        int r = 0;
        if (!rds || !th) {
                free(rds);
                free(th);
                return cdc_oom(err);
        }
        int done, total;
        uint64_t rows, est;
        progress(cp, &done, &total, &rows, &est);
        log_info(cp->o.ctx, "snapshot: %d tables, %d chunks (%d done before), ~%" PRIu64 " rows, %d reader%s",
                 cp->ntabs, total, done, est, nreaders, nreaders == 1 ? "" : "s");
        cp->rows_before = cp->rows_done;
        int64_t t0 = now_usec();
        readers_run(cp, rds, th, readers, nreaders, t0);
        for (int i = 0; i < nreaders; i++)
                free(rds[i].held);
        free(rds);
        free(th);
        if (cp->failed) {
                *err = cp->err;
                return cp->failed;
        }
        /* A table with no chunk left to read (every one done before, its record not final yet),
         * and a copy of no table at all (its empty transaction gives the stream's start as the
         * sink's checkpoint): their transactions now. */
        for (int i = 0; r == 0 && i < cp->ntabs; i++) {
                CopyTab *tb = &cp->tabs[i];
                if (tb->finalized)
                        continue;
                r = chunk_head(cp, tb, err);
                if (r == 0)
                        r = table_final(cp, tb, err);
                if (r == 0 && cp->o.chunked)
                        r = emit_commit(cp, err);
        }
        if (r == 0 && !cp->begun) {
                r = emit_begin(cp, err);
                if (r == 0 && cp->o.chunked)
                        r = emit_commit(cp, err);
        }
        if (r == 0 && !cp->o.chunked)
                r = emit_commit(cp, err);
        if (r == 0)
                log_progress(cp, t0);
        return r;
}
