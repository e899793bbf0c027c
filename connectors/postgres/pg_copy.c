/* The PostgreSQL source's chunked, parallel copy: tables cut into block ranges (pg_chunks.h), read
 * with COPY ... TO STDOUT by several reader connections that share one snapshot, each chunk
 * handed on as one source transaction with the record that it is done (copies.h).
 *
 * DESIGN: pg_copy_run() starts one thread per reader connection (each owns its PGconn). A reader
 * takes the next chunk of the plan (lock), reads it whole into memory (at most CHUNK_BUFFER_MAX
 * bytes of rows; past that it hands on what it holds and streams the rest), then takes `emit` and
 * hands the chunk's events on through pipeline_io_emit (which blocks while the queue is full, so
 * memory stays bounded: readers × CHUNK_BUFFER_MAX plus the queues). Only one chunk's events go
 * into the pipeline at a time, so each chunk is one whole transaction. The calling (source)
 * thread waits, logging progress every PROGRESS_USEC, until every reader is done. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "postgres/pg_chunks.h"
#include "postgres/pg_source_int.h"

#define CHUNK_BUFFER_MAX (32u << 20) /* bytes of rows a reader holds before it streams a chunk */
#define PROGRESS_USEC (5 * 1000000LL)

typedef struct {
        char key[COPIES_NAME_MAX]; /* "schema.table" */
        Table *t;                  /* one reference */
        char *select;              /* owned: "SELECT cols FROM ONLY schema.table" */
        uint32_t change_flags;     /* of its rows: CHANGE_IDEMPOTENT or 0 */
        bool truncate;             /* a TRUNCATE (truncate_flags) goes with its first chunk */
        uint32_t truncate_flags;
        bool started;         /* its first chunk went out (emit) */
        bool finalized;       /* its final record went out (emit) */
        PgBlockRange *done;   /* owned: chunks done, kept ones included (emit) */
        int ndone, capdone;   /* (emit) */
        int chunks_total;     /* kept + planned */
        PgBlockRange *forget; /* owned: chunk records of an earlier attempt dropped with the final record */
        int nforget;
        uint64_t rows, rows_est; /* copied so far, kept ones included (emit); the planner's estimate */
        char filenode[48];       /* the storage as the copy's plan found it (pg_partitions_describe) */
        CopyState final_state;   /* the record once every chunk is done */
        Position final_pos;
} CopyTab;

typedef struct {
        int tab;
        PgBlockRange r;
} CopyChunk;

struct PgCopy {
        Source *s;
        Position pos;  /* the transactions' commit position */
        bool chunked;  /* a transaction and a record per chunk (the sink keeps records) */
        bool tid_scan; /* the server reads ctid ranges as TID range scans (PostgreSQL >= 14) */
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
};

typedef struct {
        PgCopy *cp;
        PGconn *conn;
        char **lines; /* the chunk's rows as libpq gave them (PQfreemem) */
        int *lens;
        int nlines, caplines;
        size_t bytes;
} Reader;

int pg_copy_new(Source *s, Position pos, bool chunked, PgCopy **ret, CdcError *err) {
        PgCopy *cp = calloc(1, sizeof(*cp));
        if (!cp)
                return cdc_oom(err);
        cp->s = s;
        cp->pos = pos;
        cp->chunked = chunked;
        cp->tid_scan = PQserverVersion(s->sql) >= 140000;
        cp->chunk_rows = s->pipe->snapshot_chunk_rows > 0 ? (uint64_t)s->pipe->snapshot_chunk_rows : 100000;
        pthread_mutex_init(&cp->lock, NULL);
        pthread_mutex_init(&cp->emit, NULL);
        pthread_cond_init(&cp->cv, NULL);
        *ret = cp;
        return 0;
}

PgCopy *pg_copy_free(PgCopy *cp) {
        if (!cp)
                return NULL;
        for (int i = 0; i < cp->ntabs; i++) {
                table_unref(cp->tabs[i].t);
                free(cp->tabs[i].select);
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

static int done_add(CopyTab *tb, PgBlockRange r) {
        if (tb->ndone == tb->capdone) {
                int nc = tb->capdone ? tb->capdone * 2 : 16;
                PgBlockRange *g = realloc(tb->done, sizeof(*g) * (size_t)nc);
                if (!g)
                        return -ENOMEM;
                tb->done = g;
                tb->capdone = nc;
        }
        tb->done[tb->ndone++] = r;
        return 0;
}

int pg_copy_add_table(PgCopy *cp, Table *t, uint32_t change_flags, bool truncate, uint32_t truncate_flags,
                      const PgBlockRange *done, int ndone, uint64_t done_rows, CopyState final_state,
                      Position final_pos, CdcError *err) {
        Source *s = cp->s;
        CopyTab *g = realloc(cp->tabs, sizeof(*g) * (size_t)(cp->ntabs + 1));
        if (!g)
                return cdc_oom(err);
        cp->tabs = g;
        CopyTab *tb = &cp->tabs[cp->ntabs];
        memset(tb, 0, sizeof(*tb));
        snprintf(tb->key, sizeof(tb->key), "%s.%s", t->schema, t->name);
        tb->t = table_ref(t);
        tb->change_flags = change_flags;
        tb->truncate = truncate;
        tb->truncate_flags = truncate_flags;
        tb->final_state = final_state;
        tb->final_pos = final_pos;
        tb->rows = done_rows;
        cp->ntabs++;
        for (int i = 0; i < ndone; i++)
                if (done_add(tb, done[i]) < 0)
                        return cdc_oom(err);

        /* A partitioned table has no heap: its chunks are block ranges read from every leaf at
         * once (a TID range scan per leaf), sized by the largest leaf, its rows named as the
         * root's (publish_via_partition_root streams them so too). */
        PgRelSize z;
        int r = pg_partitions_describe(s, t->rel_id, &z, err);
        if (r < 0)
                return r;
        uint64_t blocks = z.blocks;
        double reltuples = z.reltuples;
        snprintf(tb->filenode, sizeof(tb->filenode), "%s", z.storage);
        tb->rows_est = reltuples > 0 ? (uint64_t)reltuples : 0;
        if (tb->rows_est < done_rows)
                tb->rows_est = done_rows;

        /* the column list, quoted */
        char *cols = NULL, *sql = NULL;
        size_t clen = 0;
        FILE *f = open_memstream(&cols, &clen);
        for (int i = 0; f && i < t->ncols; i++) {
                char *q = PQescapeIdentifier(s->sql, t->cols[i].name, strlen(t->cols[i].name));
                fprintf(f, "%s%s", i ? ", " : "", q ? q : "\"\"");
                PQfreemem(q);
        }
        if (f)
                fclose(f);
        char *qs = PQescapeIdentifier(s->sql, t->schema, strlen(t->schema));
        char *qn = PQescapeIdentifier(s->sql, t->name, strlen(t->name));
        if (!cols || !qs || !qn || asprintf(&sql, "SELECT %s FROM %s%s.%s", cols, pg_partitions_only(&z), qs, qn) < 0)
                sql = NULL;
        free(cols);
        PQfreemem(qs);
        PQfreemem(qn);
        if (!sql)
                return cdc_oom(err);
        tb->select = sql;

        PgBlockRange *plan = NULL;
        int nplan = 0;
        /* Before PostgreSQL 14 a ctid range is read by a whole scan: one chunk per table. */
        uint64_t per = cp->tid_scan ? pg_chunks_blocks_per_chunk(blocks, reltuples, cp->chunk_rows) : UINT64_MAX / 4;
        if (pg_chunks_plan(cp->tid_scan ? blocks : 0, per, tb->done, tb->ndone, &plan, &nplan) < 0)
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
        pipeline_io_report_snapshot(s->io, tb->key, true, tb->rows, tb->rows_est, tb->ndone, tb->chunks_total);
        cp->chunks_done += tb->ndone;
        cp->rows_done += done_rows;
        cp->rows_est += tb->rows_est;
        return 0;
}

int pg_copy_forget_chunk(PgCopy *cp, PgBlockRange r, CdcError *err) {
        CopyTab *tb = cp->ntabs > 0 ? &cp->tabs[cp->ntabs - 1] : NULL;
        PgBlockRange *g = tb ? realloc(tb->forget, sizeof(*g) * (size_t)(tb->nforget + 1)) : NULL;
        if (!g)
                return cdc_oom(err);
        (tb->forget = g)[tb->nforget++] = r;
        return 0;
}

static int emit(PgCopy *cp, Event *ev, CdcError *err) {
        ev->txn = cp->txn;
        return pg_source_emit(cp->s, ev, err);
}

static int emit_change(PgCopy *cp, Change *c, CdcError *err) {
        Event ev = {.kind = EVENT_CHANGE, .change = *c};
        *c = (Change){0};
        return emit(cp, &ev, err);
}

static int emit_begin(PgCopy *cp, CdcError *err) {
        cp->txn =
                (TxnInfo){.xid = ++cp->seq, .commit_pos = cp->pos, .commit_ts = pg_source_now_usec(), .snapshot = true};
        cp->begun = true;
        Event ev = {.kind = EVENT_BEGIN};
        return emit(cp, &ev, err);
}

static bool bookkeeping(const CopyTab *tb) {
        return strncmp(tb->key, "cdcsync.", 8) == 0; /* cdcsync.versions: copied, never recorded */
}

/* Under emit: what goes before a chunk's rows: its transaction's BEGIN, with the first one the
 * "copying" records of every new table, with a table's first chunk its TRUNCATE. */
static int chunk_head(PgCopy *cp, CopyTab *tb, CdcError *err) {
        Source *s = cp->s;
        int r = 0;
        if (cp->chunked || !cp->begun)
                r = emit_begin(cp, err);
        if (r == 0 && cp->chunked && !cp->registry_written) {
                char pos[32], text[96];
                pg_source_format_position(cp->pos, pos, sizeof(pos));
                for (int i = 0; r == 0 && i < cp->ntabs; i++) {
                        if (bookkeeping(&cp->tabs[i]) || cp->tabs[i].final_state != COPY_STATE_COPIED ||
                            position_cmp(cp->tabs[i].final_pos, cp->pos) != 0)
                                continue; /* a resumed table's record is there already */
                        /* the table's storage now: a resume finds out whether a rewrite moved its rows */
                        snprintf(text, sizeof(text), "%s filenode=%s", pos, cp->tabs[i].filenode);
                        Change c;
                        if (copies_record_state(s->pipe->name, cp->tabs[i].key, COPY_STATE_COPYING, cp->pos, text, 0,
                                                &c) < 0)
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

/* Under emit: one row of COPY text (line[len] writable) as an insert. */
static int chunk_row(PgCopy *cp, CopyTab *tb, char *line, size_t len, CdcError *err) {
        const Table *t = tb->t;
        int n = t->ncols > 0 ? t->ncols : 1;
        char *fields[n];
        size_t lens[n];
        if (pg_chunks_copy_fields(line, len, t->ncols, fields, lens) < 0)
                return cdc_error(err, -EBADMSG, false, CDC_ERR_SOURCE,
                                 "snapshot of %s: a row of COPY did not split into its %d columns", tb->key, t->ncols);
        Change c = {.op = CHANGE_INSERT, .flags = tb->change_flags, .table = table_ref(tb->t)};
        c.after = values_new(t->ncols);
        if (!c.after) {
                change_clear(&c);
                return cdc_oom(err);
        }
        for (int i = 0; i < t->ncols; i++)
                if (fields[i] && value_set(&c.after[i], fields[i], lens[i]) < 0) {
                        change_clear(&c);
                        return cdc_oom(err);
                }
        return emit_change(cp, &c, err);
}

/* Under emit, in an open transaction: the table's final record, its chunk records dropped. */
static int table_final(PgCopy *cp, CopyTab *tb, CdcError *err) {
        Source *s = cp->s;
        char text[32], key[COPIES_NAME_MAX + 48];
        int r = 0;
        Change c;
        tb->finalized = true;
        if (bookkeeping(tb))
                return 0;
        for (int i = 0; r == 0 && cp->chunked && i < tb->ndone; i++) {
                copies_chunk_key(tb->key, tb->done[i].lo, tb->done[i].hi, key, sizeof(key));
                if (copies_forget(s->pipe->name, key, &c) < 0)
                        return cdc_oom(err);
                r = emit_change(cp, &c, err);
        }
        for (int i = 0; r == 0 && cp->chunked && i < tb->nforget; i++) {
                copies_chunk_key(tb->key, tb->forget[i].lo, tb->forget[i].hi, key, sizeof(key));
                if (copies_forget(s->pipe->name, key, &c) < 0)
                        return cdc_oom(err);
                r = emit_change(cp, &c, err);
        }
        pg_source_format_position(tb->final_pos, text, sizeof(text));
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
static int chunk_tail(PgCopy *cp, CopyTab *tb, PgBlockRange range, uint64_t rows, CdcError *err) {
        Source *s = cp->s;
        char text[32], key[COPIES_NAME_MAX + 48];
        int r = 0;
        Change c;
        if (done_add(tb, range) < 0)
                return cdc_oom(err);
        tb->rows += rows;
        cp->rows_done += rows;
        cp->chunks_done++;
        cp->current = tb->key;
        pipeline_io_report_snapshot(s->io, tb->key, false, tb->rows, tb->rows_est, tb->ndone, tb->chunks_total);
        bool last = tb->ndone == tb->chunks_total;
        if (!bookkeeping(tb) && cp->chunked && !last) {
                pg_source_format_position(cp->pos, text, sizeof(text));
                copies_chunk_key(tb->key, range.lo, range.hi, key, sizeof(key));
                if (copies_record_state(s->pipe->name, key, COPY_STATE_CHUNK, cp->pos, text, rows, &c) < 0)
                        return cdc_oom(err);
                r = emit_change(cp, &c, err);
        }
        if (r == 0 && last)
                r = table_final(cp, tb, err);
        if (r == 0 && cp->chunked) {
                Event ev = {.kind = EVENT_COMMIT};
                r = emit(cp, &ev, err);
        }
        return r;
}

static void reader_drop_lines(Reader *rd) {
        for (int i = 0; i < rd->nlines; i++)
                PQfreemem(rd->lines[i]);
        rd->nlines = 0;
        rd->bytes = 0;
}

/* Under emit: hands on the rows held. */
static int reader_flush(Reader *rd, CopyTab *tb, CdcError *err) {
        int r = 0;
        for (int i = 0; r == 0 && i < rd->nlines; i++)
                r = chunk_row(rd->cp, tb, rd->lines[i], (size_t)rd->lens[i], err);
        reader_drop_lines(rd);
        return r;
}

static int reader_error(Reader *rd, CopyTab *tb, PGresult *res, CdcError *err) {
        char buf[512];
        bool lost = PQstatus(rd->conn) != CONNECTION_OK;
        cdc_error(err, -EIO, lost, lost ? CDC_ERR_CONNECTION : CDC_ERR_SOURCE, "connector %s: snapshot of %s: %s",
                  rd->cp->s->conn->name, tb->key, pg_source_errtext(rd->cp->s, rd->conn, res, buf, sizeof(buf)));
        PQclear(res);
        return err->code;
}

/* Reads chunk ci on rd's connection and hands it on. */
static int copy_chunk(Reader *rd, int ci, CdcError *err) {
        PgCopy *cp = rd->cp;
        CopyChunk *ch = &cp->chunks[ci];
        CopyTab *tb = &cp->tabs[ch->tab];
        char *sql = NULL;
        int r = 0, rc;
        bool locked = false;
        /* block numbers are ours (numbers, not text from anywhere): no parameter needed */
        if (ch->r.lo == 0 && ch->r.hi == UINT64_MAX)
                rc = asprintf(&sql, "COPY (%s) TO STDOUT", tb->select);
        else if (ch->r.hi == UINT64_MAX)
                rc = asprintf(&sql, "COPY (%s WHERE ctid >= '(%" PRIu64 ",0)'::tid) TO STDOUT", tb->select, ch->r.lo);
        else
                rc = asprintf(&sql,
                              "COPY (%s WHERE ctid >= '(%" PRIu64 ",0)'::tid AND ctid < '(%" PRIu64
                              ",0)'::tid) TO STDOUT",
                              tb->select, ch->r.lo, ch->r.hi);
        if (rc < 0)
                return cdc_oom(err);
        PGresult *res = PQexec(rd->conn, sql);
        free(sql);
        if (PQresultStatus(res) != PGRES_COPY_OUT)
                return reader_error(rd, tb, res, err);
        PQclear(res);
        uint64_t rows = 0;
        for (;;) {
                char *line = NULL;
                int n = PQgetCopyData(rd->conn, &line, 0);
                if (n < 0)
                        break;
                if (n > 0 && line[n - 1] == '\n')
                        n--;
                rows++;
                if (locked) {
                        r = chunk_row(cp, tb, line, (size_t)n, err);
                        PQfreemem(line);
                        if (r < 0)
                                break;
                        continue;
                }
                if (rd->nlines == rd->caplines) {
                        int nc = rd->caplines ? rd->caplines * 2 : 1024;
                        char **gl = realloc(rd->lines, sizeof(*gl) * (size_t)nc);
                        if (gl)
                                rd->lines = gl;
                        int *gn = gl ? realloc(rd->lens, sizeof(*gn) * (size_t)nc) : NULL;
                        if (!gn) {
                                PQfreemem(line);
                                r = cdc_oom(err);
                                break;
                        }
                        rd->lens = gn;
                        rd->caplines = nc;
                }
                rd->lines[rd->nlines] = line;
                rd->lens[rd->nlines++] = n;
                rd->bytes += (size_t)n;
                if (rd->bytes > CHUNK_BUFFER_MAX) {
                        /* A large chunk (wide rows): hand on what is held, stream the rest. */
                        pthread_mutex_lock(&cp->emit);
                        locked = true;
                        r = chunk_head(cp, tb, err);
                        if (r == 0)
                                r = reader_flush(rd, tb, err);
                        if (r < 0)
                                break;
                }
        }
        if (r == 0) {
                res = PQgetResult(rd->conn);
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        r = reader_error(rd, tb, res, err);
                else
                        PQclear(res);
                while (r == 0 && (res = PQgetResult(rd->conn)))
                        PQclear(res);
        }
        if (r == 0 && !locked) {
                pthread_mutex_lock(&cp->emit);
                locked = true;
                r = chunk_head(cp, tb, err);
                if (r == 0)
                        r = reader_flush(rd, tb, err);
        }
        if (r == 0)
                r = chunk_tail(cp, tb, ch->r, rows, err);
        reader_drop_lines(rd);
        if (locked)
                pthread_mutex_unlock(&cp->emit);
        return r;
}

static void *reader_main(void *arg) {
        Reader *rd = arg;
        PgCopy *cp = rd->cp;
        for (;;) {
                pthread_mutex_lock(&cp->lock);
                int ci = cp->failed || pipeline_io_stopping(cp->s->io) ? cp->nchunks : cp->next;
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
static void progress(const PgCopy *cp, int *ret_done, int *ret_total, uint64_t *ret_rows, uint64_t *ret_est) {
        int total = 0;
        for (int i = 0; i < cp->ntabs; i++)
                total += cp->tabs[i].chunks_total;
        *ret_done = cp->chunks_done;
        *ret_total = total;
        *ret_rows = cp->rows_done;
        *ret_est = cp->rows_est > cp->rows_done ? cp->rows_est : cp->rows_done;
}

static void log_progress(PgCopy *cp, int64_t started) {
        int done, total;
        uint64_t rows, est;
        pthread_mutex_lock(&cp->emit);
        progress(cp, &done, &total, &rows, &est);
        const char *current = cp->current;
        pthread_mutex_unlock(&cp->emit);
        double secs = (double)(pg_source_now_usec() - started) / 1e6;
        double rate = secs > 0 ? (double)(rows - cp->rows_before) / secs : 0;
        log_info(cp->s->ctx, "snapshot: %d of %d chunks, %" PRIu64 " of ~%" PRIu64 " rows, %.0f rows/s, ETA %.0f s%s%s",
                 done, total, rows, est, rate, rate > 0 ? (double)(est - rows) / rate : 0,
                 current ? "; last chunk of " : "", current ? current : "");
}

int pg_copy_run(PgCopy *cp, PGconn **readers, int nreaders, CdcError *err) {
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
        int64_t t0 = pg_source_now_usec(), last_log = t0;
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
                if (cp->running > 0 && pg_source_now_usec() - last_log >= PROGRESS_USEC) {
                        pthread_mutex_unlock(&cp->lock);
                        log_progress(cp, t0);
                        last_log = pg_source_now_usec();
                        pthread_mutex_lock(&cp->lock);
                }
        }
        pthread_mutex_unlock(&cp->lock);
        for (int i = 0; i < started; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < nreaders; i++) {
                free(rds[i].lines);
                free(rds[i].lens);
        }
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
                if (r == 0 && cp->chunked) {
                        Event ev = {.kind = EVENT_COMMIT};
                        r = emit(cp, &ev, err);
                }
        }
        if (r == 0 && !cp->begun) {
                r = emit_begin(cp, err);
                if (r == 0 && cp->chunked) {
                        Event ev = {.kind = EVENT_COMMIT};
                        r = emit(cp, &ev, err);
                }
        }
        if (r == 0 && !cp->chunked) {
                Event ev = {.kind = EVENT_COMMIT};
                r = emit(cp, &ev, err);
        }
        if (r == 0)
                log_progress(cp, t0);
        return r;
}
