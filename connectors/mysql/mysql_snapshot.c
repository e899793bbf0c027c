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

#include "mysql/mysql_copy.h"
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

SnapTable *mysql_snapshot_table_free(SnapTable *st) {
        if (!st)
                return NULL;
        table_unref(st->t);
        free(st->codes);
        free(st->select);
        free(st->qkey);
        free(st->qtable);
        free(st);
        return NULL;
}

/* The name of the first column of schema.name's primary key (*ret "" when it has none). */
static int key_first_column(Source *s, const char *schema, const char *name, char *ret, size_t len, CdcError *err) {
        const char *params[2] = {schema, name};
        VarRow v = {0};
        int r = mysql_conn_query(s->sql,
                                 "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND "
                                 "TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' AND SEQ_IN_INDEX = 1",
                                 params, 2, mysql_source_var_row, &v, err);
        if (r < 0)
                return r;
        snprintf(ret, len, "%s", r > 0 ? v.vals[0] : "");
        return 0;
}

int mysql_snapshot_describe(Source *s, const char *schema, const char *name, SnapTable **ret, CdcError *err) {
        SchemaEntry *e = NULL;
        char *sql = NULL, *q = NULL;
        size_t sqllen = 0, qlen = 0;
        char first[128];
        SnapTable *st = calloc(1, sizeof(*st));
        if (!st)
                return cdc_oom(err);
        st->key_col = -1;
        int r = mysql_source_schema_load(s, schema, name, &e, err);
        if (r == 0)
                r = key_first_column(s, schema, name, first, sizeof(first), err);
        if (r < 0)
                goto out;
        st->t = table_new(schema, name, e->ncols);
        st->codes = calloc((size_t)(e->ncols > 0 ? e->ncols : 1), 1);
        FILE *f = st->t && st->codes ? open_memstream(&sql, &sqllen) : NULL;
        if (!f) {
                r = cdc_oom(err);
                goto out;
        }
        fputs("SELECT ", f);
        for (int i = 0; i < e->ncols; i++) {
                Column *c = &st->t->cols[i];
                BinlogColumn bc = {.type = mysql_source_type_code_of(e->col_types[i])};
                st->codes[i] = bc.type;
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
                /* The primary key's first column, when an integer: the chunks are its ranges. */
                if (c->key && strcmp(c->name, first) == 0 &&
                    (bc.type == BINLOG_T_TINY || bc.type == BINLOG_T_SHORT || bc.type == BINLOG_T_INT24 ||
                     bc.type == BINLOG_T_LONG || bc.type == BINLOG_T_LONGLONG)) {
                        st->key_col = i;
                        st->key_signed = strstr(c->type_name, "unsigned") == NULL;
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
        st->select = sql;
        sql = NULL;
        /* the quoted names the chunk queries use */
        if (!(f = open_memstream(&q, &qlen))) {
                r = cdc_oom(err);
                goto out;
        }
        sql_ident(f, schema);
        fputc('.', f);
        sql_ident(f, name);
        if (fclose(f) != 0 || !q) {
                r = cdc_oom(err);
                goto out;
        }
        st->qtable = q;
        q = NULL;
        if (st->key_col >= 0) {
                if (!(f = open_memstream(&q, &qlen))) {
                        r = cdc_oom(err);
                        goto out;
                }
                sql_ident(f, st->t->cols[st->key_col].name);
                if (fclose(f) != 0 || !q) {
                        r = cdc_oom(err);
                        goto out;
                }
                st->qkey = q;
                q = NULL;
        }
        st->t->replident = table_nkeys(st->t) > 0 ? 'd' : 'f';
        *ret = st;
        st = NULL;
out:
        free(sql);
        free(q);
        mysql_snapshot_table_free(st);
        mysql_source_schema_entry_free(e);
        return r;
}

int mysql_snapshot_row(const Source *s, const SnapTable *st, MYSQL_ROW row, const unsigned long *lens, uint32_t flags,
                       unsigned *zero_dates, Change *ret, CdcError *err) {
        const Table *t = st->t;
        Change c = {.op = CHANGE_INSERT, .flags = flags, .table = table_ref(st->t)};
        c.after = values_new(t->ncols);
        if (!c.after || !lens) {
                change_clear(&c);
                return cdc_oom(err);
        }
        int r = 0;
        for (int i = 0; i < t->ncols && r == 0; i++) {
                const char *v = row[i];
                size_t n = lens[i];
                char fb[40];
                if (!v)
                        continue;
                TypeClass cls = t->cols[i].cls;
                if ((cls == TYPE_DATE || cls == TYPE_TIMESTAMP || cls == TYPE_TIMESTAMPTZ) && n >= 10 &&
                    (memcmp(v + 5, "00", 2) == 0 || memcmp(v + 8, "00", 2) == 0)) {
                        (*zero_dates)++; /* as the stream does: no date is NULL */
                        continue;
                }
                if (st->codes[i] == BINLOG_T_FLOAT || st->codes[i] == BINLOG_T_DOUBLE) {
                        char *end;
                        errno = 0;
                        double d = strtod(v, &end);
                        if (errno || *end) {
                                r = cdc_error(err, -EBADMSG, false, CDC_ERR_DATA,
                                              "%s snapshot of %s.%s: column %s: '%.40s' is not a number", s->ctx,
                                              t->schema, t->name, t->cols[i].name, v);
                                break;
                        }
                        binlog_format_float(d, st->codes[i] == BINLOG_T_FLOAT, fb, sizeof(fb));
                        v = fb;
                        n = strlen(fb);
                }
                if (value_set(&c.after[i], v, n) < 0)
                        r = cdc_oom(err);
        }
        if (r < 0) {
                change_clear(&c);
                return r;
        }
        *ret = c;
        return 0;
}

/* What the first copy of t does with the sink's rows (conf_pipeline_copy_mode): initial copies
 * into an empty table (the sink checks it), replace empties it first, merge upserts. */
static void copy_mode(Source *s, const Table *t, uint32_t *ret_flags, bool *ret_truncate, uint32_t *ret_tflags) {
        SnapshotMode mode = s->pipe ? conf_pipeline_copy_mode(s->pipe) : SNAPSHOT_INITIAL;
        if (mode == SNAPSHOT_MERGE && table_nkeys(t) == 0) {
                log_warn(s->ctx,
                         "snapshot of %s.%s: a table without primary key cannot be merged: copied only if the "
                         "sink table is empty",
                         t->schema, t->name);
                mode = SNAPSHOT_INITIAL;
        }
        if (mode == SNAPSHOT_REPLACE)
                log_info(s->ctx, "snapshot of %s.%s: snapshot = replace: the sink table is emptied first", t->schema,
                         t->name);
        *ret_flags = mode == SNAPSHOT_MERGE ? CHANGE_IDEMPOTENT : 0;
        *ret_truncate = mode != SNAPSHOT_MERGE;
        *ret_tflags = mode == SNAPSHOT_REPLACE ? 0 : TRUNCATE_CHECK_EMPTY;
}

/* Copies one table inside the snapshot transaction on `snap` (a table added to `tables`): a
 * TRUNCATE as snapshot = says, then its rows, read with mysql_use_result so only one row is in
 * memory at a time. */
static int snapshot_table(Source *s, MYSQL *snap, const char *schema, const char *name, PipelineIO *io,
                          uint64_t *ret_rows, CdcError *err) {
        SnapTable *st = NULL;
        MYSQL_RES *res = NULL;
        uint64_t rows = 0;
        int r = mysql_snapshot_describe(s, schema, name, &st, err);
        if (r < 0)
                return r;
        uint32_t flags, tflags;
        bool truncate;
        copy_mode(s, st->t, &flags, &truncate, &tflags);
        if (truncate) {
                Event tev = {.kind = EVENT_CHANGE,
                             .change = {.op = CHANGE_TRUNCATE, .flags = tflags, .table = table_ref(st->t)}};
                if ((r = pipeline_io_emit(io, &tev)) < 0)
                        goto out;
        }
        if (mysql_real_query(snap, st->select, strlen(st->select)) || !(res = mysql_use_result(snap))) {
                r = cdc_error(err, -EIO, mysql_conn_retry_helps(mysql_errno(snap)), CDC_ERR_QUERY,
                              "%s snapshot of %s.%s: %s (error %u)", s->ctx, schema, name, mysql_error(snap),
                              mysql_errno(snap));
                goto out;
        }
        MYSQL_ROW row;
        while ((row = mysql_fetch_row(res))) {
                Event ev = {.kind = EVENT_CHANGE};
                r = mysql_snapshot_row(s, st, row, mysql_fetch_lengths(res), flags, &s->zero_dates, &ev.change, err);
                if (r < 0)
                        goto out;
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
        mysql_snapshot_table_free(st);
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

/* ---- one consistent snapshot, for one reader or several ---- */

/* Starts c's read-only consistent-snapshot transaction. mysql_conn_open pinned time_zone UTC
 * (TIMESTAMP columns print as the stream decodes them) and the sql_mode (CHAR values unpadded);
 * a long net_write_timeout: the server waits while a full queue holds the reader back. */
static int snap_begin(Source *s, MYSQL *c, CdcError *err) {
        static const char *const setup[] = {
                "SET SESSION net_write_timeout = 86400",
                "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
        };
        for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
                if (mysql_query(c, setup[i]))
                        return cdc_error(err, -EIO, mysql_conn_retry_helps(mysql_errno(c)), CDC_ERR_QUERY,
                                         "%s snapshot: %s: %s (error %u)", s->ctx, setup[i], mysql_error(c),
                                         mysql_errno(c));
        return 0;
}

/* The binlog position c's consistent snapshot corresponds to (MariaDB's
 * binlog_snapshot_file/_position); -ENOENT when the server reports none (MySQL). */
static int snap_position(Source *s, MYSQL *c, Position *ret_pos, char *sfile, size_t sflen, CdcError *err) {
        if (mysql_query(c, "SHOW STATUS LIKE 'binlog_snapshot_%'"))
                return cdc_error(err, -EIO, true, CDC_ERR_QUERY, "%s snapshot: SHOW STATUS: %s", s->ctx,
                                 mysql_error(c));
        MYSQL_RES *res = mysql_store_result(c);
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
            mysql_source_parse_u64(spos, strlen(spos), &ret_pos->lo) < 0)
                return -ENOENT;
        return 0;
}

static int no_snapshot_position(Source *s, CdcError *err) {
        return cdc_error(err, -EPROTO, false, CDC_ERR_CONF,
                         "%s snapshot: the server reports no binlog_snapshot_file/_position (is this MariaDB with "
                         "log_bin?), and without the RELOAD privilege cdcsync cannot hold commits while it reads "
                         "the position: GRANT RELOAD ON *.* to the connector's user, or set snapshot = never and "
                         "start_position",
                         s->ctx);
}

/* Opens a connection holding one InnoDB consistent snapshot; *ret_pos, sfile: the binlog position
 * it corresponds to (MariaDB's binlog_snapshot_file/_position). No lock is taken. */
static int open_snapshot(Source *s, MYSQL **ret, Position *ret_pos, char *sfile, size_t sflen, CdcError *err) {
        MYSQL *snap = NULL;
        int r = mysql_conn_open(s->conn, NULL, &snap, err);
        if (r == 0)
                r = snap_begin(s, snap, err);
        if (r == 0) {
                r = snap_position(s, snap, ret_pos, sfile, sflen, err);
                if (r == -ENOENT)
                        r = no_snapshot_position(s, err);
        }
        if (r < 0) {
                if (snap)
                        mysql_close(snap);
                return r;
        }
        *ret = snap;
        return 0;
}

static void readers_close(MYSQL **rd, int n) {
        for (int i = 0; rd && i < n; i++)
                if (rd[i])
                        mysql_close(rd[i]);
        free(rd);
}

/* Session lock_wait_timeout (s) of the global read lock's attempt: a long statement or DDL on
 * the source must not keep every writer waiting behind the lock for long. */
#define VIEW_LOCK_WAIT_SQL "SET SESSION lock_wait_timeout = 10"

/* Holds every commit on the source (s->sql): MariaDB >= 10.4 BACKUP STAGE BLOCK_COMMIT (commits
 * wait, running statements and reads go on), else FLUSH TABLES WITH READ LOCK (waits for running
 * statements to end, then blocks every write). *ret_how names it. Returns 0, 1 when it cannot
 * be had (no RELOAD privilege, a lock wait timeout: *why says so), or a CdcError code. */
static int view_lock(Source *s, const char **ret_how, char *why, size_t wlen, CdcError *err) {
        bool stages = s->mariadb && mysql_get_server_version(s->sql) >= 100401;
        const char *steps_stage[] = {VIEW_LOCK_WAIT_SQL, "BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"};
        const char *steps_ftwrl[] = {VIEW_LOCK_WAIT_SQL, "FLUSH TABLES WITH READ LOCK"};
        const char *const *steps = stages ? steps_stage : steps_ftwrl;
        size_t n = stages ? 3 : 2;
        *ret_how = stages ? "BACKUP STAGE BLOCK_COMMIT" : "FLUSH TABLES WITH READ LOCK";
        for (size_t i = 0; i < n; i++) {
                if (mysql_query(s->sql, steps[i]) == 0)
                        continue;
                unsigned e = mysql_errno(s->sql);
                if (mysql_conn_lost(e))
                        return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "%s snapshot: %s: %s (error %u)", s->ctx,
                                         steps[i], mysql_error(s->sql), e);
                snprintf(why, wlen, "%s: %s (error %u)", steps[i], mysql_error(s->sql), e);
                if (stages && i == 2)
                        mysql_query(s->sql, "BACKUP STAGE END");
                return 1;
        }
        return 0;
}

static int view_unlock(Source *s, const char *how, CdcError *err) {
        const char *sql = strncmp(how, "BACKUP", 6) == 0 ? "BACKUP STAGE END" : "UNLOCK TABLES";
        if (mysql_query(s->sql, sql))
                return cdc_error(err, -EIO, true, CDC_ERR_CONNECTION, "%s snapshot: %s: %s (error %u)", s->ctx, sql,
                                 mysql_error(s->sql), mysql_errno(s->sql));
        return 0;
}

/* Opens the copy's readers: snapshot_workers connections (one for a bidirectional pipeline, whose
 * version tags must be copied before every other table) in one consistent snapshot, the mydumper
 * way: with every commit held (view_lock), each starts its consistent-snapshot transaction and
 * the binlog position is read; then commits go on. Without the lock (no RELOAD privilege) the copy
 * has one reader, whose snapshot needs no lock on MariaDB. *ret (n connections) is the caller's
 * (readers_close); *ret_pos and sfile: the snapshot's binlog position. */
static int view_open(Source *s, MYSQL ***ret, int *ret_n, Position *ret_pos, char *sfile, size_t sflen, CdcError *err) {
        int want = !s->pipe || s->pipe->bidirectional || s->pipe->snapshot_workers < 1 ? 1 : s->pipe->snapshot_workers;
        MYSQL **rd = calloc((size_t)want, sizeof(*rd));
        const char *how = NULL;
        char why[512] = "";
        int r = 0, n = want;
        bool locked = false;
        if (!rd)
                return cdc_oom(err);
        for (int i = 0; r == 0 && i < n; i++)
                r = mysql_conn_open(s->conn, NULL, &rd[i], err);
        /* MySQL reports no snapshot position: the lock gives it, also for one reader */
        if (r == 0 && (n > 1 || !s->mariadb)) {
                r = view_lock(s, &how, why, sizeof(why), err);
                if (r == 1 && n > 1) {
                        log_warn(s->ctx,
                                 "snapshot_workers = %d, but the source's commits cannot be held for a moment to give "
                                 "the readers one snapshot (%s): copying with one reader; GRANT RELOAD ON *.* to the "
                                 "connector's user for parallel readers",
                                 n, why);
                        for (int i = 1; i < n; i++)
                                mysql_close(rd[i]), rd[i] = NULL;
                        n = 1;
                        r = 0;
                } else if (r == 1) {
                        r = 0; /* MySQL, one reader: no_snapshot_position says what is missing */
                } else if (r == 0) {
                        locked = true;
                }
        }
        int64_t t0 = 0;
        if (locked) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                t0 = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        }
        for (int i = 0; r == 0 && i < n; i++)
                r = snap_begin(s, rd[i], err);
        /* The position: each reader's (MariaDB), equal when the commits were held; else, under the
         * lock, the server's (MySQL has no binlog_snapshot_*). */
        for (int i = 0; r == 0 && i < n; i++) {
                Position p = {0};
                char f[512] = "";
                int q = snap_position(s, rd[i], &p, f, sizeof(f), err);
                if (q == -ENOENT && locked) {
                        VarRow v = {0};
                        q = mysql_conn_query(s->sql, "SHOW MASTER STATUS", NULL, 0, mysql_source_var_row, &v, err);
                        if (q >= 0 && (v.n < 2 || mysql_source_file_seq(v.vals[0], &p.hi) < 0 ||
                                       mysql_source_parse_u64(v.vals[1], strlen(v.vals[1]), &p.lo) < 0))
                                q = -ENOENT;
                        if (q >= 0)
                                snprintf(f, sizeof(f), "%s", v.vals[0]);
                }
                if (q == -ENOENT)
                        r = no_snapshot_position(s, err);
                else if (q < 0)
                        r = q;
                else if (i == 0) {
                        *ret_pos = p;
                        snprintf(sfile, sflen, "%s", f);
                } else if (position_cmp(p, *ret_pos) != 0)
                        r = cdc_error(err, -EAGAIN, true, CDC_ERR_SOURCE,
                                      "%s snapshot: reader %d's snapshot is at %s:%" PRIu64
                                      ", reader 1's at %s:%" PRIu64 " although commits were held (%s): retrying",
                                      s->ctx, i + 1, f, p.lo, sfile, ret_pos->lo, how ? how : "no lock");
        }
        if (locked) {
                int u = view_unlock(s, how, err);
                if (r == 0)
                        r = u;
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                int64_t held = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - t0;
                if (r == 0)
                        log_info(s->ctx,
                                 "snapshot: %d readers share one consistent snapshot at %s:%" PRIu64
                                 "; the source's commits were held for %.1f ms (%s)",
                                 n, sfile, ret_pos->lo, (double)held / 1000.0, how);
        }
        if (r < 0) {
                readers_close(rd, want);
                return r;
        }
        *ret = rd;
        *ret_n = n;
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

/* ---- the initial snapshot (mysql_copy.c) ---- */

/* Every table of the pipeline as of one consistent snapshot shared by the readers (view_open),
 * cut into primary-key ranges, and streaming from the snapshot's binlog position START: no gap,
 * no duplicate. Into a sink that keeps copy records each chunk is one sink transaction with its
 * record, and the first one records every table as "copying", so a crash keeps the chunks done
 * and the next start resumes (mysql_source_resume); into another (Kafka) the copy is one
 * transaction, and a crash copies again from a new snapshot. */
int mysql_source_snapshot(Source *s, PipelineIO *io, bool chunked, char *file, size_t flen, uint64_t *ret_off,
                          CdcError *err) {
        MYSQL **rd = NULL;
        int nrd = 0;
        TableList tl = {.pipe = s->pipe};
        char sfile[512], ckpt[CHECKPOINT_TEXT_MAX];
        Position at = {0};
        MysqlCopy *cp = NULL;
        int r = view_open(s, &rd, &nrd, &at, sfile, sizeof(sfile), err);
        if (r < 0)
                return r;
        /* The GTID state at the snapshot's position, which its checkpoint text carries. */
        mysql_source_set_base(s, sfile);
        r = mysql_source_seed_gtid(s, sfile, at.lo, err);
        if (r < 0)
                goto out;
        /* Bidirectional sync: the version tags (cdcsync.versions) first, so the rows the reverse
         * pipeline wrote here are known as its writes when they are copied (rowstate_copy_tag). */
        if (s->pipe && s->pipe->bidirectional)
                r = mysql_conn_query(
                        rd[0],
                        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                        "'cdcsync' AND TABLE_NAME = 'versions'",
                        NULL, 0, table_list_row, &tl, err);
        if (r >= 0)
                r = mysql_conn_query(
                        rd[0],
                        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = "
                        "'BASE TABLE' AND TABLE_SCHEMA NOT IN ('mysql', 'information_schema', "
                        "'performance_schema', 'sys', 'cdcsync') ORDER BY 1, 2",
                        NULL, 0, table_list_row, &tl, err);
        if (r == -ENOMEM)
                r = cdc_oom(err);
        if (r < 0)
                goto out;
        log_info(s->ctx, "initial snapshot of %d tables at %s:%" PRIu64, tl.n / 2, sfile, at.lo);
        mysql_source_checkpoint_text(s, at, ckpt, sizeof(ckpt));
        r = mysql_copy_new(s, io, at, ckpt, chunked, &cp, err);
        for (int i = 0; r == 0 && i < tl.n; i += 2) {
                SnapTable *st = NULL;
                r = mysql_snapshot_describe(s, tl.names[i], tl.names[i + 1], &st, err);
                if (r < 0)
                        break;
                uint32_t flags, tflags;
                bool truncate;
                copy_mode(s, st->t, &flags, &truncate, &tflags);
                r = mysql_copy_add_table(cp, rd[0], st, flags, truncate, tflags, NULL, 0, 0, COPY_STATE_COPIED, at,
                                         err);
        }
        if (r == 0) {
                pipeline_io_streaming(io, true);
                r = mysql_copy_run(cp, rd, nrd, err);
        }
        if (r < 0)
                goto out;
        snprintf(file, flen, "%s", sfile);
        *ret_off = at.lo;
out:
        mysql_copy_free(cp);
        for (int i = 0; i < tl.n; i++)
                free(tl.names[i]);
        free(tl.names);
        readers_close(rd, nrd); /* ends the read-only transactions */
        return r;
}

/* A chunked initial copy cut short (records "copying"): resumed under a new consistent snapshot
 * S2 at binlog position C, keeping the chunks done. The stream then starts at the checkpoint
 * START, where the copy began, and every change of a resumed table up to C is applied
 * idempotently (COPY_STATE_CONVERGING, mysql_source_converge): rows read as of START or as of S2
 * then converge to the source's, whatever changed between. A table without integer key is one
 * chunk, so it was either copied whole or not at all: copied whole as of S2, its changes up to C
 * dropped (they are in that copy). Also takes up the converging windows of an earlier attempt. */
int mysql_source_resume(Source *s, const SourceStart *start, PipelineIO *io, CdcError *err) {
        int r = 0, ncopying = 0;
        Position from = start->checkpoint.pos;
        for (int i = 0; i < start->ncopied; i++) {
                const CopiedTable *e = &start->copied[i];
                const char *dot = strchr(e->table, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - e->table) : 0, e->table);
                bool listed = dot && e->state != COPY_STATE_CHUNK && mysql_source_pipeline_wants(s->pipe, sch, dot + 1);
                if (e->state == COPY_STATE_CONVERGING && listed && position_cmp(e->pos, from) > 0) {
                        CopiedTable *g = realloc(s->converging, sizeof(*g) * (size_t)(s->nconverging + 1));
                        if (!g)
                                return cdc_oom(err);
                        (s->converging = g)[s->nconverging++] = *e;
                }
                if (e->state == COPY_STATE_COPYING && listed)
                        ncopying++;
        }
        if (ncopying == 0)
                return 0;

        MYSQL **rd = NULL;
        int nrd = 0;
        char sfile[512], ckpt[CHECKPOINT_TEXT_MAX];
        Position c = {0};
        MysqlCopy *cp = NULL;
        r = view_open(s, &rd, &nrd, &c, sfile, sizeof(sfile), err);
        if (r < 0)
                return r;
        char fpos[96];
        mysql_source_format_position(from, fpos, sizeof(fpos));
        log_info(s->ctx,
                 "resuming the initial copy of %d tables: chunks not done are read as of %s:%" PRIu64
                 "; changes from %s to there are applied idempotently",
                 ncopying, sfile, c.lo, fpos);
        /* the chunks' checkpoint stays the copy's start, with the text the sink keeps for it */
        snprintf(ckpt, sizeof(ckpt), "%s", start->checkpoint.text);
        if (!ckpt[0])
                mysql_source_checkpoint_text(s, from, ckpt, sizeof(ckpt));
        r = mysql_copy_new(s, io, from, ckpt, true, &cp, err);
        for (int i = 0; r == 0 && i < start->ncopied; i++) {
                const CopiedTable *e = &start->copied[i];
                const char *dot = strchr(e->table, '.');
                char sch[256];
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - e->table) : 0, e->table);
                if (e->state != COPY_STATE_COPYING || !dot || !mysql_source_pipeline_wants(s->pipe, sch, dot + 1))
                        continue;
                SnapTable *st = NULL;
                r = mysql_snapshot_describe(s, sch, dot + 1, &st, err);
                if (r < 0)
                        break;
                MysqlKeyRange *done = NULL;
                int ndone = 0;
                uint64_t rows = 0;
                for (int j = 0; r == 0 && st->key_col >= 0 && j < start->ncopied; j++) {
                        MysqlKeyRange k;
                        if (start->copied[j].state != COPY_STATE_CHUNK ||
                            !mysql_chunks_parse(start->copied[j].table, e->table, st->key_signed, &k))
                                continue;
                        MysqlKeyRange *g = realloc(done, sizeof(*g) * (size_t)(ndone + 1));
                        if (!g) {
                                r = cdc_oom(err);
                                break;
                        }
                        (done = g)[ndone++] = k;
                        rows += start->copied[j].rows;
                }
                uint32_t flags, tflags;
                bool truncate;
                copy_mode(s, st->t, &flags, &truncate, &tflags);
                bool keyed = st->key_col >= 0;
                Position final = c;
                if (r == 0)
                        r = mysql_copy_add_table(cp, rd[0], st, keyed ? CHANGE_IDEMPOTENT : flags,
                                                 ndone == 0 && truncate, tflags, done, ndone, rows,
                                                 keyed ? COPY_STATE_CONVERGING : COPY_STATE_COPIED, final, err);
                else
                        mysql_snapshot_table_free(st);
                free(done);
                /* keyed: its changes up to C converge; else they are in its copy as of C */
                CopiedTable *g = NULL;
                if (r == 0 && keyed) {
                        g = realloc(s->converging, sizeof(*g) * (size_t)(s->nconverging + 1));
                        if (g) {
                                s->converging = g;
                                g[s->nconverging] = *e;
                                g[s->nconverging].state = COPY_STATE_CONVERGING;
                                g[s->nconverging++].pos = c;
                        }
                } else if (r == 0) {
                        g = realloc(s->filters, sizeof(*g) * (size_t)(s->nfilters + 1));
                        if (g) {
                                s->filters = g;
                                g[s->nfilters] = *e;
                                g[s->nfilters].state = COPY_STATE_COPIED;
                                g[s->nfilters++].pos = c;
                        }
                }
                if (r == 0 && !g)
                        r = cdc_oom(err);
        }
        if (r == 0) {
                pipeline_io_streaming(io, true);
                r = mysql_copy_run(cp, rd, nrd, err);
        }
        mysql_copy_free(cp);
        readers_close(rd, nrd);
        return r;
}

/* The idempotent form of a change of a converging table (mysql_source_resume) in a transaction
 * committed at or before its position; emits it (ev's change is taken). The binlog carries whole
 * rows (binlog_row_image = FULL): an insert or an update that keeps the key becomes an upsert of
 * the row, a delete deletes the row if it is there, and an update that changes the key becomes a
 * delete of the old key and an upsert of the new row (either may be missing or there already:
 * the chunks were read at other moments). */
int mysql_source_converge(Source *s, PipelineIO *io, Event *ev) {
        Change *c = &ev->change;
        const Table *t = c->table;
        c->flags |= CHANGE_IDEMPOTENT;
        if (c->op == CHANGE_UPDATE && c->before && c->after && table_nkeys(t) > 0) {
                bool same = true;
                for (int i = 0; same && i < t->ncols; i++) {
                        const Value *a = &c->before[i], *b = &c->after[i];
                        if (t->cols[i].key &&
                            (a->kind != b->kind ||
                             (a->kind == VALUE_TEXT && (a->len != b->len || memcmp(a->data, b->data, a->len)))))
                                same = false;
                }
                if (!same) {
                        Event d = {.kind = EVENT_CHANGE};
                        d.change.op = CHANGE_DELETE;
                        d.change.flags = CHANGE_IDEMPOTENT;
                        d.change.table = table_ref(c->table);
                        d.change.lsn = c->lsn;
                        d.change.before = c->before;
                        c->before = NULL;
                        int r = pipeline_io_emit(io, &d);
                        if (r < 0) {
                                change_clear(c);
                                return r;
                        }
                        c->op = CHANGE_INSERT;
                }
        }
        (void)s;
        return pipeline_io_emit(io, ev);
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
        f[s->nfilters] = (CopiedTable){.state = COPY_STATE_COPIED, .pos = pos};
        snprintf(f[s->nfilters].table, sizeof(f[s->nfilters].table), "%s", table);
        s->nfilters++;
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
                if (start->copied[i].state == COPY_STATE_CHUNK)
                        continue; /* a chunk of a copy in progress (mysql_source_resume) */
                snprintf(sch, sizeof(sch), "%.*s", dot ? (int)(dot - t) : 0, t);
                if (!dot || !mysql_source_pipeline_wants(s->pipe, sch, dot + 1)) {
                        if (names_add(&s->copy_gone, &s->ncopy_gone, t) < 0)
                                r = cdc_oom(err);
                        else
                                log_info(s->ctx, "table %s left tables: no longer streamed, its copy record is dropped",
                                         t);
                } else if (start->copied[i].state == COPY_STATE_COPIED &&
                           position_cmp(start->copied[i].pos, start->checkpoint.pos) > 0 &&
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
