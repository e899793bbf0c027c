/* The PostgreSQL source's re-snapshot of tables while it streams (`cdcsync resnapshot`,
 * resnapshot.h): DBLog's watermarks written into the WAL as transactional logical messages
 * (pg_logical_emit_message, sent by pgoutput with `messages 'true'`, PostgreSQL >= 14), chunks
 * read by key ranges with plain SELECTs on the side connection.
 *
 * All of it runs on the source thread, between the stream's transactions: a chunk is a low
 * watermark, a SELECT of at most a chunk's rows above the last key done, a high watermark; the
 * stream then goes on, and its changes of the table between the two watermarks are applied as
 * they come and drop the chunk's rows of their keys (resnap_chunk_event). The high watermark's
 * own transaction carries what is left: the range delete, the rows as upserts, and the table's
 * record (cdcsync.tables: "resnapshot" with the last key done, "copied" after the last chunk), so
 * a crash resumes at the chunk after the last one the sink committed. Every change of a table
 * being copied again is applied idempotently (pg_snapshot_converge): the sink's rows of the keys
 * not copied yet may be missing or stale. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cdcsync/log.h"
#include "cdcsync/resnapshot.h"
#include "postgres/pg_source_int.h"

#define WATERMARK_PREFIX "cdcsync"
#define CHUNK_ROWS_MAX 10000
#define PROGRESS_USEC (5 * 1000000LL)

typedef struct {
        char name[COPIES_NAME_MAX]; /* "schema.table" */
        char schema[256], table[256];
        bool has_cursor;
        int64_t cursor; /* the chunks up to this key are done */
        uint64_t rows;  /* rows read so far, earlier attempts' included */
        int chunks;     /* chunks done this attempt */
        Table *t;       /* as described when its first chunk of this attempt began; one reference */
        int key_col;
        char *select; /* owned: "SELECT cols FROM [ONLY] t" */
        char *qkey;   /* owned: the key column, quoted */
        uint64_t rows_est;
} ResnapTab;

struct PgResnap {
        bool enabled;    /* the server sends logical messages (PostgreSQL >= 14) */
        ResnapTab *tabs; /* asked for, in order; tabs[0] is being copied */
        int ntabs;
        ResnapChunk *chunk; /* tabs[0]'s chunk between its watermarks, NULL: none */
        Table *chunk_t;     /* the table its rows are of; one reference */
        char token[128];    /* its watermarks' id: "SLOT.USEC.SEQ" */
        bool window;        /* its low watermark came through the stream */
        uint64_t seq;
        int chunk_rows;
        int64_t last_log;
};

static ResnapTab *tab_clear(ResnapTab *rt) {
        table_unref(rt->t);
        free(rt->select);
        free(rt->qkey);
        memset(rt, 0, sizeof(*rt));
        return NULL;
}

void pg_resnap_free(Source *s) {
        PgResnap *rp = s->resnap;
        if (!rp)
                return;
        /* the attempt ends: what is not done is asked again of the next one (a table with a
         * "resnapshot" record is taken up from it, the one asked again then counts once) */
        if (s->io && rp->ntabs > 0) {
                const char *names[rp->ntabs];
                for (int i = 0; i < rp->ntabs; i++)
                        names[i] = rp->tabs[i].name;
                pipeline_io_resnapshot_again(s->io, names, rp->ntabs);
        }
        for (int i = 0; i < rp->ntabs; i++)
                tab_clear(&rp->tabs[i]);
        free(rp->tabs);
        resnap_chunk_free(rp->chunk);
        table_unref(rp->chunk_t);
        free(rp);
        s->resnap = NULL;
}

static int tab_find(const PgResnap *rp, const char *schema, const char *table) {
        for (int i = 0; i < rp->ntabs; i++)
                if (strcmp(rp->tabs[i].schema, schema) == 0 && strcmp(rp->tabs[i].table, table) == 0)
                        return i;
        return -1;
}

/* Queues name ("schema.table"), resuming after key cursor when has_cursor. */
static int tab_add(Source *s, const char *name, bool has_cursor, int64_t cursor, uint64_t rows, CdcError *err) {
        PgResnap *rp = s->resnap;
        const char *dot = strchr(name, '.');
        if (!dot || (size_t)(dot - name) >= 256 || strlen(dot + 1) >= 256)
                return 0;
        char sch[256];
        snprintf(sch, sizeof(sch), "%.*s", (int)(dot - name), name);
        if (tab_find(rp, sch, dot + 1) >= 0) {
                log_debug(s->ctx, "resnapshot of %s: already under way", name);
                return 0;
        }
        ResnapTab *g = realloc(rp->tabs, sizeof(*g) * (size_t)(rp->ntabs + 1));
        if (!g)
                return cdc_oom(err);
        rp->tabs = g;
        ResnapTab *rt = &g[rp->ntabs++];
        memset(rt, 0, sizeof(*rt));
        snprintf(rt->name, sizeof(rt->name), "%s", name);
        snprintf(rt->schema, sizeof(rt->schema), "%s", sch);
        snprintf(rt->table, sizeof(rt->table), "%s", dot + 1);
        rt->has_cursor = has_cursor;
        rt->cursor = cursor;
        rt->rows = rows;
        return 0;
}

static void tab_pop(PgResnap *rp) {
        tab_clear(&rp->tabs[0]);
        memmove(&rp->tabs[0], &rp->tabs[1], sizeof(rp->tabs[0]) * (size_t)(rp->ntabs - 1));
        rp->ntabs--;
}

static int take_requests(Source *s, CdcError *err);

int pg_resnap_open(Source *s, const SourceStart *start, CdcError *err) {
        PgResnap *rp = calloc(1, sizeof(*rp));
        if (!rp)
                return cdc_oom(err);
        s->resnap = rp;
        rp->enabled = PQserverVersion(s->sql) >= 140000;
        int n = s->pipe->snapshot_chunk_rows > 0 ? s->pipe->snapshot_chunk_rows : CHUNK_ROWS_MAX;
        rp->chunk_rows = n < CHUNK_ROWS_MAX ? n : CHUNK_ROWS_MAX;
        /* re-snapshots a crash or an error cut short: on from their last chunk done */
        for (int i = 0; start->registry && i < start->ncopied; i++) {
                const CopiedTable *e = &start->copied[i];
                if (e->state != COPY_STATE_RESNAPSHOT)
                        continue;
                const char *dot = strchr(e->table, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - e->table) : 0, e->table);
                if (!dot || !conf_pipeline_has_table(s->pipe, sch, dot + 1))
                        continue;
                int64_t k = 0;
                bool has = strncmp(e->text, "key=", 4) == 0 && resnap_parse_key(e->text + 4, &k) == 0;
                log_info(s->ctx, "resnapshot of %s: resumed after key %s (%" PRIu64 " rows copied before)", e->table,
                         has ? e->text + 4 : "(none)", e->rows);
                int r = tab_add(s, e->table, has, k, e->rows, err);
                if (r < 0)
                        return r;
        }
        /* asked before (or of an attempt that ended): owned from the stream's first change on */
        return take_requests(s, err);
}

bool pg_resnap_owns(Source *s, const Table *t) {
        return s->resnap && s->resnap->ntabs > 0 && tab_find(s->resnap, t->schema, t->name) >= 0;
}

/* Describes tabs[0] for this attempt; 1 when it cannot be copied again (said in the log, and
 * dropped from the queue). */
static int tab_begin(Source *s, ResnapTab *rt, CdcError *err) {
        char why[512];
        Table *t = NULL;
        int r = pg_snapshot_describe(s, rt->schema, rt->table, &t, err);
        if (r == -ENOENT) {
                log_error(s->ctx, "resnapshot of %s: %s", rt->name, err->message);
                return 1;
        }
        if (r < 0)
                return r;
        int key = resnap_key_column(t, why, sizeof(why));
        if (key < 0) {
                log_error(s->ctx, "resnapshot of %s refused: %s", rt->name, why);
                table_unref(t);
                return 1;
        }
        /* a partitioned table has no rows of its own: read through the root from its leaves (read
         * with ONLY, it would look empty and its rows would be deleted from the sink) */
        PgRelSize z;
        if ((r = pg_partitions_describe(s, t->rel_id, &z, err)) < 0) {
                table_unref(t);
                return r;
        }
        char *cols = NULL;
        size_t clen = 0;
        FILE *f = open_memstream(&cols, &clen);
        for (int i = 0; f && i < t->ncols; i++) {
                char *q = PQescapeIdentifier(s->sql, t->cols[i].name, strlen(t->cols[i].name));
                fprintf(f, "%s%s", i ? ", " : "", q ? q : "\"\"");
                PQfreemem(q);
        }
        if (f)
                fclose(f);
        char *qs = PQescapeIdentifier(s->sql, rt->schema, strlen(rt->schema));
        char *qn = PQescapeIdentifier(s->sql, rt->table, strlen(rt->table));
        char *qk = PQescapeIdentifier(s->sql, t->cols[key].name, strlen(t->cols[key].name));
        char *sql = NULL;
        if (!cols || !qs || !qn || !qk ||
            asprintf(&sql, "SELECT %s FROM %s%s.%s", cols, pg_partitions_only(&z), qs, qn) < 0)
                sql = NULL;
        free(cols);
        PQfreemem(qs);
        PQfreemem(qn);
        rt->qkey = qk ? strdup(qk) : NULL;
        PQfreemem(qk);
        if (!sql || !rt->qkey) {
                free(sql);
                table_unref(t);
                return cdc_oom(err);
        }
        rt->select = sql;
        rt->t = t;
        rt->key_col = key;
        char relid[16];
        snprintf(relid, sizeof(relid), "%u", t->rel_id);
        const char *params[] = {relid};
        /* the planner's estimate, or the statistics' live rows where the table was never analysed */
        PGresult *res = pg_source_query(s, s->sql,
                                        "SELECT greatest(c.reltuples, coalesce(st.n_live_tup, 0)) FROM pg_class c "
                                        "LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid WHERE c.oid = $1::oid",
                                        1, params, err);
        if (!res)
                return err->code;
        double est = PQntuples(res) == 1 ? strtod(PQgetvalue(res, 0, 0), NULL) : 0;
        PQclear(res);
        rt->rows_est = est > 0 ? (uint64_t)est : 0;
        log_info(s->ctx,
                 "resnapshot of %s: copying it again by key %s in chunks of %d rows while the pipeline streams "
                 "(~%" PRIu64 " rows)",
                 rt->name, t->cols[key].name, s->resnap->chunk_rows, rt->rows_est);
        pipeline_io_report_snapshot(s->io, rt->name, true, rt->rows, rt->rows_est, 0, 1);
        return 0;
}

static int watermark(Source *s, const char *which, CdcError *err) {
        char content[192];
        snprintf(content, sizeof(content), "resnapshot %s %s", s->resnap->token, which);
        const char *params[] = {content};
        PGresult *res = pg_source_query(s, s->sql, "SELECT pg_logical_emit_message(true, '" WATERMARK_PREFIX "', $1)",
                                        1, params, err);
        if (!res)
                return err->code;
        PQclear(res);
        return 0;
}

/* The table the chunk's rows are of: the stream's own description when it has the same columns
 * (the sink then sees one table, not two that alternate), else the one read for the copy. */
static Table *chunk_table(Source *s, ResnapTab *rt) {
        Table *cur = pg_rel_lookup(s, rt->t->rel_id);
        if (cur && cur->ncols == rt->t->ncols) {
                bool same = true;
                for (int i = 0; same && i < cur->ncols; i++)
                        same = strcmp(cur->cols[i].name, rt->t->cols[i].name) == 0 &&
                               cur->cols[i].key == rt->t->cols[i].key;
                if (same)
                        return cur;
        }
        return rt->t;
}

/* Low watermark, the chunk's rows, high watermark. */
static int chunk_start(Source *s, CdcError *err) {
        PgResnap *rp = s->resnap;
        ResnapTab *rt = &rp->tabs[0];
        char *sql = NULL, cur[24];
        snprintf(cur, sizeof(cur), "%" PRId64, rt->cursor);
        if (asprintf(&sql, "%s%s%s%s ORDER BY %s LIMIT %d", rt->select, rt->has_cursor ? " WHERE " : "",
                     rt->has_cursor ? rt->qkey : "", rt->has_cursor ? " > $1" : "", rt->qkey, rp->chunk_rows) < 0)
                return cdc_oom(err);
        snprintf(rp->token, sizeof(rp->token), "%s.%" PRId64 ".%" PRIu64, s->slot, pg_source_now_usec(), ++rp->seq);
        int r = watermark(s, "low", err);
        const char *params[] = {cur};
        PGresult *res = r == 0 ? pg_source_query(s, s->sql, sql, rt->has_cursor ? 1 : 0, params, err) : NULL;
        free(sql);
        if (r == 0 && !res)
                r = err->code;
        Table *t = r == 0 ? chunk_table(s, rt) : NULL;
        ResnapChunk *ch = NULL;
        if (r == 0 && resnap_chunk_new(t, rt->key_col, rt->has_cursor, rt->cursor, &ch) < 0)
                r = cdc_oom(err);
        int n = res ? PQntuples(res) : 0;
        for (int i = 0; r == 0 && i < n; i++) {
                Value *after = values_new(t->ncols);
                if (!after) {
                        r = cdc_oom(err);
                        break;
                }
                for (int c = 0; r == 0 && c < t->ncols; c++)
                        if (!PQgetisnull(res, i, c) &&
                            value_set(&after[c], PQgetvalue(res, i, c), (size_t)PQgetlength(res, i, c)) < 0)
                                r = cdc_oom(err);
                int a = r == 0 ? resnap_chunk_add_row(ch, after) : 0;
                if (r < 0 || a < 0)
                        values_free(after, t->ncols);
                if (a == -ENOMEM)
                        r = cdc_oom(err);
                else if (a < 0)
                        r = cdc_error(err, -EINVAL, false, CDC_ERR_DATA,
                                      "resnapshot of %s: the rows did not come in ascending order of their integer key",
                                      rt->name);
        }
        PQclear(res);
        if (r == 0) {
                resnap_chunk_read(ch, n == rp->chunk_rows);
                r = watermark(s, "high", err);
        }
        if (r < 0) {
                resnap_chunk_free(ch);
                return r;
        }
        rp->chunk = ch;
        rp->chunk_t = table_ref(t);
        rp->window = false;
        return 0;
}

/* The operator's requests, queued. */
static int take_requests(Source *s, CdcError *err) {
        PgResnap *rp = s->resnap;
        int r = 0;
        if (pipeline_io_resnapshot_pending(s->io)) {
                char **names = NULL;
                int n = 0;
                pipeline_io_resnapshot_take(s->io, &names, &n);
                char **all = NULL;
                int nall = 0;
                for (int i = 0; r == 0 && i < n; i++) {
                        if (!rp->enabled) {
                                log_error(s->ctx,
                                          "resnapshot of %s refused: it needs PostgreSQL 14 or later on the source "
                                          "(logical messages as watermarks); this server is %d",
                                          names[i], PQserverVersion(s->sql));
                                continue;
                        }
                        if (strcmp(names[i], "*") != 0) {
                                r = tab_add(s, names[i], false, 0, 0, err);
                                continue;
                        }
                        r = pg_source_streamed_tables(s, &all, &nall, err);
                        for (int j = 0; r == 0 && j < nall; j++)
                                if (strncmp(all[j], "cdcsync.", 8) != 0)
                                        r = tab_add(s, all[j], false, 0, 0, err);
                        pg_slot_list_free(&all, &nall);
                }
                for (int i = 0; i < n; i++)
                        free(names[i]);
                free(names);
        }
        return r;
}

/* Between the stream's transactions: takes the operator's requests, starts the next chunk. */
int pg_resnap_step(Source *s, CdcError *err) {
        PgResnap *rp = s->resnap;
        if (!rp)
                return 0;
        int r = take_requests(s, err);
        while (r == 0 && !rp->chunk && rp->ntabs > 0) {
                if (!rp->tabs[0].t) {
                        r = tab_begin(s, &rp->tabs[0], err);
                        if (r == 1) {
                                tab_pop(rp);
                                r = 0;
                                continue;
                        }
                        if (r < 0)
                                return r;
                }
                r = chunk_start(s, err);
        }
        return r;
}

static bool is_watermark(const PgResnap *rp, const PgoutputMsg *m, const char *which) {
        char want[192];
        int n = snprintf(want, sizeof(want), "resnapshot %s %s", rp->token, which);
        return n > 0 && (uint32_t)n == m->u.message.len && memcmp(want, m->u.message.content, (size_t)n) == 0;
}

static int emit_change(Source *s, Change *c, CdcError *err) {
        Event ev = {.kind = EVENT_CHANGE, .txn = s->txn, .change = *c};
        memset(c, 0, sizeof(*c));
        return pg_source_emit(s, &ev, err);
}

/* At the high watermark, in its transaction: what the chunk leaves, and the table's record. */
static int chunk_finish(Source *s, CdcError *err) {
        PgResnap *rp = s->resnap;
        ResnapTab *rt = &rp->tabs[0];
        ResnapChunk *ch = rp->chunk;
        rp->chunk = NULL;
        int nread = resnap_chunk_rows(ch);
        int64_t hi = 0;
        bool more = resnap_chunk_hi(ch, &hi);
        Change del = {0}, *rows = NULL;
        int n = 0;
        int r = resnap_chunk_finish(ch, &del, &rows, &n) < 0 ? cdc_oom(err) : 0;
        resnap_chunk_free(ch);
        table_unref(rp->chunk_t);
        rp->chunk_t = NULL;
        rp->window = false;
        /* its rows are the copy's (Kafka: op r), and the record goes with them */
        s->txn.snapshot = true;
        if (r == 0)
                r = pg_source_send_begin(s, err);
        if (r == 0)
                r = emit_change(s, &del, err);
        for (int i = 0; i < n; i++) {
                if (r == 0)
                        r = emit_change(s, &rows[i], err);
                change_clear(&rows[i]);
        }
        change_clear(&del);
        free(rows);
        if (r < 0)
                return r;
        rt->rows += (uint64_t)nread;
        rt->chunks++;
        if (more) {
                rt->has_cursor = true;
                rt->cursor = hi;
        }
        char text[96];
        if (more)
                snprintf(text, sizeof(text), "key=%" PRId64, hi);
        else
                pg_source_format_position(s->txn.commit_pos, text, sizeof(text));
        Change rec;
        if (copies_record_state(s->pipe->name, rt->name, more ? COPY_STATE_RESNAPSHOT : COPY_STATE_COPIED,
                                s->txn.commit_pos, text, rt->rows, &rec) < 0)
                return cdc_oom(err);
        r = emit_change(s, &rec, err);
        if (r < 0)
                return r;
        uint64_t est = rt->rows_est > rt->rows ? rt->rows_est : rt->rows;
        int total = rt->chunks + (int)((est - rt->rows + (uint64_t)rp->chunk_rows - 1) / (uint64_t)rp->chunk_rows);
        if (more && total <= rt->chunks)
                total = rt->chunks + 1;
        pipeline_io_report_snapshot(s->io, rt->name, false, rt->rows, more ? est : rt->rows, rt->chunks,
                                    more ? total : rt->chunks);
        int64_t now = pg_source_now_usec();
        if (!more) {
                log_info(s->ctx, "resnapshot of %s: done, %" PRIu64 " rows in %d chunks this run; it streams as before",
                         rt->name, rt->rows, rt->chunks);
                tab_pop(rp);
        } else if (now - rp->last_log >= PROGRESS_USEC) {
                rp->last_log = now;
                log_info(s->ctx, "resnapshot of %s: %" PRIu64 " of ~%" PRIu64 " rows, up to key %" PRId64, rt->name,
                         rt->rows, est, hi);
        }
        return 0;
}

int pg_resnap_on_message(Source *s, const PgoutputMsg *m, CdcError *err) {
        PgResnap *rp = s->resnap;
        if (!rp || !rp->chunk || !m->u.message.prefix || strcmp(m->u.message.prefix, WATERMARK_PREFIX) != 0)
                return 0;
        if (is_watermark(rp, m, "low")) {
                rp->window = true;
                return 0;
        }
        if (is_watermark(rp, m, "high") && s->in_txn)
                return chunk_finish(s, err);
        return 0; /* another attempt's, another pipeline's */
}

int pg_resnap_on_row(Source *s, Event *ev, CdcError *err) {
        PgResnap *rp = s->resnap;
        const Table *t = ev->change.table;
        if (rp->chunk && rp->window && strcmp(t->schema, rp->tabs[0].schema) == 0 &&
            strcmp(t->name, rp->tabs[0].table) == 0 && resnap_chunk_event(rp->chunk, &ev->change) < 0) {
                change_clear(&ev->change);
                return cdc_oom(err);
        }
        return pg_snapshot_converge(s, ev, err);
}

int pg_resnap_on_truncate(Source *s, const Table *t, CdcError *err) {
        PgResnap *rp = s->resnap;
        if (!rp || !rp->chunk || !rp->window || strcmp(t->schema, rp->tabs[0].schema) != 0 ||
            strcmp(t->name, rp->tabs[0].table) != 0)
                return 0;
        Change c = {.op = CHANGE_TRUNCATE};
        return resnap_chunk_event(rp->chunk, &c) < 0 ? cdc_oom(err) : 0;
}
