/* The MySQL/MariaDB source's chunked, parallel copy (mysql_copy.h): tables cut into primary-key
 * ranges, read by several reader connections that share one consistent snapshot, each chunk
 * handed on as one source transaction with the record that it is done.
 *
 * DESIGN: mysql_copy_run() starts one thread per reader connection (each owns its MYSQL, in
 * its consistent-snapshot transaction). A reader takes the next chunk of the plan (lock), reads
 * it row by row (mysql_use_result) into Changes it holds (at most CHUNK_BUFFER_MAX bytes; past
 * that it takes `emit`, hands on what it holds and streams the rest), then takes `emit` and hands
 * the chunk on through pipeline_io_emit (which blocks while the queue is full, so memory stays
 * bounded: readers × CHUNK_BUFFER_MAX plus the queues). Only one chunk's events go into the
 * pipeline at a time, so each chunk is one whole transaction. The calling (source) thread waits,
 * logging progress every PROGRESS_USEC, until every reader is done. The shape follows the
 * PostgreSQL copy (connectors/postgres/pg_copy.c); only the chunks (key ranges, not blocks) and
 * the reading differ. */
#include "mysql/mysql_copy.h"

#define CHUNK_BUFFER_MAX (32u << 20) /* bytes of rows a reader holds before it streams a chunk */
#define PROGRESS_USEC (5 * 1000000LL)

typedef struct {
        char key[COPIES_NAME_MAX]; /* "schema.table" */
        SnapTable *st;             /* owned */
        uint32_t change_flags;     /* of its rows: CHANGE_IDEMPOTENT or 0 */
        bool truncate;             /* a TRUNCATE (truncate_flags) goes with its first chunk */
        uint32_t truncate_flags;
        bool started;        /* its first chunk went out (emit) */
        bool finalized;      /* its final record went out (emit) */
        MysqlKeyRange *done; /* owned: chunks done, kept ones included (emit) */
        int ndone, capdone;  /* (emit) */
        int chunks_total;    /* kept + planned */
        uint64_t rows, rows_est;
        CopyState final_state; /* the record once every chunk is done */
        Position final_pos;
} CopyTab;

typedef struct {
        int tab;
        MysqlKeyRange r;
} CopyChunk;

struct MysqlCopy {
        Source *s;
        PipelineIO *io;
        Position pos; /* the transactions' commit position */
        char ckpt_text[CHECKPOINT_TEXT_MAX];
        bool chunked; /* a transaction and a record per chunk (the sink keeps records) */
        uint64_t chunk_rows;
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
        unsigned zero_dates;  /* zero dates read as NULL */
};

typedef struct {
        MysqlCopy *cp;
        MYSQL *conn;
        Change *held; /* the chunk's rows read and not handed on yet */
        int nheld, capheld;
        size_t bytes;
        unsigned zero_dates;
} Reader;

static int64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int mysql_copy_new(Source *s, PipelineIO *io, Position pos, const char *ckpt_text, bool chunked, MysqlCopy **ret,
                   CdcError *err) {
        MysqlCopy *cp = calloc(1, sizeof(*cp));
        if (!cp)
                return cdc_oom(err);
        cp->s = s;
        cp->io = io;
        cp->pos = pos;
        snprintf(cp->ckpt_text, sizeof(cp->ckpt_text), "%s", ckpt_text ? ckpt_text : "");
        cp->chunked = chunked;
        cp->chunk_rows = s->pipe && s->pipe->snapshot_chunk_rows > 0 ? (uint64_t)s->pipe->snapshot_chunk_rows : 100000;
        pthread_mutex_init(&cp->lock, NULL);
        pthread_mutex_init(&cp->emit, NULL);
        pthread_cond_init(&cp->cv, NULL);
        *ret = cp;
        return 0;
}

MysqlCopy *mysql_copy_free(MysqlCopy *cp) {
        if (!cp)
                return NULL;
        for (int i = 0; i < cp->ntabs; i++) {
                mysql_snapshot_table_free(cp->tabs[i].st);
                free(cp->tabs[i].done);
        }
        free(cp->tabs);
        free(cp->chunks);
        pthread_mutex_destroy(&cp->lock);
        pthread_mutex_destroy(&cp->emit);
        pthread_cond_destroy(&cp->cv);
        free(cp);
        return NULL;
}

static int done_add(CopyTab *tb, MysqlKeyRange r) {
        if (tb->ndone == tb->capdone) {
                int nc = tb->capdone ? tb->capdone * 2 : 16;
                MysqlKeyRange *g = realloc(tb->done, sizeof(*g) * (size_t)nc);
                if (!g)
                        return -ENOMEM;
                tb->done = g;
                tb->capdone = nc;
        }
        tb->done[tb->ndone++] = r;
        return 0;
}

/* The key's MIN and MAX in key space (*ret_empty: no row) on conn. */
typedef struct {
        bool is_signed, empty, bad;
        uint64_t min, max;
} Bounds;

static int bounds_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        Bounds *b = ud;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1]) {
                b->empty = true;
                return 0;
        }
        uint64_t v[2];
        for (int i = 0; i < 2; i++) {
                char *end;
                errno = 0;
                if (b->is_signed) {
                        long long x = strtoll(cells[i], &end, 10);
                        v[i] = mysql_chunks_from_signed((int64_t)x);
                } else {
                        v[i] = (uint64_t)strtoull(cells[i], &end, 10);
                }
                if (errno || end == cells[i] || *end)
                        b->bad = true;
        }
        b->min = v[0];
        b->max = v[1];
        return 0;
}

int mysql_copy_add_table(MysqlCopy *cp, MYSQL *conn, SnapTable *st, uint32_t change_flags, bool truncate,
                         uint32_t truncate_flags, const MysqlKeyRange *done, int ndone, uint64_t done_rows,
                         CopyState final_state, Position final_pos, CdcError *err) {
        Source *s = cp->s;
        CopyTab *g = realloc(cp->tabs, sizeof(*g) * (size_t)(cp->ntabs + 1));
        if (!g) {
                mysql_snapshot_table_free(st);
                return cdc_oom(err);
        }
        cp->tabs = g;
        CopyTab *tb = &cp->tabs[cp->ntabs++];
        memset(tb, 0, sizeof(*tb));
        snprintf(tb->key, sizeof(tb->key), "%s.%s", st->t->schema, st->t->name);
        tb->st = st;
        tb->change_flags = change_flags;
        tb->truncate = truncate;
        tb->truncate_flags = truncate_flags;
        tb->final_state = final_state;
        tb->final_pos = final_pos;
        tb->rows = done_rows;
        for (int i = 0; i < ndone; i++)
                if (done_add(tb, done[i]) < 0)
                        return cdc_oom(err);

        /* the server's estimate (InnoDB: sampled, may be far off or 0 before statistics exist) */
        const char *params[2] = {st->t->schema, st->t->name};
        VarRow v = {0};
        int q = mysql_conn_query(s->sql,
                                 "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND "
                                 "TABLE_NAME = ?",
                                 params, 2, mysql_source_var_row, &v, err);
        if (q < 0)
                return q;
        uint64_t est = 0;
        if (q > 0 && v.vals[0][0])
                mysql_source_parse_u64(v.vals[0], strlen(v.vals[0]), &est);
        tb->rows_est = est > done_rows ? est : done_rows;

        Bounds b = {.is_signed = st->key_signed, .empty = true};
        if (st->key_col >= 0) {
                char *sql = NULL;
                if (asprintf(&sql, "SELECT MIN(%s), MAX(%s) FROM %s", st->qkey, st->qkey, st->qtable) < 0)
                        return cdc_oom(err);
                b.empty = false;
                q = mysql_conn_query(conn, sql, NULL, 0, bounds_row, &b, err);
                free(sql);
                if (q < 0)
                        return q;
                if (b.bad)
                        return cdc_error(err, -EPROTO, false, CDC_ERR_SOURCE,
                                         "%s snapshot of %s: the bounds of its key %s are not integers", s->ctx,
                                         tb->key, st->t->cols[st->key_col].name);
        }
        /* No integer key to range over: one chunk (the whole table). */
        uint64_t width =
                st->key_col >= 0 && !b.empty ? mysql_chunks_width(b.min, b.max, est, cp->chunk_rows) : UINT64_MAX;
        MysqlKeyRange *plan = NULL;
        int nplan = 0;
        if (mysql_chunks_plan(st->key_col < 0 || b.empty, b.min, b.max, width, tb->done, tb->ndone, &plan, &nplan) < 0)
                return cdc_oom(err);
        CopyChunk *c = realloc(cp->chunks, sizeof(*c) * (size_t)(cp->nchunks + nplan + 1));
        if (!c) {
                free(plan);
                return cdc_oom(err);
        }
        cp->chunks = c;
        for (int i = 0; i < nplan; i++)
                cp->chunks[cp->nchunks++] = (CopyChunk){.tab = cp->ntabs - 1, .r = plan[i]};
        free(plan);
        tb->chunks_total = tb->ndone + nplan;
        pipeline_io_report_snapshot(cp->io, tb->key, true, tb->rows, tb->rows_est, tb->ndone, tb->chunks_total);
        cp->chunks_done += tb->ndone;
        cp->rows_done += done_rows;
        cp->rows_est += tb->rows_est;
        return 0;
}

static int emit(MysqlCopy *cp, Event *ev, CdcError *err) {
        ev->txn = cp->txn;
        int r = pipeline_io_emit(cp->io, ev);
        if (r < 0)
                return cdc_error(err, r, true, CDC_ERR_INTERNAL, "pipeline stopping");
        return 0;
}

static int emit_change(MysqlCopy *cp, Change *c, CdcError *err) {
        Event ev = {.kind = EVENT_CHANGE, .change = *c};
        *c = (Change){0};
        return emit(cp, &ev, err);
}

static int emit_begin(MysqlCopy *cp, CdcError *err) {
        cp->txn = (TxnInfo){.xid = ++cp->seq, .commit_pos = cp->pos, .commit_ts = now_usec(), .snapshot = true};
        cp->begun = true;
        Event ev = {.kind = EVENT_BEGIN};
        return emit(cp, &ev, err);
}

static int emit_commit(MysqlCopy *cp, CdcError *err) {
        Event ev = {.kind = EVENT_COMMIT, .ckpt.pos = cp->pos};
        snprintf(ev.ckpt.text, sizeof(ev.ckpt.text), "%s", cp->ckpt_text);
        return emit(cp, &ev, err);
}

static bool bookkeeping(const CopyTab *tb) {
        return strncmp(tb->key, "cdcsync.", 8) == 0; /* cdcsync.versions: copied, never recorded */
}

/* Under emit: what goes before a chunk's rows: its transaction's BEGIN, with the first one the
 * "copying" records of every new table, with a table's first chunk its TRUNCATE. */
static int chunk_head(MysqlCopy *cp, CopyTab *tb, CdcError *err) {
        Source *s = cp->s;
        int r = 0;
        if (cp->chunked || !cp->begun)
                r = emit_begin(cp, err);
        if (r == 0 && cp->chunked && !cp->registry_written) {
                char pos[96];
                mysql_source_format_position(cp->pos, pos, sizeof(pos));
                for (int i = 0; r == 0 && i < cp->ntabs; i++) {
                        if (bookkeeping(&cp->tabs[i]) || cp->tabs[i].final_state != COPY_STATE_COPIED ||
                            position_cmp(cp->tabs[i].final_pos, cp->pos) != 0)
                                continue; /* a resumed table's record is there already */
                        Change c;
                        if (copies_record_state(s->pipe->name, cp->tabs[i].key, COPY_STATE_COPYING, cp->pos, pos, 0,
                                                &c) < 0)
                                return cdc_oom(err);
                        r = emit_change(cp, &c, err);
                }
                cp->registry_written = true;
        }
        if (r == 0 && !tb->started) {
                tb->started = true;
                if (tb->truncate) {
                        Change c = {.op = CHANGE_TRUNCATE, .flags = tb->truncate_flags, .table = table_ref(tb->st->t)};
                        r = emit_change(cp, &c, err);
                }
        }
        return r;
}

/* Under emit, in an open transaction: the table's final record, its chunk records dropped. */
static int table_final(MysqlCopy *cp, CopyTab *tb, CdcError *err) {
        Source *s = cp->s;
        char text[96], key[COPIES_NAME_MAX + 64];
        int r = 0;
        Change c;
        tb->finalized = true;
        if (bookkeeping(tb) || !s->pipe)
                return 0;
        for (int i = 0; r == 0 && cp->chunked && i < tb->ndone; i++) {
                mysql_chunks_key(tb->key, tb->done[i], tb->st->key_signed, key, sizeof(key));
                if (copies_forget(s->pipe->name, key, &c) < 0)
                        return cdc_oom(err);
                r = emit_change(cp, &c, err);
        }
        mysql_source_format_position(tb->final_pos, text, sizeof(text));
        if (r == 0 &&
            copies_record_state(s->pipe->name, tb->key, tb->final_state, tb->final_pos, text, tb->rows, &c) < 0)
                return cdc_oom(err);
        if (r == 0)
                r = emit_change(cp, &c, err);
        if (r == 0)
                log_info(s->ctx, "snapshot of %s: %" PRIu64 " rows", tb->key, tb->rows);
        return r;
}

/* Under emit: what follows a chunk's rows: its record (with the table's last chunk, the table's
 * final record instead), its COMMIT. */
static int chunk_tail(MysqlCopy *cp, CopyTab *tb, MysqlKeyRange range, uint64_t rows, CdcError *err) {
        Source *s = cp->s;
        char text[96], key[COPIES_NAME_MAX + 64];
        int r = 0;
        Change c;
        if (done_add(tb, range) < 0)
                return cdc_oom(err);
        tb->rows += rows;
        cp->rows_done += rows;
        cp->chunks_done++;
        cp->current = tb->key;
        pipeline_io_report_snapshot(cp->io, tb->key, false, tb->rows, tb->rows_est, tb->ndone, tb->chunks_total);
        bool last = tb->ndone == tb->chunks_total;
        if (!bookkeeping(tb) && cp->chunked && !last) {
                mysql_source_format_position(cp->pos, text, sizeof(text));
                mysql_chunks_key(tb->key, range, tb->st->key_signed, key, sizeof(key));
                if (copies_record_state(s->pipe->name, key, COPY_STATE_CHUNK, cp->pos, text, rows, &c) < 0)
                        return cdc_oom(err);
                r = emit_change(cp, &c, err);
        }
        if (r == 0 && last)
                r = table_final(cp, tb, err);
        if (r == 0 && cp->chunked)
                r = emit_commit(cp, err);
        return r;
}

static void reader_drop_held(Reader *rd) {
        for (int i = 0; i < rd->nheld; i++)
                change_clear(&rd->held[i]);
        rd->nheld = 0;
        rd->bytes = 0;
}

/* Under emit: hands on the rows held. */
static int reader_flush(Reader *rd, CdcError *err) {
        int r = 0;
        for (int i = 0; r == 0 && i < rd->nheld; i++)
                r = emit_change(rd->cp, &rd->held[i], err);
        reader_drop_held(rd);
        return r;
}

static int reader_error(Reader *rd, CopyTab *tb, CdcError *err) {
        unsigned e = mysql_errno(rd->conn);
        return cdc_error(err, -EIO, mysql_conn_retry_helps(e), mysql_conn_lost(e) ? CDC_ERR_CONNECTION : CDC_ERR_QUERY,
                         "%s snapshot of %s: %s (error %u)", rd->cp->s->ctx, tb->key, mysql_error(rd->conn), e);
}

/* Reads chunk ci on rd's connection and hands it on. */
static int copy_chunk(Reader *rd, int ci, CdcError *err) {
        MysqlCopy *cp = rd->cp;
        CopyChunk *ch = &cp->chunks[ci];
        CopyTab *tb = &cp->tabs[ch->tab];
        const SnapTable *st = tb->st;
        char where[160] = "", *sql = NULL;
        int r = 0;
        bool locked = false;
        if (st->key_col >= 0)
                mysql_chunks_where(ch->r, st->key_signed, st->qkey, where, sizeof(where));
        if (asprintf(&sql, "%s%s", st->select, where) < 0)
                return cdc_oom(err);
        MYSQL_RES *res = NULL;
        if (mysql_real_query(rd->conn, sql, strlen(sql)) || !(res = mysql_use_result(rd->conn))) {
                free(sql);
                return reader_error(rd, tb, err);
        }
        free(sql);
        uint64_t rows = 0;
        MYSQL_ROW row;
        size_t per_row = sizeof(Change) + sizeof(Value) * (size_t)st->t->ncols;
        while ((row = mysql_fetch_row(res))) {
                unsigned long *lens = mysql_fetch_lengths(res);
                Change c;
                r = mysql_snapshot_row(cp->s, st, row, lens, tb->change_flags, &rd->zero_dates, &c, err);
                if (r < 0)
                        break;
                rows++;
                if (locked) {
                        r = emit_change(cp, &c, err);
                        if (r < 0)
                                break;
                        continue;
                }
                if (rd->nheld == rd->capheld) {
                        int nc = rd->capheld ? rd->capheld * 2 : 1024;
                        Change *g = realloc(rd->held, sizeof(*g) * (size_t)nc);
                        if (!g) {
                                change_clear(&c);
                                r = cdc_oom(err);
                                break;
                        }
                        rd->held = g;
                        rd->capheld = nc;
                }
                rd->held[rd->nheld++] = c;
                rd->bytes += per_row;
                for (int i = 0; i < st->t->ncols; i++)
                        rd->bytes += lens[i];
                if (rd->bytes > CHUNK_BUFFER_MAX) {
                        /* A large chunk (wide rows, a table without integer key): hand on what is
                         * held, stream the rest. */
                        pthread_mutex_lock(&cp->emit);
                        locked = true;
                        r = chunk_head(cp, tb, err);
                        if (r == 0)
                                r = reader_flush(rd, err);
                        if (r < 0)
                                break;
                }
        }
        if (r == 0 && mysql_errno(rd->conn))
                r = reader_error(rd, tb, err);
        if (r == 0) {
                mysql_free_result(res);
        } else {
                /* rows left unread: the connection is closed by the caller rather than drained */
                res->handle = NULL;
                mysql_free_result(res);
        }
        if (r == 0 && !locked) {
                pthread_mutex_lock(&cp->emit);
                locked = true;
                r = chunk_head(cp, tb, err);
                if (r == 0)
                        r = reader_flush(rd, err);
        }
        if (r == 0)
                r = chunk_tail(cp, tb, ch->r, rows, err);
        reader_drop_held(rd);
        if (locked)
                pthread_mutex_unlock(&cp->emit);
        return r;
}

static void *reader_main(void *arg) {
        Reader *rd = arg;
        MysqlCopy *cp = rd->cp;
        for (;;) {
                pthread_mutex_lock(&cp->lock);
                int ci = cp->failed || pipeline_io_stopping(cp->io) ? cp->nchunks : cp->next;
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
static void progress(const MysqlCopy *cp, int *ret_done, int *ret_total, uint64_t *ret_rows, uint64_t *ret_est) {
        int total = 0;
        for (int i = 0; i < cp->ntabs; i++)
                total += cp->tabs[i].chunks_total;
        *ret_done = cp->chunks_done;
        *ret_total = total;
        *ret_rows = cp->rows_done;
        *ret_est = cp->rows_est > cp->rows_done ? cp->rows_est : cp->rows_done;
}

static void log_progress(MysqlCopy *cp, int64_t started) {
        int done, total;
        uint64_t rows, est;
        pthread_mutex_lock(&cp->emit);
        progress(cp, &done, &total, &rows, &est);
        const char *current = cp->current;
        pthread_mutex_unlock(&cp->emit);
        double secs = (double)(now_usec() - started) / 1e6;
        double rate = secs > 0 ? (double)(rows - cp->rows_before) / secs : 0;
        log_info(cp->s->ctx, "snapshot: %d of %d chunks, %" PRIu64 " of ~%" PRIu64 " rows, %.0f rows/s, ETA %.0f s%s%s",
                 done, total, rows, est, rate, rate > 0 ? (double)(est - rows) / rate : 0,
                 current ? "; last chunk of " : "", current ? current : "");
}

int mysql_copy_run(MysqlCopy *cp, MYSQL **readers, int nreaders, CdcError *err) {
        Source *s = cp->s;
        Reader *rds = calloc((size_t)nreaders, sizeof(*rds));
        pthread_t *th = calloc((size_t)nreaders, sizeof(*th));
        int r = 0, started = 0;
        if (!rds || !th) {
                free(rds);
                free(th);
                return cdc_oom(err);
        }
        int done, total;
        uint64_t rows, est;
        progress(cp, &done, &total, &rows, &est);
        log_info(s->ctx, "snapshot: %d tables, %d chunks (%d done before), ~%" PRIu64 " rows, %d reader%s", cp->ntabs,
                 total, done, est, nreaders, nreaders == 1 ? "" : "s");
        cp->rows_before = cp->rows_done;
        int64_t t0 = now_usec(), last_log = t0;
        pthread_mutex_lock(&cp->lock);
        for (int i = 0; i < nreaders; i++) {
                rds[i] = (Reader){.cp = cp, .conn = readers[i]};
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
        for (int i = 0; i < nreaders; i++) {
                cp->zero_dates += rds[i].zero_dates;
                free(rds[i].held);
        }
        free(rds);
        free(th);
        if (cp->zero_dates) {
                log_warn(s->ctx, "%u zero date(s) ('0000-00-00') in the snapshot became NULL", cp->zero_dates);
                cp->zero_dates = 0;
        }
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
                if (r == 0 && cp->chunked)
                        r = emit_commit(cp, err);
        }
        if (r == 0 && !cp->begun) {
                r = emit_begin(cp, err);
                if (r == 0 && cp->chunked)
                        r = emit_commit(cp, err);
        }
        if (r == 0 && !cp->chunked)
                r = emit_commit(cp, err);
        if (r == 0)
                log_progress(cp, t0);
        return r;
}
