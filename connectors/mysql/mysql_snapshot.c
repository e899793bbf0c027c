/* The MySQL/MariaDB source's copies: the initial snapshot and the copy of tables added to a streaming pipeline. */
#include <errmsg.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <mysql.h>
#include <mariadb_rpl.h>

#include "mysql/mysql_source_int.h"

/* ---- initial snapshot ---- */

/* SQL text that appends `name` quoted with backticks. */
static int sql_ident(FILE *f, const char *name) {
        fputc('`', f);
        for (const char *p = name; *p; p++) {
                if (*p == '`')
                        fputc('`', f);
                fputc(*p, f);
        }
        return fputc('`', f) == EOF ? -EIO : 0;
}

/* Copies one table inside the snapshot transaction on `snap`: a TRUNCATE, then one INSERT per
 * row, read with mysql_use_result so only one row is in memory at a time. */
static int snapshot_table(Source *s, MYSQL *snap, const char *schema, const char *name, PipelineIO *io,
                          uint64_t *ret_rows, CdcError *err) {
        SchemaEntry *e = NULL;
        Table *t = NULL;
        uint8_t *codes = NULL;
        char *sql = NULL;
        size_t sqllen = 0;
        MYSQL_RES *res = NULL;
        uint64_t rows = 0;
        int r = mysql_source_schema_load(s, schema, name, &e, err);
        if (r < 0)
                return r;
        t = table_new(schema, name, e->ncols);
        codes = calloc((size_t)(e->ncols > 0 ? e->ncols : 1), 1);
        if (!t || !codes) {
                r = cdc_oom(err);
                goto out;
        }
        FILE *f = open_memstream(&sql, &sqllen);
        if (!f) {
                r = cdc_oom(err);
                goto out;
        }
        fputs("SELECT ", f);
        for (int i = 0; i < e->ncols; i++) {
                Column *c = &t->cols[i];
                BinlogColumn bc = {.type = mysql_source_type_code_of(e->col_types[i])};
                codes[i] = bc.type;
                c->name = strdup(e->col_names[i]);
                c->type_name = strdup(e->col_types[i]);
                c->type_oid = bc.type;
                c->typmod = -1;
                c->cls = mysql_source_column_class(&bc, &e->info[i]);
                c->key = e->col_key[i];
                if (!c->name || !c->type_name) {
                        fclose(f);
                        r = cdc_oom(err);
                        goto out;
                }
                if (i)
                        fputs(", ", f);
                /* the text forms binlog.c gives the same values */
                if (c->cls == TYPE_BYTES) {
                        fputs("CONCAT('\\\\x', LOWER(HEX(", f);
                        sql_ident(f, c->name);
                        fputs(")))", f);
                } else if (bc.type == BINLOG_T_BIT) {
                        unsigned width = 1;
                        const char *par = strchr(c->type_name, '(');
                        uint64_t w;
                        if (par && mysql_source_parse_u64(par + 1, strcspn(par + 1, ")"), &w) == 0 && w >= 1 && w <= 64)
                                width = (unsigned)w;
                        fputs("LPAD(BIN(", f);
                        sql_ident(f, c->name);
                        fprintf(f, "), %u, '0')", width);
                } else if (bc.type == BINLOG_T_TIMESTAMP2) {
                        fputs("CONCAT(", f);
                        sql_ident(f, c->name);
                        fputs(", '+00')", f);
                } else if (bc.type == BINLOG_T_FLOAT) {
                        /* as a double: the server prints a FLOAT rounded to 6 digits */
                        fputs("(", f);
                        sql_ident(f, c->name);
                        fputs(" + 0e0)", f);
                } else {
                        sql_ident(f, c->name);
                }
        }
        fputs(" FROM ", f);
        sql_ident(f, schema);
        fputc('.', f);
        sql_ident(f, name);
        if (fclose(f) != 0 || !sql) {
                r = cdc_oom(err);
                goto out;
        }
        t->replident = table_nkeys(t) > 0 ? 'd' : 'f';

        /* What the sink already holds (conf_pipeline_copy_mode): initial copies into an empty
         * table (the sink checks it), replace empties it first, merge keeps it (rows upserted). */
        SnapshotMode mode = s->pipe ? conf_pipeline_copy_mode(s->pipe) : SNAPSHOT_INITIAL;
        if (mode == SNAPSHOT_MERGE && table_nkeys(t) == 0) {
                log_warn(s->ctx,
                         "snapshot of %s.%s: a table without primary key cannot be merged: copied only if the "
                         "sink table is empty",
                         schema, name);
                mode = SNAPSHOT_INITIAL;
        }
        if (mode == SNAPSHOT_REPLACE)
                log_info(s->ctx, "snapshot of %s.%s: snapshot = replace: the sink table is emptied first", schema,
                         name);
        if (mode != SNAPSHOT_MERGE) {
                Event tev = {.kind = EVENT_CHANGE,
                             .change = {.op = CHANGE_TRUNCATE,
                                        .flags = mode == SNAPSHOT_REPLACE ? 0 : TRUNCATE_CHECK_EMPTY,
                                        .table = table_ref(t)}};
                if ((r = pipeline_io_emit(io, &tev)) < 0)
                        goto out;
        }
        if (mysql_real_query(snap, sql, sqllen) || !(res = mysql_use_result(snap))) {
                r = cdc_error(err, -EIO, mysql_conn_retry_helps(mysql_errno(snap)), CDC_ERR_QUERY,
                              "%s snapshot of %s.%s: %s (error %u)", s->ctx, schema, name, mysql_error(snap),
                              mysql_errno(snap));
                goto out;
        }
        MYSQL_ROW row;
        while ((row = mysql_fetch_row(res))) {
                unsigned long *lens = mysql_fetch_lengths(res);
                Event ev = {.kind = EVENT_CHANGE,
                            .change = {.op = CHANGE_INSERT,
                                       .flags = mode == SNAPSHOT_MERGE ? CHANGE_IDEMPOTENT : 0,
                                       .table = table_ref(t)}};
                ev.change.after = values_new(t->ncols);
                if (!ev.change.after || !lens) {
                        change_clear(&ev.change);
                        r = cdc_oom(err);
                        goto out;
                }
                for (int i = 0; i < t->ncols && r == 0; i++) {
                        const char *v = row[i];
                        size_t n = lens[i];
                        char fb[40];
                        if (!v)
                                continue;
                        TypeClass cls = t->cols[i].cls;
                        if ((cls == TYPE_DATE || cls == TYPE_TIMESTAMP || cls == TYPE_TIMESTAMPTZ) && n >= 10 &&
                            (memcmp(v + 5, "00", 2) == 0 || memcmp(v + 8, "00", 2) == 0)) {
                                s->zero_dates++; /* as the stream does: no date is NULL */
                                continue;
                        }
                        if (codes[i] == BINLOG_T_FLOAT || codes[i] == BINLOG_T_DOUBLE) {
                                char *end;
                                errno = 0;
                                double d = strtod(v, &end);
                                if (errno || *end) {
                                        r = cdc_error(err, -EBADMSG, false, CDC_ERR_DATA,
                                                      "%s snapshot of %s.%s: column %s: '%.40s' is not a number",
                                                      s->ctx, schema, name, t->cols[i].name, v);
                                        break;
                                }
                                binlog_format_float(d, codes[i] == BINLOG_T_FLOAT, fb, sizeof(fb));
                                v = fb;
                                n = strlen(fb);
                        }
                        if (value_set(&ev.change.after[i], v, n) < 0)
                                r = cdc_oom(err);
                }
                if (r < 0) {
                        change_clear(&ev.change);
                        goto out;
                }
                if ((r = pipeline_io_emit(io, &ev)) < 0)
                        goto out;
                if (++rows % 100000 == 0)
                        log_info(s->ctx, "snapshot of %s.%s: %" PRIu64 " rows copied so far", schema, name, rows);
        }
        if (mysql_errno(snap)) {
                r = cdc_error(err, -EIO, mysql_conn_retry_helps(mysql_errno(snap)), CDC_ERR_QUERY,
                              "%s snapshot of %s.%s: %s (error %u)", s->ctx, schema, name, mysql_error(snap),
                              mysql_errno(snap));
                goto out;
        }
        *ret_rows = rows;
        r = 0;
out:
        /* a stopped copy leaves rows unread: the caller closes the connection rather than
         * draining them */
        if (res && r == 0)
                mysql_free_result(res);
        else if (res)
                res->handle = NULL, mysql_free_result(res);
        free(sql);
        free(codes);
        table_unref(t);
        mysql_source_schema_entry_free(e);
        return r;
}

typedef struct {
        char **names; /* schema, name, schema, name, ... owned */
        int n;
        const PipelineConf *pipe;
} TableList;

static int table_list_row(void *ud, char **cells, const unsigned long *lens, int ncols) {
        TableList *l = ud;
        (void)lens;
        if (ncols < 2 || !cells[0] || !cells[1] ||
            (!mysql_source_pipeline_wants(l->pipe, cells[0], cells[1]) &&
             !(strcmp(cells[0], "cdcsync") == 0 && strcmp(cells[1], "versions") == 0)))
                return 0;
        char **n = realloc(l->names, sizeof(char *) * (size_t)(l->n + 2));
        if (!n)
                return -ENOMEM;
        l->names = n;
        l->names[l->n] = strdup(cells[0]);
        l->names[l->n + 1] = strdup(cells[1]);
        l->n += 2;
        return l->names[l->n - 2] && l->names[l->n - 1] ? 0 : -ENOMEM;
}

/* The initial snapshot: one transaction (TxnInfo.snapshot) holding a truncate and the rows of
 * every table of the pipeline, as of one InnoDB consistent snapshot; MariaDB reports the binlog
 * position that snapshot corresponds to (binlog_snapshot_file/_position), which becomes the
 * transaction's commit position and where streaming starts. No lock is taken. */
/* Opens a connection holding one InnoDB consistent snapshot; *ret_pos, sfile: the binlog position
 * it corresponds to (MariaDB's binlog_snapshot_file/_position). */
static int open_snapshot(Source *s, MYSQL **ret, Position *ret_pos, char *sfile, size_t sflen, CdcError *err) {
        MYSQL *snap = NULL;
        int r = mysql_conn_open(s->conn, NULL, &snap, err);
        if (r < 0)
                return r;
        /* mysql_conn_open pinned time_zone UTC (TIMESTAMP columns print as the stream decodes
         * them) and the sql_mode (CHAR values unpadded); a long net_write_timeout: the server
         * waits while a full queue holds the reader back */
        static const char *const setup[] = {
                "SET SESSION net_write_timeout = 86400",
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        };
        for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
                if (mysql_query(snap, setup[i])) {
                        r = cdc_error(err, -EIO, mysql_conn_retry_helps(mysql_errno(snap)), CDC_ERR_QUERY,
                                      "%s snapshot: %s: %s (error %u)", s->ctx, setup[i], mysql_error(snap),
                                      mysql_errno(snap));
                        mysql_close(snap);
                        return r;
                }
        if (mysql_query(snap, "SHOW STATUS LIKE 'binlog_snapshot_%'")) {
                r = cdc_error(err, -EIO, true, CDC_ERR_QUERY, "%s snapshot: SHOW STATUS: %s", s->ctx,
                              mysql_error(snap));
                mysql_close(snap);
                return r;
        }
        MYSQL_RES *res = mysql_store_result(snap);
        MYSQL_ROW row;
        char spos[32] = "";
        sfile[0] = '\0';
        while (res && (row = mysql_fetch_row(res))) {
                if (row[0] && row[1] && strcmp(row[0], "Binlog_snapshot_file") == 0)
                        snprintf(sfile, sflen, "%s", row[1]);
                else if (row[0] && row[1] && strcmp(row[0], "Binlog_snapshot_position") == 0)
                        snprintf(spos, sizeof(spos), "%s", row[1]);
        }
        if (res)
                mysql_free_result(res);
        if (!sfile[0] || mysql_source_file_seq(sfile, &ret_pos->hi) < 0 ||
            mysql_source_parse_u64(spos, strlen(spos), &ret_pos->lo) < 0) {
                mysql_close(snap);
                return cdc_error(err, -EPROTO, false, CDC_ERR_CONF,
                                 "%s snapshot: the server reports no binlog_snapshot_file/_position (is this "
                                 "MariaDB with log_bin?): set snapshot = never and start_position",
                                 s->ctx);
        }
        *ret = snap;
        return 0;
}

/* The sink records that schema.name was copied as of pos, with the copy. */
static int emit_record(Source *s, PipelineIO *io, const char *schema, const char *name, Position pos, uint64_t rows,
                       CdcError *err) {
        char table[COPIES_NAME_MAX], text[600];
        snprintf(table, sizeof(table), "%s.%s", schema, name);
        mysql_source_format_position(pos, text, sizeof(text));
        Event ev = {.kind = EVENT_CHANGE};
        if (!s->pipe || copies_record(s->pipe->name, table, pos, text, rows, &ev.change) < 0)
                return cdc_oom(err);
        return pipeline_io_emit(io, &ev);
}

int mysql_source_snapshot(Source *s, PipelineIO *io, char *file, size_t flen, uint64_t *ret_off, CdcError *err) {
        MYSQL *snap = NULL;
        TableList tl = {.pipe = s->pipe};
        char sfile[512];
        Position at = {0};
        int r = open_snapshot(s, &snap, &at, sfile, sizeof(sfile), err);
        if (r < 0)
                return r;
        uint64_t seq = at.hi, off = at.lo;
        /* The GTID state at the snapshot's position, which its checkpoint text carries. */
        mysql_source_set_base(s, sfile);
        r = mysql_source_seed_gtid(s, sfile, off, err);
        if (r < 0)
                goto out;
        /* Bidirectional sync: the version tags (cdcsync.versions) first, so the rows the reverse
         * pipeline wrote here are known as its writes when they are copied (rowstate_copy_tag). */
        if (s->pipe && s->pipe->bidirectional)
                r = mysql_conn_query(
                        snap,
                        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                        "'cdcsync' AND TABLE_NAME = 'versions'",
                        NULL, 0, table_list_row, &tl, err);
        if (r >= 0)
                r = mysql_conn_query(
                        snap,
                        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = "
                        "'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', "
                        "'performance_schema', 'sys', 'cdcsync') ORDER BY 1, 2",
                        NULL, 0, table_list_row, &tl, err);
        if (r == -ENOMEM)
                r = cdc_oom(err);
        if (r < 0)
                goto out;
        log_info(s->ctx, "initial snapshot of %d tables at %s:%" PRIu64, tl.n / 2, sfile, off);
        pipeline_io_streaming(io, true);
        memset(&s->txn, 0, sizeof(s->txn));
        s->txn.commit_pos = (Position){.hi = seq, .lo = off};
        s->txn.commit_ts = (int64_t)time(NULL) * 1000000;
        s->txn.snapshot = true;
        Event bev = {.kind = EVENT_BEGIN, .txn = s->txn};
        if ((r = pipeline_io_emit(io, &bev)) < 0)
                goto out;
        for (int i = 0; i < tl.n; i += 2) {
                uint64_t rows = 0;
                r = snapshot_table(s, snap, tl.names[i], tl.names[i + 1], io, &rows, err);
                if (r == 0 && strcmp(tl.names[i], "cdcsync") != 0)
                        r = emit_record(s, io, tl.names[i], tl.names[i + 1], at, rows, err);
                if (r < 0)
                        goto out;
                log_info(s->ctx, "snapshot of %s.%s: %" PRIu64 " rows", tl.names[i], tl.names[i + 1], rows);
        }
        if (s->zero_dates) {
                log_warn(s->ctx, "%u zero date(s) ('0000-00-00') in the snapshot became NULL", s->zero_dates);
                s->zero_dates = 0;
        }
        Event cev = {.kind = EVENT_COMMIT, .txn = s->txn, .ckpt.pos = s->txn.commit_pos};
        mysql_source_checkpoint_text(s, cev.ckpt.pos, cev.ckpt.text, sizeof(cev.ckpt.text));
        if ((r = pipeline_io_emit(io, &cev)) < 0)
                goto out;
        snprintf(file, flen, "%s", sfile);
        *ret_off = off;
        r = 0;
out:
        for (int i = 0; i < tl.n; i++)
                free(tl.names[i]);
        free(tl.names);
        mysql_close(snap); /* ends the read-only transaction */
        return r;
}

/* ---- tables added to a streaming pipeline (copies.h) ---- */

static int names_add(char ***list, int *n, const char *v) {
        char **a = realloc(*list, sizeof(char *) * (size_t)(*n + 1));
        if (!a)
                return -ENOMEM;
        *list = a;
        if (!(a[*n] = strdup(v)))
                return -ENOMEM;
        (*n)++;
        return 0;
}

void mysql_source_names_free(char ***list, int *n) {
        for (int i = 0; i < *n; i++)
                free((*list)[i]);
        free(*list);
        *list = NULL;
        *n = 0;
}

static int filter_add(Source *s, const char *table, Position pos) {
        CopiedTable *f = realloc(s->filters, sizeof(*f) * (size_t)(s->nfilters + 1));
        if (!f)
                return -ENOMEM;
        s->filters = f;
        snprintf(f[s->nfilters].table, sizeof(f[s->nfilters].table), "%s", table);
        f[s->nfilters++].pos = pos;
        return 0;
}

/* `tables` is the truth (a pipeline with a checkpoint; the binlog filter is `tables` itself): a
 * listed table without a copy record is copied as of a new consistent snapshot before it streams
 * (emit_copy), the record of a table no longer listed is dropped. */
int mysql_source_follow_tables(Source *s, const SourceStart *start, CdcError *err) {
        int r = 0;
        if (!s->pipe || s->pipe->all_tables || !start->registry)
                return 0;
        for (int i = 0; r == 0 && i < s->pipe->ntables; i++) {
                const char *t = s->pipe->tables[i], *dot = strchr(t, '.');
                char sch[256];
                int exists = 0;
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || copies_find(start->copied, start->ncopied, sch, dot + 1))
                        continue;
                const char *params[2] = {sch, dot + 1};
                VarRow v = {0};
                int q = mysql_conn_query(
                        s->sql, "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                        params, 2, mysql_source_var_row, &v, err);
                if (q < 0) {
                        r = q;
                        break;
                }
                exists = q > 0;
                if (!exists)
                        log_warn(s->ctx,
                                 "table %s of tables does not exist: it is copied once it exists (restart or "
                                 "reload)",
                                 t);
                if (exists && names_add(&s->copy_new, &s->ncopy_new, t) < 0)
                        r = cdc_oom(err);
        }
        for (int i = 0; r >= 0 && i < start->ncopied; i++) {
                const char *t = start->copied[i].table, *dot = strchr(t, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || !mysql_source_pipeline_wants(s->pipe, sch, dot + 1)) {
                        if (names_add(&s->copy_gone, &s->ncopy_gone, t) < 0)
                                r = cdc_oom(err);
                        else
                                log_info(s->ctx, "table %s left tables: no longer streamed, its copy record is dropped",
                                         t);
                } else if (position_cmp(start->copied[i].pos, start->checkpoint.pos) > 0 &&
                           filter_add(s, t, start->copied[i].pos) < 0) {
                        r = cdc_oom(err);
                }
        }
        if (r < 0)
                return r;
        if (s->ncopy_new == 0 && s->ncopy_gone == 0)
                return 0;
        char sfile[512];
        r = open_snapshot(s, &s->copy, &s->copy_pos, sfile, sizeof(sfile), err);
        for (int i = 0; r == 0 && i < s->ncopy_new; i++) {
                /* snapshot = never: nothing is copied, so nothing may be dropped either; the table
                 * streams from where the pipeline reads (start_position or the checkpoint). */
                if (s->pipe->snapshot_mode == SNAPSHOT_NEVER)
                        log_info(s->ctx,
                                 "table %s has no copy in the sink and snapshot = never: it streams from where the "
                                 "pipeline reads, every change after it included",
                                 s->copy_new[i]);
                else if (filter_add(s, s->copy_new[i], s->copy_pos) < 0)
                        r = cdc_oom(err);
                else
                        log_info(s->ctx,
                                 "table %s has no copy in the sink: copying it as of %s:%" PRIu64
                                 " once the stream reaches there",
                                 s->copy_new[i], sfile, s->copy_pos.lo);
        }
        if (r == 0)
                s->copy_pending = true;
        return r;
}

/* Hands on the pending copy as one transaction at copy_pos: the records of removed tables
 * dropped, then each added table's rows (as snapshot = says) with its record. Called when the
 * stream reaches copy_pos, between the transactions it precedes and follows. */
int mysql_source_emit_copy(Source *s, PipelineIO *io, CdcError *err) {
        TxnInfo saved = s->txn;
        int r;
        s->copy_pending = false;
        s->txn = (TxnInfo){.commit_pos = s->copy_pos, .commit_ts = (int64_t)time(NULL) * 1000000, .snapshot = true};
        Event bev = {.kind = EVENT_BEGIN, .txn = s->txn};
        r = pipeline_io_emit(io, &bev);
        for (int i = 0; r == 0 && i < s->ncopy_gone; i++) {
                Event ev = {.kind = EVENT_CHANGE};
                if (copies_forget(s->pipe->name, s->copy_gone[i], &ev.change) < 0)
                        r = cdc_oom(err);
                else
                        r = pipeline_io_emit(io, &ev);
        }
        for (int i = 0; r == 0 && i < s->ncopy_new; i++) {
                char sch[256], tab[256];
                const char *dot = strchr(s->copy_new[i], '.');
                snprintf(sch, sizeof(sch), "%.*s", (int)(dot - s->copy_new[i]), s->copy_new[i]);
                snprintf(tab, sizeof(tab), "%s", dot + 1);
                uint64_t rows = 0;
                /* snapshot = never: the sink holds the rows already; the table streams from here */
                r = s->pipe->snapshot_mode == SNAPSHOT_NEVER ? 0 : snapshot_table(s, s->copy, sch, tab, io, &rows, err);
                if (r == 0)
                        r = emit_record(s, io, sch, tab, s->copy_pos, rows, err);
                if (r == 0)
                        log_info(s->ctx, "%s %s.%s (%" PRIu64 " rows); it streams from here on",
                                 s->pipe->snapshot_mode == SNAPSHOT_NEVER ? "snapshot = never: did not copy" : "copied",
                                 sch, tab, rows);
        }
        if (r == 0) {
                Event cev = {.kind = EVENT_COMMIT, .txn = s->txn, .ckpt.pos = s->txn.commit_pos};
                mysql_source_checkpoint_text(s, cev.ckpt.pos, cev.ckpt.text, sizeof(cev.ckpt.text));
                r = pipeline_io_emit(io, &cev);
        }
        mysql_close(s->copy); /* ends the read-only transaction */
        s->copy = NULL;
        s->txn = saved;
        return r;
}
